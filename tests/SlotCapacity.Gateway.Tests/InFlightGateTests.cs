namespace SlotCapacity.Gateway.Tests;

public class InFlightGateTests
{
    [Fact]
    public void Calls_over_the_limit_are_shed_and_room_comes_back_on_exit()
    {
        var gate = new InFlightGate(limit: 2);
        Assert.Equal(InFlightGate.Entry.Entered, gate.TryEnter());
        Assert.Equal(InFlightGate.Entry.Entered, gate.TryEnter());
        Assert.Equal(InFlightGate.Entry.Shed, gate.TryEnter());
        Assert.Equal(2, gate.InFlight);
        gate.Exit();
        Assert.Equal(InFlightGate.Entry.Entered, gate.TryEnter());
    }

    [Fact]
    public async Task Stopping_refuses_new_calls_and_drains_when_the_last_one_ends()
    {
        var gate = new InFlightGate(limit: 10);
        gate.TryEnter();
        gate.TryEnter();
        gate.BeginStop();
        Assert.Equal(InFlightGate.Entry.Stopping, gate.TryEnter());
        Assert.False(gate.DrainedAsync.IsCompleted);
        gate.Exit();
        Assert.False(gate.DrainedAsync.IsCompleted);
        gate.Exit();
        await gate.DrainedAsync.WaitAsync(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task An_idle_gate_is_drained_at_once()
    {
        var gate = new InFlightGate(limit: 10);
        gate.BeginStop();
        await gate.DrainedAsync.WaitAsync(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void Concurrent_entries_fill_the_limit_exactly_and_shed_the_rest()
    {
        const int limit = 4, workers = 16, rounds = 50;
        var gate = new InFlightGate(limit);
        for (var round = 0; round < rounds; round++)
        {
            // Every worker tries at once; the ones let in stay in until all have tried, so the
            // gate must let exactly `limit` in and shed the others, whatever the interleaving.
            using var start = new Barrier(workers);
            using var tried = new CountdownEvent(workers);
            using var release = new ManualResetEventSlim();
            var entered = 0;
            var shed = 0;
            var threads = Enumerable.Range(0, workers).Select(_ => new Thread(() =>
            {
                start.SignalAndWait();
                var entry = gate.TryEnter();
                if (entry == InFlightGate.Entry.Entered) Interlocked.Increment(ref entered);
                else if (entry == InFlightGate.Entry.Shed) Interlocked.Increment(ref shed);
                tried.Signal();
                release.Wait();
                if (entry == InFlightGate.Entry.Entered) gate.Exit();
            })).ToList();
            threads.ForEach(t => t.Start());
            tried.Wait();
            Assert.Equal((limit, workers - limit, limit), (entered, shed, gate.InFlight));
            release.Set();
            threads.ForEach(t => t.Join());
            Assert.Equal(0, gate.InFlight);
        }
    }
}
