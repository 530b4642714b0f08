using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

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
/// answer, different content = INVALID, abandoned = UNAVAILABLE), slot configured, then
/// <see cref="Check"/>: open, window not ended, before cut-off, zone open, zone under its limit,
/// some fleet counter serves the zone and carries every required capability, every shared
/// counter has room for the order's quantity of its measure (all or nothing), and finally an
/// eligible fleet counter has room: the one with the most room left wins, ties broken by name
/// (ordinal).</item>
/// </list>
/// This file reads as a decision runs: <see cref="Decide"/>, the commands on one slot, then the
/// order-fit rules. The other parts: re-delivery (SlotDecisions.Redelivery.cs), the reservation
/// book and index keys (SlotDecisions.Book.cs), the reply, events and snapshot
/// (SlotDecisions.Outputs.cs); the types a decision returns are in Decision.cs, the input rules
/// in SlotValidation.cs.
/// </summary>
public static partial class SlotDecisions
{
    /// <summary>How long expired holds are remembered so a re-delivered command can re-emit their events.</summary>
    public static readonly TimeSpan RecentlyExpiredKept = TimeSpan.FromMinutes(10);

    /// <summary>Reserve attempts (the first and its retries) remembered per reservation as answered accepted.</summary>
    public const int MaxAcceptedAttempts = 16;

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
            return AnswerRedelivery(slotKey.Value, state, stored, command, at);

