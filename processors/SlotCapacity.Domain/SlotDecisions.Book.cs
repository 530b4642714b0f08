using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

// The reservation book (records loaded on demand and settled to the slot's last applied command)
// and the slot's index keys (holds by expiry, expired-hold marks), as one command sees them.
public static partial class SlotDecisions
{
    /// <summary>
    /// A stored record as it was after the slot's last applied command: changes stamped later come
    /// from a command whose slot state was never stored (a crash between the two writes) and are
    /// undone, so that command is applied again cleanly. Returns null if the record did not exist yet.
    /// </summary>
    public static ReservationRecord? Settle(ReservationRecord? record, AppliedAt? lastApplied)
    {
        if (record is null) return null;
        bool After(AppliedAt? a) => a is not null && (lastApplied is null || (a.Partition == lastApplied.Partition && a.Offset > lastApplied.Offset));
        if (After(record.ReservedAt) || (!record.Reserved && After(record.EndedAt))) return null;
        if (After(record.EndedAt))
        {
            record.EndedAt = null;
            record.EndReason = "";
            record.Status = record.ConfirmedAt is not null || record.HoldExpiresUnixMs == 0 ? ReservationStatus.Booked : ReservationStatus.Held;
        }
        if (After(record.ConfirmedAt))
        {
            record.ConfirmedAt = null;
            record.Status = ReservationStatus.Held;
        }
        return record;
    }

    /// <summary>The reservations one command reads and changes, loaded on demand.</summary>
    private sealed class Book(ISlotReader stored, AppliedAt? lastApplied)
    {
        private readonly Dictionary<string, ReservationRecord?> _loaded = new(StringComparer.Ordinal);
        private readonly HashSet<string> _changedIds = new(StringComparer.Ordinal);
        public List<ReservationRecord> Changed { get; } = [];

        public ReservationRecord? Get(string id)
        {
            if (!_loaded.TryGetValue(id, out var record))
                _loaded[id] = record = Settle(stored.Reservation(id)?.Clone(), lastApplied);
            return record;
        }

        public void Write(ReservationRecord record)
        {
            _loaded[record.ReservationId] = record;
            if (_changedIds.Add(record.ReservationId)) Changed.Add(record);
        }
    }

    /// <summary>
    /// The slot's index keys as one command sees them: the stored entries with the command's own
    /// additions and removals laid over them.
    /// </summary>
    private sealed class SlotIndex(ISlotReader stored)
    {
        // Sets: a state moved from the previous version adds every hold of the slot at once, and
        // its due ones are removed again in the same command.
        private readonly HashSet<(long Expiry, string Id)> _holdsAdded = [];
        private readonly HashSet<(long Expiry, string Id)> _holdsRemoved = [];
        private readonly List<ExpiredHold> _expiredAdded = [];
        private readonly List<ExpiredHold> _expiredRemoved = [];
        private bool _dueRead;

        public bool HoldsChanged => _holdsAdded.Count > 0 || _holdsRemoved.Count > 0 || _dueRead;

        public void AddHold(long expiry, string id) => _holdsAdded.Add((expiry, id));

        public void RemoveHold(long expiry, string id)
        {
            _holdsAdded.Remove((expiry, id));
            _holdsRemoved.Add((expiry, id));
        }

        /// <summary>The holds due at <paramref name="unixMs"/>, by expiry then id (ordinal, whatever
        /// order the store's bytes sort in).</summary>
        public List<(long Expiry, string Id)> HoldsDue(long unixMs)
        {
            _dueRead = true;
            var due = stored.HoldsDueBy(unixMs).Select(e => (Expiry: e.ExpiresUnixMs, Id: e.ReservationId))
                .Where(e => !_holdsRemoved.Contains(e))
                .Concat(_holdsAdded.Where(e => e.Expiry <= unixMs))
                .Distinct().ToList();
            due.Sort((a, b) => a.Expiry != b.Expiry ? a.Expiry.CompareTo(b.Expiry) : string.CompareOrdinal(a.Id, b.Id));
            return due;
        }

        /// <summary>The earliest hold expiry left, 0 if none. <paramref name="before"/> (the slot's
        /// earliest before this command) stands for the stored entries while this command only
        /// added some; otherwise they are read up to the first this command did not remove.</summary>
        public long EarliestHold(long before)
        {
            var earliest = _holdsRemoved.Count == 0 && !_dueRead
                ? before == 0 ? long.MaxValue : before
                : stored.HoldsDueBy(long.MaxValue).Select(e => (Expiry: e.ExpiresUnixMs, Id: e.ReservationId))
                .Where(e => !_holdsRemoved.Contains(e)).Select(e => e.Expiry).DefaultIfEmpty(long.MaxValue).First();
            foreach (var (expiry, _) in _holdsAdded) earliest = Math.Min(earliest, expiry);
            return earliest == long.MaxValue ? 0 : earliest;
        }

        public void MarkExpired(ExpiredHold mark) => _expiredAdded.Add(mark);

        /// <summary>Ids of the holds expired by the command at <paramref name="at"/>.</summary>
        public IEnumerable<string> ExpiredBy(AppliedAt at) =>
            _expiredAdded.Where(m => m.Offset == at.Offset).Select(m => m.ReservationId);

        /// <summary>Removes the marks older than <paramref name="keepAfter"/>, reading from the
        /// oldest offset and stopping at the first younger one: O(marks removed).</summary>
        public void PruneExpired(long keepAfter)
        {
            foreach (var mark in stored.ExpiredFrom(0))
            {
                if (mark.UnixMs >= keepAfter) break;
                _expiredRemoved.Add(mark);
            }
        }

        public IndexChanges Changes() => new(
            [.. _holdsAdded.Select(Entry)], [.. _holdsRemoved.Select(Entry)], _expiredAdded, _expiredRemoved);

        private static HoldIndexEntry Entry((long Expiry, string Id) e) => new() { ExpiresUnixMs = e.Expiry, ReservationId = e.Id };
    }

    /// <summary>
    /// A state written before the hold index keeps its holds and expiry marks inside: they move to
    /// index keys with this command (the state written with it no longer has them; a crash before
    /// that write leaves them in place to move again).
    /// </summary>
    private static void MoveLegacyHolds(SlotState state, SlotIndex index, AppliedAt at)
    {
        foreach (var (id, expiry) in state.LegacyHeld) index.AddHold(expiry, id);
        var keepAfter = KeepExpiredAfter(at);
        foreach (var mark in state.LegacyRecentlyExpired)
            if (mark.UnixMs >= keepAfter) index.MarkExpired(mark);
        state.LegacyHeld.Clear();
        state.LegacyRecentlyExpired.Clear();
    }

    private static long KeepExpiredAfter(AppliedAt at) => at.UnixMs - (long)RecentlyExpiredKept.TotalMilliseconds;
}
