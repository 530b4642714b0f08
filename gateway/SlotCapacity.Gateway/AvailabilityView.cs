using System.Collections.Concurrent;
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
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, AvailabilitySnapshot>> byHub = new(StringComparer.Ordinal);
    private int slotCount;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<AvailabilitySnapshot, SlotConfig> configs = new();

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
        var slots = byHub.GetOrAdd(snapshot.Hub, _ => new ConcurrentDictionary<string, AvailabilitySnapshot>(StringComparer.Ordinal));
        while (true)
        {
            if (!slots.TryGetValue(snapshot.Slot, out var current))
            {
                if (slots.TryAdd(snapshot.Slot, snapshot))
                {
                    Interlocked.Increment(ref slotCount);
                    applied?.Invoke(snapshot);
                    return true;
                }
                continue;
            }
            if (current.Version > snapshot.Version) return false;
            if (slots.TryUpdate(snapshot.Slot, snapshot, current))
            {
                applied?.Invoke(snapshot);
                return true;
            }
        }
    }

    /// <summary>Removes a slot (a tombstone on the compacted topic).</summary>
    public void Remove(string slot)
    {
        if (!SlotKey.TryParse(slot, out var key) || !byHub.TryGetValue(key.Value.Hub, out var slots)) return;
        if (slots.TryRemove(slot, out _)) Interlocked.Decrement(ref slotCount);
    }

    /// <summary>
    /// The slot configuration a snapshot of this view shows (<see cref="SlotFit.ConfigOf"/>), built once
    /// per snapshot rather than on every read of it: building it was the largest part of a read's own
    /// work. A snapshot in the view is never changed (a new version replaces it), so the configuration
    /// stays true for as long as the snapshot lives.
    /// </summary>
    public SlotConfig ConfigOf(AvailabilitySnapshot snapshot) => configs.GetValue(snapshot, SlotFit.ConfigOf);

    public AvailabilitySnapshot? Get(string slot) =>
        SlotKey.TryParse(slot, out var key) && byHub.TryGetValue(key.Value.Hub, out var slots) && slots.TryGetValue(slot, out var s) ? s : null;

    /// <summary>Every slot's snapshot (for a checkpoint).</summary>
    public List<AvailabilitySnapshot> All() => byHub.Values.SelectMany(slots => slots.Values).ToList();

    /// <summary>Slots of <paramref name="hub"/> (every hub when empty) starting in [from, to), by start then hub.</summary>
    public List<AvailabilitySnapshot> Slots(string hub, DateTimeOffset from, DateTimeOffset to)
    {
        long fromMs = from.ToUnixTimeMilliseconds(), toMs = to.ToUnixTimeMilliseconds();
        IEnumerable<ConcurrentDictionary<string, AvailabilitySnapshot>> hubs = hub.Length == 0
            ? byHub.Values
            : byHub.TryGetValue(hub, out var one) ? [one] : [];
        var found = new List<AvailabilitySnapshot>();
        foreach (var slots in hubs)
            foreach (var snapshot in slots.Values)
                if (snapshot.StartUnixMs >= fromMs && snapshot.StartUnixMs < toMs)
                    found.Add(snapshot);
        found.Sort(static (a, b) => a.StartUnixMs != b.StartUnixMs
            ? a.StartUnixMs.CompareTo(b.StartUnixMs)
            : string.CompareOrdinal(a.Hub, b.Hub));
        return found;
    }
}
