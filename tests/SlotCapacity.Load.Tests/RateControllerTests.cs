using System.Collections.Concurrent;
using System.Diagnostics;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

public class RateControllerTests
{
    [Fact]
    public async Task Open_loop_runner_sends_at_the_target_rate_within_five_percent()
    {
        const double reservesPerSecond = 100, readsPerSecond = 400, seconds = 2;
        var plan = SlotPlan.Spread("rate", DateTimeOffset.UtcNow.AddDays(3), hubs: 2, days: 1, expectedReserves: 1_000);
        var target = new InstantTarget(enforceCapacity: true);
        var runner = new OpenLoopRunner(target, new Workload(plan, 7, "rate"), new ConcurrentQueue<AcceptedReservation>(), TextWriter.Null);

        var clock = Stopwatch.StartNew();
        var phase = await runner.RunPhaseAsync("2s", 1, reservesPerSecond, readsPerSecond, TimeSpan.FromSeconds(seconds), measured: true, CancellationToken.None);
        clock.Stop();

        var sent = target.CallTimestamps.ToArray();
        Array.Sort(sent);
        var expected = (reservesPerSecond + readsPerSecond) * seconds;
        Assert.InRange(sent.Length, expected * 0.95, expected * 1.05);
        Assert.InRange(phase.Reserve.Count, reservesPerSecond * seconds * 0.95, reservesPerSecond * seconds * 1.05);
        Assert.InRange(phase.Read.Count, readsPerSecond * seconds * 0.95, readsPerSecond * seconds * 1.05);

        // The calls are spread over the phase at the rate, not sent in a burst.
        var spanSeconds = (sent[^1] - sent[0]) / (double)Stopwatch.Frequency;
        var achievedRate = (sent.Length - 1) / spanSeconds;
        Assert.InRange(achievedRate, (reservesPerSecond + readsPerSecond) * 0.95, (reservesPerSecond + readsPerSecond) * 1.05);
        var firstHalf = sent.Count(t => (t - sent[0]) / (double)Stopwatch.Frequency < seconds / 2);
        Assert.InRange(firstHalf, sent.Length / 2 * 0.95, sent.Length / 2 * 1.05);
    }

    [Fact]
    public async Task Latency_is_measured_from_the_intended_send_time_so_a_stall_shows_in_every_call_behind_it()
    {
        var plan = SlotPlan.Hot("stall", DateTimeOffset.UtcNow.AddDays(3), expectedReserves: 1_000);
        var target = new StallingTarget(TimeSpan.FromMilliseconds(500));
        var runner = new OpenLoopRunner(target, new Workload(plan, 1, "stall"), new ConcurrentQueue<AcceptedReservation>(), TextWriter.Null);

        var phase = await runner.RunPhaseAsync("1s", 1, 0, 200, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

        // The target answers nothing for the first 500 ms, then everything at once. A closed-loop
        // client would see one slow call; here every call due during the stall waited for it: the
        // first half of the calls have latencies spread evenly from 500 ms down to 0.
        Assert.Equal(200, phase.Read.Count);
        Assert.InRange(phase.Read.MaxMs, 400, 750);
        Assert.InRange(phase.Read.PercentileMs(75), 150, 400);
        Assert.True(phase.Read.PercentileMs(40) < 60, $"p40 {phase.Read.PercentileMs(40)} ms: calls after the stall are fast");
    }

    /// <summary>Holds every call until a moment after it was created, then answers at once.</summary>
    private sealed class StallingTarget(TimeSpan stall) : ITarget
    {
        private readonly Task _released = Task.Delay(stall);
        public string Name => "stalling";
        public string Endpoint => "in-process";
        public string Notes => "test double";
        public IReadOnlyList<WatchedProcess> Processes => [];
        public Task PrepareAsync(SlotPlan plan, CancellationToken ct) => Task.CompletedTask;
        public Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct) => throw new NotSupportedException();

        public async Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct)
        {
            await _released;
            return new ReadOutcome(1, 1);
        }

        public Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct) =>
            throw new NotSupportedException();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
