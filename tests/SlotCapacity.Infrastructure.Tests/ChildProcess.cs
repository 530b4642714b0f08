using System.Diagnostics;
using System.Text;

namespace SlotCapacity.Infrastructure.Tests;

/// <summary>Runs one of the project's executables (built next to the tests) as its own process.</summary>
internal sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();

    private ChildProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_errors) _errors.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public static ChildProcess Start(string assemblyName, IEnumerable<string> args, IDictionary<string, string>? environment = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, assemblyName + ".dll");
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var arg in args) info.ArgumentList.Add(arg);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        return new ChildProcess(Process.Start(info) ?? throw new InvalidOperationException($"cannot start {dll}"));
    }

    public string Output { get { lock (_output) return _output.ToString(); } }
    public string Errors { get { lock (_errors) return _errors.ToString(); } }
    public int Id => _process.Id;

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit(); // drains the redirected streams
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
