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
        Assert.Equal(new Options("gateway-kill", 100, 30, 30, 24, 100 * 30 * 2 / 3 / 24, "results/x", ".run", Ramp: 5), options);
    }

    [Fact]
    public void Calls_climb_to_the_rate_over_the_ramp_then_keep_it_so_the_run_sends_rate_times_seconds_calls_a_ramp_later()
    {
        const int rate = 500, ramp = 4;
        // rate x ramp / 2 = 1,000 calls during the ramp: a quarter of them in its first half.
        Assert.Equal(TimeSpan.Zero, Options.Due(0, rate, ramp));
        Assert.Equal(2.0, Options.Due(250, rate, ramp).TotalSeconds, 6);
        Assert.Equal(4.0, Options.Due(1_000, rate, ramp).TotalSeconds, 6);
        // Then one call every 2 ms: the 40 s run's last call is due 2 s (half the ramp) later than without it.
        Assert.Equal(4.002, Options.Due(1_001, rate, ramp).TotalSeconds, 6);
        Assert.Equal(41.998, Options.Due(rate * 40 - 1, rate, ramp).TotalSeconds, 6);
        // TimeSpan keeps 100 ns ticks.
        var gaps = Enumerable.Range(1, rate * 40 - 1).Select(i => (Options.Due(i, rate, ramp) - Options.Due(i - 1, rate, ramp)).TotalSeconds).ToList();
        Assert.All(gaps, gap => Assert.True(gap >= 1.0 / rate - 1e-6, $"calls {gap} s apart, faster than the rate"));
        // No ramp: the full rate from the first call.
        Assert.Equal(39.998, Options.Due(rate * 40 - 1, rate, 0).TotalSeconds, 6);
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
