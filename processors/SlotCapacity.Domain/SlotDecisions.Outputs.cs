using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

// What a decision emits: the reply, the events rebuilt from the stamps (so a re-delivery emits
// identical ones), and the availability snapshot.
public static partial class SlotDecisions
{
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
                snapshot.Fleet.Add(new FleetCounterState { Name = name, UsedOrders = used, HeldOrders = Get(state.FleetHeld, name), Removed = true });
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
                snapshot.Shared.Add(new SharedCounterState { Name = name, Used = used, Held = Get(state.SharedHeld, name), Removed = true });
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
}
