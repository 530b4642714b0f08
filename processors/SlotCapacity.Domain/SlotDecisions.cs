using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

/// <summary>
/// What a decision reads of a slot besides its state: the slot's other stored keys, read-only
/// (the processor's store; memory in tests). Each lookup costs what it returns, never the size
/// of the slot.
/// </summary>
public interface ISlotReader
{
    /// <summary>The stored record of a reservation id, null if none.</summary>
    ReservationRecord? Reservation(string reservationId);

    /// <summary>The slot's hold index entries whose expiry is at or before <paramref name="unixMs"/>,
    /// earliest first; read lazily, so taking the first entry reads one.</summary>
    IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs);

    /// <summary>The slot's expired-hold marks of the command at <paramref name="offset"/> and every
    /// later one, by offset; read lazily.</summary>
    IEnumerable<ExpiredHold> ExpiredFrom(long offset);
}

/// <summary>What one command did to one slot.</summary>
/// <param name="State">The slot state to store (with the command's position as last applied), or
/// null when nothing must be written: a re-delivered command, or one whose slot key is unusable.</param>
/// <param name="Reservations">Reservation records created or changed, to store BEFORE the slot state:
/// a crash between the two leaves records stamped after the state's last applied offset, which
/// the next decision on the slot undoes (see <see cref="SlotDecisions.Settle"/>).</param>
/// <param name="Index">Hold index entries and expired-hold marks to add (BEFORE the slot state) and
/// to remove (AFTER it).</param>
/// <param name="Reply">The answer for the sender (sent only when the command names a reply partition).</param>
/// <param name="Events">Accepted changes, in order; ids are "{partition}:{offset}:{index}".</param>
/// <param name="Snapshot">The slot's new availability when capacity or configuration changed, else null.</param>
public sealed record Decision(
    SlotState? State, IReadOnlyList<ReservationRecord> Reservations, IndexChanges Index, SlotReply Reply,
    IReadOnlyList<SlotEvent> Events, AvailabilitySnapshot? Snapshot);

/// <summary>
/// Changes to a slot's index keys. Added entries are stored with the records, before the slot
/// state; removed ones after it. A crash before the state write thus leaves every entry the stored
/// state still needs (added ones are written again when the command comes again); a crash after it
/// leaves entries of holds that are no longer held, which the next due scan skips and removes.
/// </summary>
public sealed record IndexChanges(
    IReadOnlyList<HoldIndexEntry> HoldsAdded, IReadOnlyList<HoldIndexEntry> HoldsRemoved,
    IReadOnlyList<ExpiredHold> ExpiredAdded, IReadOnlyList<ExpiredHold> ExpiredRemoved)
{
    public static readonly IndexChanges None = new([], [], [], []);
}

