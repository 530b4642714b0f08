using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// The latest availability snapshot of every slot, as read from the compacted availability topic.
/// Per slot the snapshot with the highest version (offset of the command that produced it) wins,
/// so a replayed or re-ordered older snapshot never rolls the view back. Advisory only: it never
/// decides a booking.
/// </summary>
public sealed class AvailabilityView
{
    /// <summary>
    /// A snapshot with what a read derives from it, built once when the view takes the snapshot
    /// rather than on every read: a snapshot in the view is never changed (a newer version replaces
    /// it). The slot id and timestamps are shared by every reply that shows this snapshot, and never
    /// changed either.
    /// </summary>
    public sealed class Entry
    {
        internal Entry(AvailabilitySnapshot snapshot)
        {
            Snapshot = snapshot;
            Config = SlotFit.ConfigOf(snapshot);
            SlotId = new SlotId { Hub = snapshot.Hub, Start = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(snapshot.StartUnixMs)) };
            Cutoff = snapshot.CutoffUnixMs > 0 ? Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(snapshot.CutoffUnixMs)) : null;
        }

        public AvailabilitySnapshot Snapshot { get; }
        /// <summary>The slot configuration the snapshot shows (<see cref="SlotFit.ConfigOf"/>).</summary>
        public SlotConfig Config { get; }
        public SlotId SlotId { get; }
        public Timestamp? Cutoff { get; }
    }

    // A hub's entries sorted by start, replaced whole (copy on write) when one changes: a read takes
    // the current array and scans it without a lock or an allocation, while a slot's snapshots
    // arrive a few hundred times a second at most. Writers take the hub's lock.
    private sealed class Hub
    {
        public volatile Entry[] ByStart = [];
    }

    private readonly ConcurrentDictionary<string, Hub> hubs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry> bySlot = new(StringComparer.Ordinal);
    private int slotCount;

    public int SlotCount => Volatile.Read(ref slotCount);

    // Set only while a planners' console listens (ConsoleFeed): with none open, applying a snapshot
    // costs one null check more, and the checkout path nothing.
    private volatile Action<AvailabilitySnapshot>? applied;

    /// <summary>Called on the follower thread with every snapshot the view takes; must be quick.</summary>
    internal Action<AvailabilitySnapshot>? Applied
    {
        get => applied;
        set => applied = value;
    }

    /// <summary>Applies a snapshot; false when the view already holds a newer one of the slot.</summary>
    public bool Apply(AvailabilitySnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        var hub = hubs.GetOrAdd(snapshot.Hub, _ => new Hub());
        lock (hub)
        {
            var known = bySlot.TryGetValue(snapshot.Slot, out var current);
            if (known && current!.Snapshot.Version > snapshot.Version) return false;
            var entry = new Entry(snapshot);
            bySlot[snapshot.Slot] = entry;
            hub.ByStart = known ? Replaced(hub.ByStart, current!, entry) : Inserted(hub.ByStart, entry);
            if (!known) Interlocked.Increment(ref slotCount);
        }
        applied?.Invoke(snapshot);
        return true;
    }

    /// <summary>Removes a slot (a tombstone on the compacted topic).</summary>
    public void Remove(string slot)
    {
        if (!SlotKey.TryParse(slot, out var key) || !hubs.TryGetValue(key.Value.Hub, out var hub)) return;
        lock (hub)
        {
            if (!bySlot.TryRemove(slot, out var gone)) return;
            hub.ByStart = Array.FindAll(hub.ByStart, e => !ReferenceEquals(e, gone));
            Interlocked.Decrement(ref slotCount);
        }
    }

    public AvailabilitySnapshot? Get(string slot) => bySlot.TryGetValue(slot, out var entry) ? entry.Snapshot : null;

    /// <summary>Every slot's snapshot (for a checkpoint).</summary>
    public List<AvailabilitySnapshot> All() => bySlot.Values.Select(e => e.Snapshot).ToList();

    /// <summary>The entries of <paramref name="hub"/> whose slot starts in [from, to), by start: a
    /// view of the hub's current array, so a read allocates nothing.</summary>
    public ArraySegment<Entry> InHub(string hub, DateTimeOffset from, DateTimeOffset to)
    {
        if (!hubs.TryGetValue(hub, out var found)) return ArraySegment<Entry>.Empty;
        var entries = found.ByStart;
        long fromMs = from.ToUnixTimeMilliseconds(), toMs = to.ToUnixTimeMilliseconds();
        var first = FirstStartingAtOrAfter(entries, fromMs);
        var end = FirstStartingAtOrAfter(entries, toMs);
        return new ArraySegment<Entry>(entries, first, Math.Max(0, end - first));
    }

    /// <summary>Slots of <paramref name="hub"/> (every hub when empty) starting in [from, to), by start then hub.</summary>
    public List<AvailabilitySnapshot> Slots(string hub, DateTimeOffset from, DateTimeOffset to)
    {
        var names = hub.Length == 0 ? hubs.Keys.ToList() : [hub];
        var found = new List<AvailabilitySnapshot>();
        foreach (var name in names)
            foreach (var entry in InHub(name, from, to))
                found.Add(entry.Snapshot);
        found.Sort(static (a, b) => a.StartUnixMs != b.StartUnixMs
            ? a.StartUnixMs.CompareTo(b.StartUnixMs)
            : string.CompareOrdinal(a.Hub, b.Hub));
        return found;
    }

    private static int FirstStartingAtOrAfter(Entry[] entries, long unixMs)
    {
        int low = 0, high = entries.Length;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (entries[middle].Snapshot.StartUnixMs < unixMs) low = middle + 1;
            else high = middle;
        }
        return low;
    }

    private static Entry[] Inserted(Entry[] entries, Entry entry)
    {
        var at = FirstStartingAtOrAfter(entries, entry.Snapshot.StartUnixMs);
        var copy = new Entry[entries.Length + 1];
        Array.Copy(entries, copy, at);
        copy[at] = entry;
        Array.Copy(entries, at, copy, at + 1, entries.Length - at);
        return copy;
    }

    private static Entry[] Replaced(Entry[] entries, Entry current, Entry entry)
    {
        var copy = (Entry[])entries.Clone();
        copy[Array.IndexOf(copy, current)] = entry;
        return copy;
    }
}
