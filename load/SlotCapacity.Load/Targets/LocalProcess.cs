using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace SlotCapacity.Load.Targets;

/// <summary>Helpers for the peers the harness starts and stops itself, on loopback ports in temp dirs.</summary>
internal static class LocalProcess
{
    /// <summary>A free loopback port (the OS picks it; the short race with other binders is acceptable here).</summary>
    public static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public static async Task WaitForPortAsync(int port, TimeSpan timeout, Func<string> whyNot, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, ct);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(100, ct);
            }
        }
        throw new InvalidOperationException($"nothing listens on 127.0.0.1:{port} after {timeout.TotalSeconds:0} s: {whyNot()}");
    }

    /// <summary>Runs a command to completion; throws with its output when it fails.</summary>
    public static async Task<string> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', psi.ArgumentList)} did not finish in {timeout.TotalSeconds:0} s");
        }
        var output = (await stdout) + (await stderr);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', psi.ArgumentList)} exited {process.ExitCode}: {output.Trim()}");
        return output;
    }

    public static string MakeTempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"slot-load-{name}-{Guid.NewGuid():N}"[..32]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static string? FindOnPath(string file) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, file)).FirstOrDefault(File.Exists);

    public static string Tail(string path, int lines = 15)
    {
        try
        {
            return string.Join('\n', File.ReadLines(path).TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(no log: {e.Message})";
        }
        catch (UnauthorizedAccessException e)
        {
            return $"(no log: {e.Message})";
        }
    }
}
