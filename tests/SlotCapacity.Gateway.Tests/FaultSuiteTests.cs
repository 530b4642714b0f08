using System.Diagnostics;
using SlotCapacity.Faults;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// The cheapest experiment of the fault suite (`make chaos`), as a test: malformed records thrown
/// into the commands topic while checkout-like callers reserve through two gateways. Every call
/// gets a definite answer, and the engine holds exactly what callers were told was accepted.
/// </summary>
[Collection(WholeSystemCollection.Name)]
public sealed class FaultSuiteTests(ITestOutputHelper output)
{
    [Fact]
    public void Leader_moves_are_refused_against_a_one_broker_system_with_the_way_to_start_one_that_has_three()
    {
        var run = Directory.CreateTempSubdirectory("fault-suite-run-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(run, "bootstrap"), "127.0.0.1:9092\n");
            var leaderMove = Experiments.Find("leader-move")!;
            Assert.Contains("LOCAL_CLUSTER_BROKERS=3 make run", leaderMove.Unmet(new RunningSystem(run)), StringComparison.Ordinal);
            Assert.Null(Experiments.Find("broker-down")!.Unmet(new RunningSystem(run)));
            File.WriteAllText(Path.Combine(run, "bootstrap"), "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094\n");
            Assert.Null(leaderMove.Unmet(new RunningSystem(run)));
        }
        finally
        {
            Directory.Delete(run, recursive: true);
        }
    }

    [Fact]
    public async Task A_rolling_restart_takes_a_processor_as_back_only_once_its_ready_file_names_the_restarted_process()
    {
        var run = Directory.CreateTempSubdirectory("fault-suite-run-").FullName;
        try
        {
            var pids = Directory.CreateDirectory(Path.Combine(run, "pids")).FullName;
            await File.WriteAllTextAsync(Path.Combine(pids, "processor-1.pid"), "4242\n");
            var system = new RunningSystem(run);
            Assert.False(await system.ProcessorReadyAsync("processor-1", TimeSpan.FromMilliseconds(300)), "ready with no ready file");
            // What a SIGKILLed predecessor leaves behind.
            await File.WriteAllTextAsync(Path.Combine(pids, "processor-1.ready"), "4100\n");
            Assert.False(await system.ProcessorReadyAsync("processor-1", TimeSpan.FromMilliseconds(300)), "ready on the killed process's file");
            await File.WriteAllTextAsync(Path.Combine(pids, "processor-1.ready"), "4242\n");
            Assert.True(await system.ProcessorReadyAsync("processor-1", TimeSpan.FromSeconds(5)), "not ready once the restarted process's file is there");
        }
        finally
        {
            Directory.Delete(run, recursive: true);
        }
    }

    [Fact]
    public async Task Malformed_commands_under_steady_reserves_lose_no_call_and_leave_no_phantom_booking_or_oversell()
    {
        await using var system = await EngineAndGateways.StartAsync(output, processors: 2);
        var first = await system.StartGatewayAsync("gateway-a");
        var second = await system.StartGatewayAsync("gateway-b");
        using var client = new CheckoutClient([first.Address.ToString(), second.Address.ToString()],
            EngineAndGateways.Token(SlotRoles.Checkout), EngineAndGateways.Token(SlotRoles.Planner));
        const int Rate = 50, Calls = 400;
        var hub = $"FAULT-malformed-{Guid.NewGuid():N}"[..24];
        var slots = await client.ConfigureSlotsAsync(hub, count: 8, capacity: 30);

        var clock = Stopwatch.StartNew();
        var calls = new List<Task<Call>>();
        Task? fault = null;
        for (var n = 0; n < Calls; n++)
        {
            var due = TimeSpan.FromSeconds((double)n / Rate);
            // One reading of the clock: read twice, it can pass `due` in between, and a negative delay throws.
            var wait = due - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
            if (n == Calls / 4) fault = Task.Run(() => Experiments.WriteMalformedCommands(system.Broker.BootstrapServers, system.Topics.Commands, 1_000));
            calls.Add(client.ReserveAsync(slots[n % slots.Count], $"{hub}-{n}", n, clock));
        }
        var results = await Task.WhenAll(calls);
        await fault!;
        var booked = await client.SettledBookingsAsync(hub, slots, () => CommandsTaken.AllAsync(system.Broker.BootstrapServers, system.Topics));

        output.WriteLine($"{results.Count(c => c.Accepted)} accepted, {results.Count(c => c.Attempts > 1)} retried, "
                         + $"{results.Count(c => c.Lost)} lost; engine holds {booked.Used} of {booked.Capacity}");
        Assert.DoesNotContain(results, c => c.Lost);
        Assert.Equal(results.Count(c => c.Accepted), booked.Used);
        Assert.Equal(0, booked.OverCommittedSlots);
        Assert.Equal(8 * 30, booked.Used);
    }
}