        state ??= new SlotState { Slot = command.Slot };
        var book = new Book(stored, state.LastApplied);
        var index = new SlotIndex(stored);
        MoveLegacyHolds(state, index, at);
        var reply = new Slot(slotKey.Value, state, book, index, at).Apply(command);
        state.LastApplied = at;
        if (index.HoldsChanged) state.NextHoldExpiryUnixMs = index.EarliestHold(state.NextHoldExpiryUnixMs);
        var events = EventsAt(state, book, at, index.ExpiredBy(at), ReservationIdOf(command));
        var snapshot = events.Count > 0 && state.Configured ? Snapshot(state, slotKey.Value, at) : null;
        return new Decision(state, book.Changed, index.Changes(), reply, events, snapshot);
    }

    /// <summary>One slot while one command is applied to it.</summary>
    private readonly struct Slot(SlotKey key, SlotState state, Book book, SlotIndex index, AppliedAt at)
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
            var problems = SlotValidation.Reserve(reserve, at.UnixMs);
            if (problems.Count > 0) return Reject(command, at, RejectReason.Invalid, FieldProblem.Join(problems));

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
                {
                    // This attempt's caller may now hold the accept: an Abandon of an earlier attempt must not free it.
                    if (!known.AcceptedCommandIds.Contains(command.CommandId) && known.AcceptedCommandIds.Count < MaxAcceptedAttempts)
                    {
                        known.AcceptedCommandIds.Add(command.CommandId);
                        book.Write(known);
                    }
                    return Accept(command, at, known, known.Status);
                }
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
            var needs = reserve.Needs ?? new OrderNeeds();
            var check = Check(Config, new StateUsage(state), reserve.Zone, needs, at.UnixMs, key.End.ToUnixTimeMilliseconds());
            if (check.Counter is not { } chosen) return Reject(command, at, check.Reason, check.Detail);

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
                AcceptedCommandIds = { command.CommandId },
            };
            Add(state.FleetUsed, chosen.Name, 1);
            if (held) Add(state.FleetHeld, chosen.Name, 1);
            foreach (var (counter, units) in check.Draws)
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
            if (status == ReservationStatus.Abandoned && record.Status is ReservationStatus.Held or ReservationStatus.Booked
                && StillAcceptedElsewhere(record, command.Abandon.ReserveCommandId))
                return Accept(command, at, record, record.Status);
            if (record.Status is ReservationStatus.Held or ReservationStatus.Booked)
                Free(record, status, reason);
            return Accept(command, at, record, record.Status);
        }

        /// <summary>
        /// An Abandon gives up one Reserve attempt. Checkout retries with the same reservation id on
        /// another gateway, and a retry answered accepted from state may reach its caller while the
        /// first attempt's gateway abandons: freeing then would lose an accept the caller holds (it was
        /// seen at 10x overload). The attempt is struck off; the reservation stays while any other
        /// attempt answered accepted is left. An attempt not in the list (answered otherwise, or past
        /// the cap) frees nothing: capacity held too long beats an accept lost.
        /// </summary>
        private bool StillAcceptedElsewhere(ReservationRecord record, string reserveCommandId)
        {
            // Writers before the attempt ids, and records before them: the reservation is freed.
            if (string.IsNullOrEmpty(reserveCommandId) || record.AcceptedCommandIds.Count == 0) return false;
            if (!record.AcceptedCommandIds.Remove(reserveCommandId)) return true;
            if (record.AcceptedCommandIds.Count == 0) return false;
            book.Write(record);
            return true;
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
            var problems = SlotValidation.Config(key, config, at.UnixMs);
            if (problems.Count > 0 || config is null) return Reject(command, at, RejectReason.Invalid, FieldProblem.Join(problems));
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
    }

    /// <summary>Whether an order fits a slot. <paramref name="Counter"/> is the fleet counter it
    /// takes and <paramref name="Draws"/> the units it draws on each shared counter; when it does
    /// not fit, Counter is null and <paramref name="Reason"/> and <paramref name="Detail"/> say why.</summary>
    public sealed record ReserveCheck(RejectReason Reason, string Detail, FleetCounterConfig? Counter, IReadOnlyList<(string Counter, long Units)> Draws)
    {
        public bool Fits => Counter is not null;
    }

    /// <summary>What <see cref="Decide{TUsage}"/> found, without words: the fleet counter the order
    /// takes, or the reason it does not fit (and the shared counter that is full, if that is why).</summary>
    public readonly record struct Verdict(RejectReason Reason, FleetCounterConfig? Counter, SharedCounterConfig? FullShared)
    {
        public bool Fits => Counter is not null;
    }

    /// <summary><see cref="Decide{TUsage}"/> with the refusal put in words and the shared counters'
    /// draws listed: what the engine needs to book or reject a Reserve.</summary>
    public static ReserveCheck Check(SlotConfig config, ISlotUsage used, string zone, OrderNeeds needs, long atUnixMs, long slotEndUnixMs)
    {
        var verdict = Decide(config, used, zone, needs, atUnixMs, slotEndUnixMs);
        return verdict.Counter is { } chosen
            ? new ReserveCheck(RejectReason.Unspecified, "", chosen, Draws(config, needs))
            : new ReserveCheck(verdict.Reason, Explain(verdict, config, used, zone, needs, atUnixMs, slotEndUnixMs), null, []);
    }

    /// <summary>
    /// The slot's rules for one order, checked in this order (the first that fails is the reason):
    /// open; window not ended; before cut-off (0 = none); zone not closed; zone under its max
    /// orders; some fleet counter serves the zone (its list has it, or is empty) and carries every
    /// required capability; every shared counter the order needs units of has room for them;
    /// an eligible fleet counter has room, the one with the most room left wins, ties broken by
    /// name (ordinal). The engine decides a Reserve with it (through <see cref="Check"/>); the
    /// gateway answers "could this slot take this order" with it from a snapshot, so the two cannot
    /// disagree. It allocates nothing: the gateway runs it for every slot of every availability read
    /// (hence index loops: a protobuf list's foreach allocates an enumerator).
    /// </summary>
    /// <param name="zone">Empty = any zone (an availability question; a Reserve always names one).</param>
    public static Verdict Decide<TUsage>(SlotConfig config, TUsage used, string zone, OrderNeeds needs, long atUnixMs, long slotEndUnixMs)
        where TUsage : ISlotUsage
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(used);
        ArgumentNullException.ThrowIfNull(zone);
        ArgumentNullException.ThrowIfNull(needs);
        if (!config.Open) return new(RejectReason.SlotClosed, null, null);
        if (atUnixMs >= slotEndUnixMs || (config.CutoffUnixMs != 0 && atUnixMs >= config.CutoffUnixMs))
            return new(RejectReason.PastCutoff, null, null);

        var rule = RuleOf(config, zone);
        if (rule is { Closed: true }) return new(RejectReason.ZoneRestricted, null, null);
        if (rule is { HasMaxOrders: true } && used.Zone(zone) >= rule.MaxOrders) return new(RejectReason.ZoneFull, null, null);

        var fleets = config.Fleet;
        var anyEligible = false;
        for (var i = 0; i < fleets.Count && !anyEligible; i++)
            anyEligible = Serves(fleets[i].Zones, fleets[i].Carries, zone, needs.Requires);
        if (!anyEligible) return new(RejectReason.NoEligibleFleet, null, null);

        var shared = config.Shared;
        for (var i = 0; i < shared.Count; i++)
            if (needs.Quantities.TryGetValue(shared[i].Measure, out var units) && units != 0
                && used.Shared(shared[i].Name) + units > shared[i].Capacity)
                return new(RejectReason.SlotFull, null, shared[i]);

        FleetCounterConfig? chosen = null;
        long chosenRoom = 0;
        for (var i = 0; i < fleets.Count; i++)
        {
            var fleet = fleets[i];
            if (!Serves(fleet.Zones, fleet.Carries, zone, needs.Requires)) continue;
            var room = fleet.CapacityOrders - used.Fleet(fleet.Name);
            if (room <= 0) continue;
            if (chosen is null || room > chosenRoom || (room == chosenRoom && string.CompareOrdinal(fleet.Name, chosen.Name) < 0))
                (chosen, chosenRoom) = (fleet, room);
        }
        return chosen is null ? new(RejectReason.SlotFull, null, null) : new(RejectReason.Unspecified, chosen, null);
    }

    private static ZoneRule? RuleOf(SlotConfig config, string zone)
    {
        if (zone.Length == 0) return null;
        var rules = config.ZoneRules;
        for (var i = 0; i < rules.Count; i++)
            if (rules[i].Zone == zone) return rules[i];
        return null;
    }

    /// <summary>The units an order that fits draws on each shared counter it needs.</summary>
    private static List<(string Counter, long Units)> Draws(SlotConfig config, OrderNeeds needs)
    {
        var draws = new List<(string Counter, long Units)>();
        foreach (var shared in config.Shared)
            if (needs.Quantities.TryGetValue(shared.Measure, out var units) && units != 0)
                draws.Add((shared.Name, units));
        return draws;
    }

    /// <summary>Why an order does not fit, in words, for a refused Reserve's detail.</summary>
    private static string Explain(Verdict verdict, SlotConfig config, ISlotUsage used, string zone, OrderNeeds needs, long atUnixMs, long slotEndUnixMs) =>
        verdict.Reason switch
        {
            RejectReason.SlotClosed => "the slot is closed",
            RejectReason.PastCutoff when atUnixMs >= slotEndUnixMs =>
                $"the slot's window ended at {SlotValidation.Iso(slotEndUnixMs)} (command time {SlotValidation.Iso(atUnixMs)})",
            RejectReason.PastCutoff =>
                $"command time {SlotValidation.Iso(atUnixMs)} is at or after the slot's cut-off {SlotValidation.Iso(config.CutoffUnixMs)}",
            RejectReason.ZoneRestricted => $"zone {zone} is closed in this slot",
            RejectReason.ZoneFull => $"zone {zone} has its {RuleOf(config, zone)!.MaxOrders} orders",
            RejectReason.NoEligibleFleet =>
                $"no fleet counter serves zone {zone}" + (needs.Requires.Count > 0 ? $" carrying {string.Join(", ", needs.Requires)}" : ""),
            RejectReason.SlotFull when verdict.FullShared is { } shared =>
                $"shared counter {shared.Name} has {Math.Max(0, shared.Capacity - used.Shared(shared.Name))} {shared.Measure} left, the order needs {needs.Quantities[shared.Measure]}",
            RejectReason.SlotFull =>
                $"every fleet counter that can take this order is full ({string.Join(", ", config.Fleet.Where(f => Serves(f.Zones, f.Carries, zone, needs.Requires)).Select(f => f.Name))})",
            _ => verdict.Reason.ToString(),
        };

    /// <summary>Whether a fleet counter (its <paramref name="zones"/>, empty = every zone, and what it
    /// <paramref name="carries"/>) can take an order to <paramref name="zone"/> (empty = any) that
    /// <paramref name="requires"/> these capabilities. The engine's eligibility rule; the gateway
    /// counts a snapshot's remaining orders with it.</summary>
    public static bool Serves(IList<string> zones, IList<string> carries, string zone, IList<string> requires)
    {
        ArgumentNullException.ThrowIfNull(zones);
        ArgumentNullException.ThrowIfNull(carries);
        ArgumentNullException.ThrowIfNull(zone);
        ArgumentNullException.ThrowIfNull(requires);
        if (zone.Length > 0 && zones.Count > 0 && !zones.Contains(zone)) return false;
        for (var i = 0; i < requires.Count; i++)
            if (!carries.Contains(requires[i])) return false;
        return true;
    }

    /// <summary>What a slot has used of its counters, as <see cref="Check"/> reads it.</summary>
    public interface ISlotUsage
    {
        long Fleet(string counter);
        long Shared(string counter);
        long Zone(string zone);
    }

    private sealed class StateUsage(SlotState state) : ISlotUsage
    {
        public long Fleet(string counter) => Get(state.FleetUsed, counter);
        public long Shared(string counter) => Get(state.SharedUsed, counter);
        public long Zone(string zone) => Get(state.ZoneUsed, zone);
    }

    private static long Get(Google.Protobuf.Collections.MapField<string, long> map, string key) =>
        map.TryGetValue(key, out var value) ? value : 0;

    private static void Add(Google.Protobuf.Collections.MapField<string, long> map, string key, long delta)
    {
        var value = Get(map, key) + delta;
        if (value == 0) map.Remove(key);
        else map[key] = value;
    }
}
