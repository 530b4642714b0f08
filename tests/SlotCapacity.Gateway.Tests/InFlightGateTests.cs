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
    public async Task Concurrent_entries_never_pass_the_limit()
    {
        var gate = new InFlightGate(limit: 8);
        var peak = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 20_000; i++)
            {
                if (gate.TryEnter() != InFlightGate.Entry.Entered) continue;
                var now = gate.InFlight;
                InterlockedMax(ref peak, now);
                gate.Exit();
            }
        })));
        Assert.InRange(peak, 1, 8);
        Assert.Equal(0, gate.InFlight);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while (value > (seen = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
