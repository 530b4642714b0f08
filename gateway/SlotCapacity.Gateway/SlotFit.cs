using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway;

/// <summary>
/// Advisory answer to "could this slot take an order to this zone with these needs", computed from
/// an availability snapshot with the engine's own rules (<see cref="SlotDecisions.Check"/>), so the
/// answer is the engine's as of the snapshot; the engine alone decides.
/// </summary>
public static class SlotFit
{
    public readonly record struct Fit(bool CanTake, RejectReason Reason, double FillRatio, long RemainingOrders);

    /// <param name="zone">Empty = any zone.</param>
    /// <param name="needs">Null = any order.</param>
    public static Fit Evaluate(AvailabilitySnapshot slot, string zone, OrderNeeds? needs, DateTimeOffset now) =>
        Evaluate(slot, ConfigOf(slot), zone, needs, now);

    /// <param name="config"><see cref="ConfigOf"/> of <paramref name="slot"/>, e.g. kept by the view with the snapshot</param>
    /// <remarks>Allocates nothing: it runs for every slot of every availability read (hence index
    /// loops, as a protobuf list's foreach allocates an enumerator).</remarks>
    public static Fit Evaluate(AvailabilitySnapshot slot, SlotConfig config, string zone, OrderNeeds? needs, DateTimeOffset now)
    {
        var fleet = slot.Fleet;
        long capacity = 0, used = 0;
        for (var i = 0; i < fleet.Count; i++)
        {
            capacity += fleet[i].CapacityOrders;
            used += fleet[i].UsedOrders;
        }
        var fill = capacity == 0 ? (used > 0 ? 1.0 : 0.0) : (double)used / capacity;

        var order = needs ?? AnyOrder;
        var verdict = SlotDecisions.Decide(config, new SnapshotUsage(slot), zone, order, now.ToUnixTimeMilliseconds(), slot.EndUnixMs);

        long remaining = 0;
        for (var i = 0; i < fleet.Count; i++)
        {
            var counter = fleet[i];
            if (counter.Removed || !SlotDecisions.Serves(counter.Zones, counter.Carries, zone, order.Requires)) continue;
            remaining += Math.Max(0, counter.CapacityOrders - counter.UsedOrders);
        }
        if (zone.Length > 0 && ZoneOf(slot, zone) is { HasMaxOrders: true } rule)
            remaining = Math.Min(remaining, Math.Max(0, rule.MaxOrders - rule.UsedOrders));

        return new Fit(verdict.Fits, verdict.Reason, fill, remaining);
    }

    /// <summary>The configuration a snapshot shows: its counters still configured, and its zone rules.</summary>
    public static SlotConfig ConfigOf(AvailabilitySnapshot slot)
    {
        var config = new SlotConfig { Open = slot.Open, CutoffUnixMs = slot.CutoffUnixMs };
        foreach (var fleet in slot.Fleet.Where(f => !f.Removed))
            config.Fleet.Add(new FleetCounterConfig { Name = fleet.Name, CapacityOrders = fleet.CapacityOrders, Zones = { fleet.Zones }, Carries = { fleet.Carries } });
        foreach (var shared in slot.Shared.Where(s => !s.Removed))
            config.Shared.Add(new SharedCounterConfig { Name = shared.Name, Measure = shared.Measure, Capacity = shared.Capacity });
        foreach (var zone in slot.Zones)
        {
            var rule = new ZoneRule { Zone = zone.Zone, Closed = zone.Closed };
            if (zone.HasMaxOrders) rule.MaxOrders = zone.MaxOrders;
            config.ZoneRules.Add(rule);
        }
        return config;
    }

    // Never changed: an order with no needs, for a question that names none.
    private static readonly OrderNeeds AnyOrder = new();

    private static ZoneState? ZoneOf(AvailabilitySnapshot slot, string zone)
    {
        var zones = slot.Zones;
        for (var i = 0; i < zones.Count; i++)
            if (zones[i].Zone == zone) return zones[i];
        return null;
    }

    // A struct, so that SlotDecisions.Decide runs on it without an allocation.
    private readonly struct SnapshotUsage(AvailabilitySnapshot slot) : SlotDecisions.ISlotUsage
    {
        public long Fleet(string counter)
        {
            var fleet = slot.Fleet;
            for (var i = 0; i < fleet.Count; i++)
                if (fleet[i].Name == counter) return fleet[i].UsedOrders;
            return 0;
        }

        public long Shared(string counter)
        {
            var shared = slot.Shared;
            for (var i = 0; i < shared.Count; i++)
                if (shared[i].Name == counter) return shared[i].Used;
            return 0;
        }

        public long Zone(string zone) => ZoneOf(slot, zone)?.UsedOrders ?? 0;
    }
}
