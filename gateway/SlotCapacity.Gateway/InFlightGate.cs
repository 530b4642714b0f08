namespace SlotCapacity.Gateway;

/// <summary>
/// Counts writes waiting for a reply. Above the limit a call is refused at once (load shedding:
/// overload must not turn into queueing behind the deadline). Once stopping, no call is let in and
/// <see cref="DrainedAsync"/> completes when the last one in flight has been answered. How a refused
/// call is answered is the caller's concern (<see cref="GatewayCalls"/>).
/// </summary>
public sealed class InFlightGate(int limit)
{
    public enum Entry { Entered, Shed, Stopping }

    private readonly TaskCompletionSource drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int inFlight;
    private volatile bool stopping;

    public int InFlight => Volatile.Read(ref inFlight);
    public bool Stopping => stopping;

    public Entry TryEnter()
    {
        if (stopping) return Entry.Stopping;
        if (Interlocked.Increment(ref inFlight) > limit)
        {
            Exit();
            return Entry.Shed;
        }
        if (stopping)
        {
            // BeginStop ran between the two checks; it may already have seen zero in flight.
            Exit();
            return Entry.Stopping;
        }
        return Entry.Entered;
    }

    public void Exit()
    {
        if (Interlocked.Decrement(ref inFlight) == 0 && stopping) drained.TrySetResult();
    }

    /// <summary>Refuses new calls from now on.</summary>
    public void BeginStop()
    {
        stopping = true;
        if (InFlight == 0) drained.TrySetResult();
    }

    public Task DrainedAsync => drained.Task;
}
