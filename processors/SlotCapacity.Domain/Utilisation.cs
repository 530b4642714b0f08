using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

/// <summary>Utilisation per hub and UTC day, folded from availability snapshots: the live view's
/// (the gateway's GetUtilisation) and a replay's of the events topic, so both read the same.</summary>
public static class Utilisation
{
    public static IEnumerable<DayUtilisation> PerHubAndDay(IEnumerable<AvailabilitySnapshot> slots) =>
        slots
            .GroupBy(s => (s.Hub, Date: DateTimeOffset.FromUnixTimeMilliseconds(s.StartUnixMs).UtcDateTime.ToString("yyyy-MM-dd")))
            .OrderBy(g => g.Key.Hub, StringComparer.Ordinal).ThenBy(g => g.Key.Date, StringComparer.Ordinal)
            .Select(g =>
            {
                var day = new DayUtilisation { Hub = g.Key.Hub, Date = g.Key.Date };
                foreach (var slot in g)
                {
                    day.Slots++;
                    foreach (var fleet in slot.Fleet)
                    {
                        day.CapacityOrders += fleet.CapacityOrders;
                        day.UsedOrders += fleet.UsedOrders;
                        day.HeldOrders += fleet.HeldOrders;
                    }
                    if (slot.OverCommitted) day.OverCommittedSlots++;
                    if (!slot.Open) day.ClosedSlots++;
                }
                day.Utilisation = day.CapacityOrders == 0 ? 0 : (double)day.UsedOrders / day.CapacityOrders;
                return day;
            });
}
