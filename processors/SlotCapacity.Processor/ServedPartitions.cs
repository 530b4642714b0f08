using System.Collections.Concurrent;

namespace SlotCapacity.Processor;

/// <summary>
/// The command partitions this processor decides now: a task's from when the restore of its store
/// ends until its restore starts again or the task is closed (its processor's Close). Streamiz
/// reports a stream RUNNING at the end of the poll that brought its assignment, before it has even
/// opened a task's store (1.5 s early after a takeover under 500 reserves/s), and it initialises a
/// task's processor when it creates the task, before the restore, so a processor is ready only once
/// this covers its assignment as well.
/// </summary>
public sealed class ServedPartitions
{
    private readonly ConcurrentDictionary<int, byte> _served = new();

    /// <summary>Raised on Streamiz's stream thread after every change.</summary>
    public event Action? Changed;

    public void Started(int partition)
    {
        _served[partition] = 0;
        Changed?.Invoke();
    }

    public void Stopped(int partition)
    {
        _served.TryRemove(partition, out _);
        Changed?.Invoke();
    }

    /// <summary>Whether every partition of <paramref name="assigned"/> is decided here.</summary>
    public bool ServesAll(IEnumerable<int> assigned) => assigned.All(_served.ContainsKey);
}
