using System.Collections.Concurrent;

namespace SlotCapacity.Gateway;

/// <summary>
/// Which partitions of the commands topic have gone dark for this gateway: no reply in time for
/// <c>darkAfter</c> while commands to them kept missing their deadline (a processor crashed
/// and its partitions are moving, or a backlog sits in front of them). A call for a slot on a dark
/// partition is answered UNAVAILABLE at once instead of writing a command that would only miss its
/// deadline too: at 10x, every such miss was an Abandon and a retry written behind the backlog, so
/// a two-second failover grew into a backlog the processors never caught up with. One command per
/// <c>probeEvery</c> still goes through; its reply in time lights the partition again.
/// A slot's partition is learnt from the delivery reports of its commands (the producer's partitioner
/// decides it); a slot not yet seen is never refused. A zero <c>darkAfter</c> darkens nothing.
/// Times are Stopwatch timestamps, passed in.
/// </summary>
public sealed class DarkPartitions(TimeSpan darkAfter, TimeSpan probeEvery, int minimumMisses = 3)
{
    private readonly ConcurrentDictionary<string, int> _partitionOf = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, Partition> _partitions = new();

    public void Delivered(string slot, int partition) => _partitionOf[slot] = partition;

    /// <summary>False when the slot's partition is dark and this is not the moment for its next probe:
    /// then <paramref name="partition"/> names it.</summary>
    public bool MaySend(string slot, long now, out int partition)
    {
        if (!_partitionOf.TryGetValue(slot, out partition)) return true;
        if (!_partitions.TryGetValue(partition, out var state)) return true;
        lock (state)
        {
            if (!state.Dark) return true;
            if (now < state.NextProbeAt) return false;
            state.NextProbeAt = now + Ticks(probeEvery);
            return true;
        }
    }

    /// <summary>A reply came within the deadline: the slot's partition is answering. True when it was dark.</summary>
    public bool Answered(string slot, long now, out int partition)
    {
        if (!_partitionOf.TryGetValue(slot, out partition)) return false;
        var state = _partitions.GetOrAdd(partition, _ => new Partition());
        lock (state)
        {
            var wasDark = state.Dark;
            state.AnsweredAt = now;
            state.Misses = 0;
            state.Dark = false;
            return wasDark;
        }
    }

    /// <summary>No reply within the deadline. True when this made the slot's partition dark.</summary>
    public bool Missed(string slot, long now, out int partition)
    {
        if (!_partitionOf.TryGetValue(slot, out partition) || darkAfter <= TimeSpan.Zero) return false;
        var state = _partitions.GetOrAdd(partition, _ => new Partition { AnsweredAt = now });
        lock (state)
        {
            state.Misses++;
            if (state.Dark || state.Misses < minimumMisses || now - state.AnsweredAt < Ticks(darkAfter)) return false;
            state.Dark = true;
            state.NextProbeAt = now + Ticks(probeEvery);
            return true;
        }
    }

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);

    private sealed class Partition
    {
        public long AnsweredAt;
        public int Misses;
        public bool Dark;
        public long NextProbeAt;
    }
}
