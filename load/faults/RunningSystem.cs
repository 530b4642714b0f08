using System.Diagnostics;
using System.Globalization;

namespace SlotCapacity.Faults;

/// <summary>What `make run` started, as its run directory describes it: pids, endpoints, bootstrap, state directories.</summary>
internal sealed class RunningSystem(string runDirectory)
{
    public string Directory => runDirectory;

    public IReadOnlyList<string> Gateways()
    {
        var file = Path.Combine(runDirectory, "endpoints");
        if (!File.Exists(file)) throw new InvalidOperationException($"{file} is missing: start the system first (make run)");
        var endpoints = File.ReadAllLines(file).Where(l => l.Length > 0).ToList();
        if (endpoints.Any(e => !e.StartsWith("http://127.0.0.1:", StringComparison.Ordinal)))
            throw new InvalidOperationException($"{file} names a non-loopback gateway; the fault suite only talks to 127.0.0.1");
        return endpoints;
    }

    public string Bootstrap() => File.ReadAllText(Path.Combine(runDirectory, "bootstrap")).Trim();

    public int? Pid(string name)
    {
        var file = Path.Combine(runDirectory, "pids", name + ".pid");
        return File.Exists(file) && int.TryParse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    public async Task SignalAsync(string name, string signal, TextWriter log, Stopwatch clock)
    {
        var pid = Pid(name) ?? throw new InvalidOperationException($"no pid file for {name} in {runDirectory}/pids");
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
        await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s SIG{signal} -> {name} (pid {pid}){(kill.ExitCode == 0 ? "" : ": kill failed")}");
    }

    /// <summary>Waits (bounded) until the supervisor has started <paramref name="name"/> again with a new pid.</summary>
    public async Task<bool> RestartedAsync(string name, int oldPid, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            if (Pid(name) is { } pid && pid != oldPid) return true;
            await Task.Delay(100);
        }
        return false;
    }

    /// <summary>Waits (bounded) until a gateway's admin /health answers ready.</summary>
    public static async Task<bool> ReadyAsync(string gateway, TimeSpan timeout)
    {
        var admin = new UriBuilder(gateway);
        admin.Port += 1000;
        admin.Path = "/health";
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            try
            {
                if ((await http.GetAsync(admin.Uri)).IsSuccessStatusCode) return true;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            await Task.Delay(100);
        }
        return false;
    }
}
