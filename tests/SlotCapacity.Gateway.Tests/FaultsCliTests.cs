using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway.Tests;

/// <summary>The command line of slot-faults (load/chaos.sh passes EXPERIMENT --rate --seconds --at --out --run).</summary>
public class FaultsCliTests
{
    private static async Task<(int Exit, Options? Options, string Errors)> ParseAsync(params string[] args)
    {
        Options? parsed = null;
        var errors = new StringWriter();
        var exit = await CommandLines.InvokeAsync(Options.Command(o =>
        {
            parsed = o;
            return Task.FromResult(0);
        }), args, new StringWriter(), errors, tool: "slot-faults");
        return (exit, parsed, errors.ToString());
    }

    [Fact]
    public async Task The_options_chaos_sh_passes_are_read_and_the_capacity_defaults_to_filling_two_thirds()
    {
        var (exit, options, _) = await ParseAsync("gateway-kill", "--rate", "100", "--seconds", "30", "--at", "45", "--out", "results/x", "--run", ".run");
        Assert.Equal(0, exit);
        Assert.Equal(new Options("gateway-kill", 100, 30, 30, 24, 100 * 30 * 2 / 3 / 24, "results/x", ".run"), options);
    }

    [Fact]
    public async Task A_bad_option_or_experiment_is_refused_naming_it_before_anything_runs()
    {
        var (exit, options, errors) = await ParseAsync("gateway-explode", "--rate", "0", "--speed", "2");
        Assert.Equal((2, (Options?)null), (exit, options));
        var lines = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("slot-faults: --rate '0' is not a whole number from 1 to 5000", lines);
        Assert.Contains(lines, l => l.StartsWith("slot-faults: unknown experiment 'gateway-explode'; one of: none, processor-kill", StringComparison.Ordinal));
        Assert.Contains("slot-faults: Unrecognized command or argument '--speed'.", lines);
    }
}