/// <summary>
/// How a reservation is decided. Pure: the outcome depends only on the slot's state and the
/// command with its record timestamp and position, never on a clock, so re-processing after a
/// crash gives the same answers.
/// <list type="bullet">
/// <item>A command at or below the slot's last applied offset (same partition) is a re-delivery:
/// it is answered from state and re-emits the events it caused, and is never applied twice.</item>
/// <item>Every other command first frees the holds whose expiry is at or before its timestamp,
/// by expiry then reservation id (ordinal), found in the slot's hold index.</item>
/// <item>A Reserve is checked in this order: reservation id already known (same content = same
/// answer, different content = INVALID, abandoned = UNAVAILABLE), slot configured, open, before
/// cut-off, zone open, zone under its limit, some fleet counter serves the zone and carries every
/// required capability, every shared counter has room for the order's quantity of its measure
/// (all or nothing), and finally an eligible fleet counter has room: the one with the most room
/// left wins, ties broken by name (ordinal).</item>
/// </list>
/// </summary>
public static class SlotDecisions
{
    /// <summary>How long expired holds are remembered so a re-delivered command can re-emit their events.</summary>
    public static readonly TimeSpan RecentlyExpiredKept = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Decides one command for one slot. <paramref name="state"/> is the slot's stored state (null if
    /// the slot was never seen); it is updated in place and returned as <see cref="Decision.State"/>,
    /// so pass a copy to keep the old one. <paramref name="stored"/> reads the slot's other keys;
    /// records are copied before any change.
    /// </summary>
    public static Decision Decide(SlotState? state, ISlotReader stored, SlotCommand command,
        long commandTimestampMs, int partition, long offset)
    {
        ArgumentNullException.ThrowIfNull(stored);
        var at = new AppliedAt { Partition = partition, Offset = offset, UnixMs = commandTimestampMs, CommandId = command.CommandId };

        if (!SlotKey.TryParse(command.Slot, out var slotKey))
            return new Decision(null, [], IndexChanges.None, Reject(command, at, RejectReason.Invalid,
                $"slot '{command.Slot}' is not a slot key 'hub@yyyy-MM-ddTHH:mmZ'"), [], null);

        if (state is not null && IsRedelivery(state, at))
            return AnswerRedelivery(state, stored, command, at);

        state ??= new SlotState { Slot = command.Slot };
        var book = new Book(stored, state.LastApplied);
        var index = new SlotIndex(stored);
        MoveLegacyHolds(state, index, at);
        var reply = new Slot(state, book, index, at).Apply(command);
        state.LastApplied = at;
        if (index.HoldsChanged) state.NextHoldExpiryUnixMs = index.EarliestHold(state.NextHoldExpiryUnixMs);
        var events = EventsAt(state, book, at, index.ExpiredBy(at), ReservationIdOf(command));
        var snapshot = events.Count > 0 && state.Configured ? Snapshot(state, slotKey.Value, at) : null;
        return new Decision(state, book.Changed, index.Changes(), reply, events, snapshot);
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

    /// <summary>The slot's availability as of its last applied command.</summary>
    public static AvailabilitySnapshot Snapshot(SlotState state, SlotKey key, AppliedAt asOf)
    {
        var config = state.Config ?? new SlotConfig();
        var snapshot = new AvailabilitySnapshot
        {
            Slot = state.Slot,
            Hub = key.Hub,
            StartUnixMs = key.Start.ToUnixTimeMilliseconds(),
            EndUnixMs = key.End.ToUnixTimeMilliseconds(),
            Open = config.Open,
            CutoffUnixMs = config.CutoffUnixMs,
            AsOfUnixMs = asOf.UnixMs,
            Version = asOf.Offset,
        };
        foreach (var fleet in config.Fleet)
        {
            var counter = new FleetCounterState
            {
                Name = fleet.Name,
                CapacityOrders = fleet.CapacityOrders,
                UsedOrders = Get(state.FleetUsed, fleet.Name),
                HeldOrders = Get(state.FleetHeld, fleet.Name),
            };
            counter.Zones.AddRange(fleet.Zones);
            counter.Carries.AddRange(fleet.Carries);
            snapshot.Fleet.Add(counter);
        }
        // A counter removed by a planner while it still carries bookings shows with capacity 0.
        foreach (var (name, used) in state.FleetUsed.OrderBy(p => p.Key, StringComparer.Ordinal))
            if (used > 0 && !config.Fleet.Any(f => f.Name == name))
                snapshot.Fleet.Add(new FleetCounterState { Name = name, UsedOrders = used, HeldOrders = Get(state.FleetHeld, name) });
        foreach (var shared in config.Shared)
            snapshot.Shared.Add(new SharedCounterState
            {
                Name = shared.Name,
                Measure = shared.Measure,
                Capacity = shared.Capacity,
                Used = Get(state.SharedUsed, shared.Name),
                Held = Get(state.SharedHeld, shared.Name),
            });
        foreach (var (name, used) in state.SharedUsed.OrderBy(p => p.Key, StringComparer.Ordinal))
            if (used > 0 && !config.Shared.Any(s => s.Name == name))
                snapshot.Shared.Add(new SharedCounterState { Name = name, Used = used, Held = Get(state.SharedHeld, name) });
        var zones = config.ZoneRules.Select(r => r.Zone).Concat(state.ZoneUsed.Where(p => p.Value > 0).Select(p => p.Key))
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
        foreach (var zone in zones)
        {
            var rule = config.ZoneRules.FirstOrDefault(r => r.Zone == zone);
            var zoneState = new ZoneState { Zone = zone, Closed = rule?.Closed ?? false, UsedOrders = Get(state.ZoneUsed, zone) };
            if (rule is { HasMaxOrders: true }) zoneState.MaxOrders = rule.MaxOrders;
            snapshot.Zones.Add(zoneState);
        }
        snapshot.OverCommitted = snapshot.Fleet.Any(f => f.UsedOrders > f.CapacityOrders)
            || snapshot.Shared.Any(s => s.Used > s.Capacity)
            || snapshot.Zones.Any(z => z.HasMaxOrders && z.UsedOrders > z.MaxOrders);
        return snapshot;
    }

    private static bool IsRedelivery(SlotState state, AppliedAt at) =>
        state.LastApplied is { } last && last.Partition == at.Partition && at.Offset <= last.Offset;

    /// <summary>
    /// A re-delivered command was applied before: its effects are in the state, each stamped with
    /// the position that caused it. The reply and events are rebuilt from those stamps. A command
    /// that left no stamp had no effect; its answer is worked out again on a copy of the state,
    /// and if that copy would now take an effect, the original must have been a reject whose
    /// cause has since gone (say, capacity freed), so it is answered as a retryable reject.
    /// </summary>
    private static Decision AnswerRedelivery(SlotState state, ISlotReader stored, SlotCommand command, AppliedAt at)
    {
        var book = new Book(stored, state.LastApplied);
        var reply = StampedReply(state, book, command, at);
        if (reply is null)
        {
            var copy = state.Clone();
            var trial = new Book(stored, state.LastApplied);
            reply = new Slot(copy, trial, new SlotIndex(stored), at).ApplyWithoutExpiry(command);
            if (!copy.Equals(state) || trial.Changed.Count > 0)
                reply = Reject(command, at, RejectReason.Unavailable,
                    "re-delivered command that was rejected before; its original reason no longer applies, try again");
        }
        reply.Replayed = true;
        // The marks of the holds it expired: in index keys, or still in a state written before them.
        var expired = stored.ExpiredFrom(at.Offset).TakeWhile(m => m.Offset == at.Offset)
            .Concat(state.LegacyRecentlyExpired.Where(m => m.Offset == at.Offset))
            .Select(m => m.ReservationId);
        return new Decision(null, [], IndexChanges.None, reply, EventsAt(state, book, at, expired, ReservationIdOf(command)), null);
    }

    private static bool Here(AppliedAt? a, AppliedAt at) => a is not null && a.Partition == at.Partition && a.Offset == at.Offset;

    private static SlotReply? StampedReply(SlotState state, Book book, SlotCommand command, AppliedAt at)
    {
        var id = ReservationIdOf(command);
        var r = id.Length == 0 ? null : book.Get(id);
        switch (command.BodyCase)
        {
            case SlotCommand.BodyOneofCase.Reserve when r is not null && Here(r.ReservedAt, at):
                return Accept(command, at, r, r.HoldExpiresUnixMs > 0 ? ReservationStatus.Held : ReservationStatus.Booked);
            case SlotCommand.BodyOneofCase.Confirm when r is not null && Here(r.ConfirmedAt, at):
                return Accept(command, at, r, ReservationStatus.Booked);
            case SlotCommand.BodyOneofCase.Release when r is not null && Here(r.EndedAt, at):
                return Accept(command, at, r, ReservationStatus.Released);
            case SlotCommand.BodyOneofCase.Abandon when r is not null && Here(r.EndedAt, at):
                return Accept(command, at, r.Reserved ? r : null, ReservationStatus.Abandoned);
            case SlotCommand.BodyOneofCase.Configure or SlotCommand.BodyOneofCase.SetOpen when Here(state.ConfiguredAt, at):
                return Accept(command, at, null, ReservationStatus.Unspecified);
            default:
                return null;
        }
    }

    /// <summary>
    /// The events caused by the command at <paramref name="at"/>, rebuilt from the stamps in the
    /// state and records: first the holds it expired (<paramref name="expiredIds"/>, any order;
    /// emitted by expiry, then id), then its own change. Building the events of a fresh command the
    /// same way makes a re-delivery emit identical events.
    /// </summary>
    private static List<SlotEvent> EventsAt(SlotState state, Book book, AppliedAt at, IEnumerable<string> expiredIds, string ownReservationId)
    {
        var events = new List<SlotEvent>();
        var expired = expiredIds.Distinct(StringComparer.Ordinal).Select(book.Get)
            .Where(r => r is not null && Here(r.EndedAt, at)).Select(r => r!)
            .OrderBy(r => r.HoldExpiresUnixMs).ThenBy(r => r.ReservationId, StringComparer.Ordinal);
        foreach (var record in expired)
            events.Add(ReservationEvent(state, at, events.Count, record, SlotEventKind.HoldExpired, -1));
        if (ownReservationId.Length > 0 && book.Get(ownReservationId) is { } own)
        {
            SlotEventKind? kind = null;
            if (Here(own.EndedAt, at) && own.Status != ReservationStatus.Expired)
                kind = own.Status == ReservationStatus.Released ? SlotEventKind.ReservationReleased : SlotEventKind.ReservationAbandoned;
            else if (Here(own.ConfirmedAt, at))
                kind = SlotEventKind.ReservationConfirmed;
            else if (Here(own.ReservedAt, at))
                kind = own.HoldExpiresUnixMs > 0 ? SlotEventKind.ReservationHeld : SlotEventKind.ReservationBooked;
            if (kind is { } ownKind)
            {
                var sign = ownKind switch
                {
                    SlotEventKind.ReservationHeld or SlotEventKind.ReservationBooked => 1,
                    SlotEventKind.ReservationConfirmed => 0,
                    _ => own.Reserved ? -1 : 0,
                };
                events.Add(ReservationEvent(state, at, events.Count, own, ownKind, sign));
            }
        }
        if (Here(state.ConfiguredAt, at))
            events.Add(new SlotEvent
            {
                EventId = EventId(at, events.Count),
                Slot = state.Slot,
                Kind = SlotEventKind.SlotConfigured,
                OccurredUnixMs = state.ConfiguredAt.UnixMs,
                CommandId = state.ConfiguredAt.CommandId,
                Config = state.Config,
                ChangedBy = state.ConfiguredBy,
            });
        return events;
    }

    private static SlotEvent ReservationEvent(SlotState state, AppliedAt at, int index, ReservationRecord record, SlotEventKind kind, int sign)
    {
        var stamp = kind switch
        {
            SlotEventKind.ReservationHeld or SlotEventKind.ReservationBooked => record.ReservedAt,
            SlotEventKind.ReservationConfirmed => record.ConfirmedAt,
            _ => record.EndedAt,
        };
        var e = new SlotEvent
        {
            EventId = EventId(at, index),
            Slot = state.Slot,
            Kind = kind,
            OccurredUnixMs = stamp.UnixMs,
            CommandId = stamp.CommandId,
            ReservationId = record.ReservationId,
            OrderId = record.OrderId,
            Zone = record.Zone,
            FleetCounter = record.FleetCounter,
            FleetUnits = sign,
            HoldExpiresUnixMs = record.HoldExpiresUnixMs,
            Reason = kind switch
            {
                SlotEventKind.ReservationHeld => "held",
                SlotEventKind.ReservationBooked => "booked",
                SlotEventKind.ReservationConfirmed => "hold confirmed",
                _ => record.EndReason,
            },
        };
        if (sign != 0)
            foreach (var (name, units) in record.SharedUnits)
                e.SharedUnits[name] = sign * units;
        return e;
    }

    private static string EventId(AppliedAt at, int index) => $"{at.Partition}:{at.Offset}:{index}";

    private static long Get(Google.Protobuf.Collections.MapField<string, long> map, string key) =>
        map.TryGetValue(key, out var value) ? value : 0;

    private static void Add(Google.Protobuf.Collections.MapField<string, long> map, string key, long delta)
    {
        var value = Get(map, key) + delta;
        if (value == 0) map.Remove(key);
        else map[key] = value;
    }

    private static SlotReply NewReply(SlotCommand command, AppliedAt at) => new()
    {
        CorrelationId = command.CorrelationId,
        CommandId = command.CommandId,
        Slot = command.Slot,
        ReservationId = ReservationIdOf(command),
        CommandPartition = at.Partition,
        CommandOffset = at.Offset,
    };

    private static SlotReply Accept(SlotCommand command, AppliedAt at, ReservationRecord? record, ReservationStatus status)
    {
        var reply = NewReply(command, at);
        reply.Accepted = true;
        reply.Status = status;
        if (record is not null)
        {
            reply.FleetCounter = record.FleetCounter;
            if (status == ReservationStatus.Held) reply.HoldExpiresUnixMs = record.HoldExpiresUnixMs;
        }
        return reply;
    }

    private static SlotReply Reject(SlotCommand command, AppliedAt at, RejectReason reason, string detail,
        ReservationStatus status = ReservationStatus.Rejected)
    {
        var reply = NewReply(command, at);
        reply.Reason = reason;
        reply.Detail = detail;
        reply.Status = status;
        return reply;
    }

    private static string ReservationIdOf(SlotCommand command) => command.BodyCase switch
    {
        SlotCommand.BodyOneofCase.Reserve => command.Reserve.ReservationId,
        SlotCommand.BodyOneofCase.Confirm => command.Confirm.ReservationId,
        SlotCommand.BodyOneofCase.Release => command.Release.ReservationId,
        SlotCommand.BodyOneofCase.Abandon => command.Abandon.ReservationId,
        _ => "",
    };

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

    /// <summary>One slot while one command is applied to it.</summary>
    private readonly struct Slot(SlotState state, Book book, SlotIndex index, AppliedAt at)
    {
        private SlotConfig Config => state.Config ?? new SlotConfig();

        public SlotReply Apply(SlotCommand command)
        {
            ExpireHolds();
            return ApplyWithoutExpiry(command);
        }

        public SlotReply ApplyWithoutExpiry(SlotCommand command)
        {
            if (command.BodyCase == SlotCommand.BodyOneofCase.None)
                return Reject(command, at, RejectReason.Invalid, "command has no body (unknown command type?)");
            if (command.DeadlineUnixMs != 0 && at.UnixMs > command.DeadlineUnixMs)
                return Reject(command, at, RejectReason.ExpiredDeadline,
                    $"command timestamp {at.UnixMs} is past its deadline {command.DeadlineUnixMs}");
            return command.BodyCase switch
            {
                SlotCommand.BodyOneofCase.Reserve => Reserve(command, command.Reserve),
                SlotCommand.BodyOneofCase.Confirm => Confirm(command, command.Confirm.ReservationId),
                SlotCommand.BodyOneofCase.Release => End(command, command.Release.ReservationId, ReservationStatus.Released,
                    string.IsNullOrEmpty(command.Release.Reason) ? "released" : command.Release.Reason),
                SlotCommand.BodyOneofCase.Abandon => End(command, command.Abandon.ReservationId, ReservationStatus.Abandoned,
                    "abandoned by the gateway after a deadline miss"),
                SlotCommand.BodyOneofCase.Configure => Configure(command, command.Configure.Config),
                SlotCommand.BodyOneofCase.SetOpen => SetOpen(command, command.SetOpen.Open),
                SlotCommand.BodyOneofCase.ExpireHolds => Accept(command, at, null, ReservationStatus.Unspecified),
                _ => Reject(command, at, RejectReason.Invalid, $"unknown command type {command.BodyCase}"),
            };
        }

        private void ExpireHolds()
        {
            if (state.NextHoldExpiryUnixMs == 0 || state.NextHoldExpiryUnixMs > at.UnixMs) return;
            foreach (var (expiry, id) in index.HoldsDue(at.UnixMs))
            {
                index.RemoveHold(expiry, id);
                // An entry whose hold ended otherwise: left by a crash after the slot state was written.
                if (book.Get(id) is not { Status: ReservationStatus.Held } record || record.HoldExpiresUnixMs != expiry) continue;
                Free(record, ReservationStatus.Expired, "hold expired");
                index.MarkExpired(new ExpiredHold { ReservationId = id, Offset = at.Offset, UnixMs = at.UnixMs });
            }
            // Long enough for any re-delivery to find them.
            index.PruneExpired(KeepExpiredAfter(at));
        }

        private SlotReply Reserve(SlotCommand command, Reserve reserve)
        {
            var problem = ReserveProblem(reserve);
            if (problem is not null) return Reject(command, at, RejectReason.Invalid, problem);

            if (book.Get(reserve.ReservationId) is { } known)
            {
                if (!known.Reserved)
                    return Reject(command, at, RejectReason.Unavailable,
                        $"reservation {reserve.ReservationId} was abandoned by the gateway before it arrived", ReservationStatus.Abandoned);
                // A retry computes its hold expiry anew from its own call time, so only hold or no hold
                // must match; the answer carries the original expiry.
                if (known.OrderId != reserve.OrderId || known.Zone != reserve.Zone || !Equals(known.Needs, reserve.Needs ?? new OrderNeeds())
                    || (known.HoldExpiresUnixMs > 0) != (reserve.HoldExpiresUnixMs > 0))
                    return Reject(command, at, RejectReason.Invalid,
                        $"reservation id {reserve.ReservationId} was already used with different content");
                if (known.Status is ReservationStatus.Held or ReservationStatus.Booked)
                    return Accept(command, at, known, known.Status);
                // It took capacity once and gave it back: answering "accepted" would tell checkout it
                // holds a place it does not hold.
                return known.Status == ReservationStatus.Abandoned
                    ? Reject(command, at, RejectReason.Unavailable,
                        $"reservation {reserve.ReservationId} was abandoned after a deadline miss; reserve again with a new reservation id",
                        ReservationStatus.Abandoned)
                    : Reject(command, at, RejectReason.Invalid,
                        $"reservation {reserve.ReservationId} is no longer held or booked ({known.EndReason}); reserve again with a new reservation id",
                        known.Status);
            }

            if (!state.Configured)
                return Reject(command, at, RejectReason.UnknownSlot, $"slot {state.Slot} is not configured");
            var config = Config;
            if (!config.Open)
                return Reject(command, at, RejectReason.SlotClosed, $"slot {state.Slot} is closed");
            if (config.CutoffUnixMs != 0 && at.UnixMs >= config.CutoffUnixMs)
                return Reject(command, at, RejectReason.PastCutoff,
                    $"command timestamp {at.UnixMs} is at or after the slot's cut-off {config.CutoffUnixMs}");

            var rule = config.ZoneRules.FirstOrDefault(r => r.Zone == reserve.Zone);
            if (rule is { Closed: true })
                return Reject(command, at, RejectReason.ZoneRestricted, $"zone {reserve.Zone} is closed in this slot");
            if (rule is { HasMaxOrders: true } && Get(state.ZoneUsed, reserve.Zone) >= rule.MaxOrders)
                return Reject(command, at, RejectReason.ZoneFull, $"zone {reserve.Zone} has its {rule.MaxOrders} orders");

            var needs = reserve.Needs ?? new OrderNeeds();
            var eligible = config.Fleet.Where(f => (f.Zones.Count == 0 || f.Zones.Contains(reserve.Zone))
                                                  && needs.Requires.All(f.Carries.Contains)).ToList();
            if (eligible.Count == 0)
                return Reject(command, at, RejectReason.NoEligibleFleet,
                    $"no fleet counter serves zone {reserve.Zone}" + (needs.Requires.Count > 0 ? $" carrying {string.Join(", ", needs.Requires)}" : ""));

            var draws = new List<(string Counter, long Units)>();
            foreach (var shared in config.Shared)
            {
                if (!needs.Quantities.TryGetValue(shared.Measure, out var units) || units == 0) continue;
                if (Get(state.SharedUsed, shared.Name) + units > shared.Capacity)
                    return Reject(command, at, RejectReason.SlotFull,
                        $"shared counter {shared.Name} has {Math.Max(0, shared.Capacity - Get(state.SharedUsed, shared.Name))} {shared.Measure} left, the order needs {units}");
                draws.Add((shared.Name, units));
            }

            FleetCounterConfig? chosen = null;
            long chosenRoom = 0;
            foreach (var fleet in eligible)
            {
                var room = fleet.CapacityOrders - Get(state.FleetUsed, fleet.Name);
                if (room <= 0) continue;
                if (chosen is null || room > chosenRoom || (room == chosenRoom && string.CompareOrdinal(fleet.Name, chosen.Name) < 0))
                    (chosen, chosenRoom) = (fleet, room);
            }
            if (chosen is null)
                return Reject(command, at, RejectReason.SlotFull,
                    $"every fleet counter that can take this order is full ({string.Join(", ", eligible.Select(f => f.Name))})");

            var held = reserve.HoldExpiresUnixMs > 0;
            var record = new ReservationRecord
            {
                ReservationId = reserve.ReservationId,
                OrderId = reserve.OrderId,
                Zone = reserve.Zone,
                Needs = needs.Clone(),
                HoldExpiresUnixMs = reserve.HoldExpiresUnixMs,
                Status = held ? ReservationStatus.Held : ReservationStatus.Booked,
                FleetCounter = chosen.Name,
                Reserved = true,
                ReservedAt = at,
            };
            Add(state.FleetUsed, chosen.Name, 1);
            if (held) Add(state.FleetHeld, chosen.Name, 1);
            foreach (var (counter, units) in draws)
            {
                record.SharedUnits[counter] = units;
                Add(state.SharedUsed, counter, units);
                if (held) Add(state.SharedHeld, counter, units);
            }
            Add(state.ZoneUsed, reserve.Zone, 1);
            if (held) index.AddHold(record.HoldExpiresUnixMs, record.ReservationId);
            book.Write(record);
            return Accept(command, at, record, record.Status);
        }

        private string? ReserveProblem(Reserve reserve)
        {
            if (string.IsNullOrEmpty(reserve.ReservationId)) return "reservation id is empty";
            if (string.IsNullOrEmpty(reserve.Zone)) return "zone is empty";
            if (reserve.Needs is { } needs)
                foreach (var (measure, units) in needs.Quantities)
                    if (units < 0) return $"needs {units} {measure}: units must not be negative";
            if (reserve.HoldExpiresUnixMs < 0) return "hold expiry must not be negative";
            if (reserve.HoldExpiresUnixMs > 0 && reserve.HoldExpiresUnixMs <= at.UnixMs)
                return $"hold expiry {reserve.HoldExpiresUnixMs} is not after the command timestamp {at.UnixMs}";
            return null;
        }

        private SlotReply Confirm(SlotCommand command, string reservationId)
        {
            if (string.IsNullOrEmpty(reservationId)) return Reject(command, at, RejectReason.Invalid, "reservation id is empty");
            if (book.Get(reservationId) is not { Reserved: true } record)
                return Reject(command, at, RejectReason.UnknownReservation, $"reservation {reservationId} is not held or booked in this slot");
            switch (record.Status)
            {
                case ReservationStatus.Held:
                    record.Status = ReservationStatus.Booked;
                    record.ConfirmedAt = at;
                    index.RemoveHold(record.HoldExpiresUnixMs, reservationId);
                    book.Write(record);
                    Add(state.FleetHeld, record.FleetCounter, -1);
                    foreach (var (counter, units) in record.SharedUnits) Add(state.SharedHeld, counter, -units);
                    return Accept(command, at, record, ReservationStatus.Booked);
                case ReservationStatus.Booked:
                    return Accept(command, at, record, ReservationStatus.Booked);
                default:
                    return Reject(command, at, RejectReason.Invalid,
                        $"reservation {reservationId} can no longer be confirmed: {record.EndReason}", record.Status);
            }
        }

        /// <summary>Release (cancelled order) or Abandon (gateway compensation).</summary>
        private SlotReply End(SlotCommand command, string reservationId, ReservationStatus status, string reason)
        {
            if (string.IsNullOrEmpty(reservationId)) return Reject(command, at, RejectReason.Invalid, "reservation id is empty");
            if (book.Get(reservationId) is not { } record)
            {
                if (status == ReservationStatus.Released)
                    return Reject(command, at, RejectReason.UnknownReservation, $"reservation {reservationId} is not known in this slot");
                // Remember it so that the Reserve the gateway gave up on is rejected if it arrives late.
                book.Write(new ReservationRecord
                {
                    ReservationId = reservationId,
                    Status = ReservationStatus.Abandoned,
                    EndedAt = at,
                    EndReason = "abandoned before its Reserve arrived",
                });
                return Accept(command, at, null, ReservationStatus.Abandoned);
            }
            if (!record.Reserved)
                return status == ReservationStatus.Abandoned
                    ? Accept(command, at, null, ReservationStatus.Abandoned)
                    : Reject(command, at, RejectReason.UnknownReservation, $"reservation {reservationId} was abandoned before it was reserved");
            if (record.Status is ReservationStatus.Held or ReservationStatus.Booked)
                Free(record, status, reason);
            return Accept(command, at, record, record.Status);
        }

        private void Free(ReservationRecord record, ReservationStatus status, string reason)
        {
            var held = record.Status == ReservationStatus.Held;
            Add(state.FleetUsed, record.FleetCounter, -1);
            if (held) Add(state.FleetHeld, record.FleetCounter, -1);
            foreach (var (counter, units) in record.SharedUnits)
            {
                Add(state.SharedUsed, counter, -units);
                if (held) Add(state.SharedHeld, counter, -units);
            }
            Add(state.ZoneUsed, record.Zone, -1);
            if (held) index.RemoveHold(record.HoldExpiresUnixMs, record.ReservationId);
            record.Status = status;
            record.EndedAt = at;
            record.EndReason = reason;
            book.Write(record);
        }

        private SlotReply Configure(SlotCommand command, SlotConfig? config)
        {
            if (config is null) return Reject(command, at, RejectReason.Invalid, "configure has no config");
            var problem = ConfigProblem(config);
            if (problem is not null) return Reject(command, at, RejectReason.Invalid, problem);
            // Bookings are kept whatever the new capacities: a counter below its usage just takes no more.
            state.Config = config.Clone();
            state.Configured = true;
            state.ConfiguredAt = at;
            state.ConfiguredBy = command.Configure.ChangedBy;
            return Accept(command, at, null, ReservationStatus.Unspecified);
        }

        private SlotReply SetOpen(SlotCommand command, bool open)
        {
            if (!state.Configured)
                return Reject(command, at, RejectReason.UnknownSlot, $"slot {state.Slot} is not configured");
            var config = Config.Clone();
            config.Open = open;
            state.Config = config;
            state.ConfiguredAt = at;
            state.ConfiguredBy = command.SetOpen.ChangedBy;
            return Accept(command, at, null, ReservationStatus.Unspecified);
        }

        private static string? ConfigProblem(SlotConfig config)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var fleet in config.Fleet)
            {
                if (string.IsNullOrEmpty(fleet.Name)) return "a fleet counter has no name";
                if (!names.Add(fleet.Name)) return $"fleet counter {fleet.Name} appears twice";
                if (fleet.CapacityOrders < 0) return $"fleet counter {fleet.Name} has negative capacity {fleet.CapacityOrders}";
            }
            names.Clear();
            foreach (var shared in config.Shared)
            {
                if (string.IsNullOrEmpty(shared.Name)) return "a shared counter has no name";
                if (!names.Add(shared.Name)) return $"shared counter {shared.Name} appears twice";
                if (string.IsNullOrEmpty(shared.Measure)) return $"shared counter {shared.Name} has no measure";
                if (shared.Capacity < 0) return $"shared counter {shared.Name} has negative capacity {shared.Capacity}";
            }
            names.Clear();
            foreach (var rule in config.ZoneRules)
            {
                if (string.IsNullOrEmpty(rule.Zone)) return "a zone rule has no zone";
                if (!names.Add(rule.Zone)) return $"zone {rule.Zone} has two rules";
                if (rule.HasMaxOrders && rule.MaxOrders < 0) return $"zone {rule.Zone} has negative max orders {rule.MaxOrders}";
            }
            if (config.CutoffUnixMs < 0) return "cut-off must not be negative";
            return null;
        }
    }
}
