using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Advisory answer to "could this slot take an order to this zone with these needs", computed from
/// an availability snapshot. It mirrors the engine's rules (open, cut-off, zone rules, an eligible
/// fleet counter with room, every shared counter the order draws on) but the engine alone decides.
/// </summary>
public static class SlotFit
{
    public sealed record Fit(bool CanTake, RejectReason Reason, double FillRatio, long RemainingOrders);

    /// <param name="zone">Empty = any zone.</param>
    /// <param name="needs">Null = any order.</param>
    public static Fit Evaluate(AvailabilitySnapshot slot, string zone, OrderNeeds? needs, DateTimeOffset now)
    {
        long capacity = 0, used = 0;
        foreach (var counter in slot.Fleet)
        {
            capacity += counter.CapacityOrders;
            used += counter.UsedOrders;
        }
        var fill = capacity == 0 ? (used > 0 ? 1.0 : 0.0) : (double)used / capacity;

        var requires = needs?.Requires ?? [];
        long remaining = 0;
        var anyEligible = false;
        foreach (var counter in slot.Fleet)
        {
            if (zone.Length > 0 && counter.Zones.Count > 0 && !counter.Zones.Contains(zone)) continue;
            if (!requires.All(counter.Carries.Contains)) continue;
            anyEligible = true;
            remaining += Math.Max(0, counter.CapacityOrders - counter.UsedOrders);
        }

        var rule = zone.Length > 0 ? slot.Zones.FirstOrDefault(z => z.Zone == zone) : null;
        if (rule is { HasMaxOrders: true })
            remaining = Math.Min(remaining, Math.Max(0, rule.MaxOrders - rule.UsedOrders));

        var reason = RejectReason.Unspecified;
        if (!slot.Open) reason = RejectReason.SlotClosed;
        else if (slot.CutoffUnixMs > 0 && now.ToUnixTimeMilliseconds() >= slot.CutoffUnixMs) reason = RejectReason.PastCutoff;
        else if (rule is { Closed: true }) reason = RejectReason.ZoneRestricted;
        else if (rule is { HasMaxOrders: true } && rule.UsedOrders >= rule.MaxOrders) reason = RejectReason.ZoneFull;
        else if (!anyEligible) reason = RejectReason.NoEligibleFleet;
        else if (remaining == 0 || SharedCounterShort(slot, needs)) reason = RejectReason.SlotFull;

        return new Fit(reason == RejectReason.Unspecified, reason, fill, remaining);
    }

    private static bool SharedCounterShort(AvailabilitySnapshot slot, OrderNeeds? needs)
    {
        foreach (var counter in slot.Shared)
        {
            // Like the engine: an order that draws nothing on a counter is not limited by it.
            var wanted = needs is not null && needs.Quantities.TryGetValue(counter.Measure, out var q) ? q : 0;
            if (wanted > 0 && counter.Used + wanted > counter.Capacity) return true;
        }
        return false;
    }
}
