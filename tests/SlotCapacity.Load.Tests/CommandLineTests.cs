using System.Diagnostics;

namespace SlotCapacity.Load.Tests;

/// <summary>The command lines of slot-load and the engine bench, run as the processes the scripts start.</summary>
public class CommandLineTests
{
    private static async Task<(int Exit, string Output, string Errors)> RunAsync(string dll, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var arg in args) info.ArgumentList.Add(arg);
        using var process = Process.Start(info)!;
        var (output, errors) = (process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await errors);
    }

    private static string SlotLoad => Path.Combine(AppContext.BaseDirectory, "slot-load.dll");

    // Built beside this project (the project reference only orders the build): same configuration, its own folder.
    private static string EngineBench => Path.Combine(
        AppContext.BaseDirectory.Replace(Path.Combine("tests", "SlotCapacity.Load.Tests"), Path.Combine("load", "engine-bench"), StringComparison.Ordinal),
        "SlotCapacity.EngineBench.dll");

    [Fact]
    public async Task Slot_load_refuses_a_bad_option_and_an_unknown_one_naming_each_before_running()
    {
        var (exit, output, errors) = await RunAsync(SlotLoad, "run", "--duration", "forever", "--channels", "4", "--bogus", "1");
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        var lines = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("slot-load: --duration 'forever' is not a duration from 0 to 1h: 500ms, 30s, 2m or seconds", lines);
        Assert.Contains("slot-load: Unrecognized command or argument '--bogus'.", lines);
        Assert.Equal("slot-load: see slot-load run --help", lines[^1]);
    }

    [Fact]
    public async Task Slot_load_help_lists_every_verb_and_the_options_the_scripts_pass()
    {
        var (exit, output, _) = await RunAsync(SlotLoad, "--help");
        Assert.Equal(0, exit);
        foreach (var verb in new[] { "run", "list", "summarize", "self-check", "echo-server" })
            Assert.Contains($"  {verb} ", output, StringComparison.Ordinal);
        (exit, output, _) = await RunAsync(SlotLoad, "run", "--help");
        Assert.Equal(0, exit);
        foreach (var option in new[] { "--scenario", "--targets", "--duration", "--step", "--warmup", "--max-multiplier", "--out", "--gateways", "--kafka" })
            Assert.Contains($"  {option} ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_engine_bench_refuses_an_unknown_benchmark_and_a_bad_count_before_running_any()
    {
        var (exit, output, errors) = await RunAsync(EngineBench, "decide", "fastest", "--commands", "lots", "--rounds", "0");
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        var lines = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("engine-bench: unknown benchmark 'fastest'; one of: decide, throughput, latency, holds, warehouse, hop", lines);
        Assert.Contains("engine-bench: --commands 'lots' is not a whole number from 1 to 2147483647", lines);
        Assert.Contains("engine-bench: --rounds '0' is not a whole number from 1 to 20", lines);
    }
}
