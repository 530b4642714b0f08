using SlotCapacity.Contracts;

namespace SlotCapacity.Load;

/// <summary>A slot the harness configures before a run, with the capacities the audit checks against.</summary>
public sealed record PlannedSlot(SlotKey Key, SlotConfig Config, double Popularity)
{
    public string Id => Key.ToString();
    public long FleetCapacity => Config.Fleet.Sum(f => f.CapacityOrders);
}

/// <summary>
/// The slots of one run. Hub names carry the run id, so every run writes fresh slots and an audit
/// never mixes in bookings from an earlier run against the same long-lived cluster.
/// </summary>
public sealed class SlotPlan
{
    public static readonly string[] Zones = ["z1", "z2", "z3", "z4", "z5", "z6"];
    public static readonly int[] WindowStartHours = [8, 10, 12, 14, 16, 18, 20];

    public IReadOnlyList<PlannedSlot> Slots { get; }
    public IReadOnlyDictionary<string, PlannedSlot> ById { get; }
    public IReadOnlyList<string> Hubs { get; }

    public SlotPlan(IReadOnlyList<PlannedSlot> slots)
    {
        Slots = slots;
        ById = slots.ToDictionary(s => s.Id);
        Hubs = slots.Select(s => s.Key.Hub).Distinct().ToList();
    }

    /// <summary>
    /// Many hubs, seven two-hour windows a day over several days, three fleet counters per slot
    /// (vans carry everything everywhere; bikes only chilled, central zones; cars the outer zones),
    /// picking limits in items and totes, a capped zone and a zone closed in the evening.
    /// Capacity is scaled so that the run's expected attempts sell out the popular slots but not all.
    /// </summary>
    public static SlotPlan Spread(string runId, DateTimeOffset firstDay, int hubs, int days, long expectedReserves)
    {
        var slotCount = hubs * days * WindowStartHours.Length;
        const long baseOrdersPerSlot = 26;
        var scale = Math.Max(1, (long)Math.Ceiling(expectedReserves * 1.2 / (slotCount * (double)baseOrdersPerSlot)));
        var slots = new List<PlannedSlot>(slotCount);
        for (var h = 0; h < hubs; h++)
        {
            var hub = $"load-{runId}-hub{h + 1:D2}";
            for (var d = 0; d < days; d++)
            {
                foreach (var hour in WindowStartHours)
                {
                    var start = firstDay.UtcDateTime.Date.AddDays(d).AddHours(hour);
                    var evening = hour >= 18;
                    var config = new SlotConfig { Open = true, CutoffUnixMs = new DateTimeOffset(start).AddHours(-2).ToUnixTimeMilliseconds() };
                    config.Fleet.Add(Fleet("vans", 12 * scale, [], ["bulky", "chilled"]));
                    config.Fleet.Add(Fleet("bikes-central", 8 * scale, ["z1", "z2", "z3"], ["chilled"]));
                    config.Fleet.Add(Fleet("cars-outer", 6 * scale, ["z4", "z5", "z6"], ["chilled"]));
                    config.Shared.Add(new SharedCounterConfig { Name = "picking-items", Measure = "items", Capacity = 1_300 * scale });
                    config.Shared.Add(new SharedCounterConfig { Name = "totes", Measure = "totes", Capacity = 100 * scale });
                    config.ZoneRules.Add(new ZoneRule { Zone = "z5", MaxOrders = 4 * scale });
                    if (evening) config.ZoneRules.Add(new ZoneRule { Zone = "z6", Closed = true });
                    // Evenings and the nearest day sell first.
                    var popularity = (evening ? 2.0 : hour == 8 ? 1.5 : 1.0) * (d == 0 ? 2.0 : 1.0) * (1.0 + (h % 5) * 0.25);
                    slots.Add(new PlannedSlot(SlotKey.Create(hub, new DateTimeOffset(start, TimeSpan.Zero)), config, popularity));
                }
            }
        }
        return new SlotPlan(slots);
    }

    /// <summary>One slot every customer wants: big enough to take a long run, small enough to sell out.</summary>
    public static SlotPlan Hot(string runId, DateTimeOffset firstDay, long expectedReserves)
    {
        var orders = Math.Max(100, expectedReserves * 6 / 10);
        var start = firstDay.UtcDateTime.Date.AddHours(18);
        var config = new SlotConfig { Open = true, CutoffUnixMs = new DateTimeOffset(start).AddHours(-2).ToUnixTimeMilliseconds() };
        config.Fleet.Add(Fleet("vans", orders / 2, [], ["bulky", "chilled"]));
        config.Fleet.Add(Fleet("bikes-central", orders * 3 / 10, ["z1", "z2", "z3"], ["chilled"]));
        config.Fleet.Add(Fleet("cars-outer", orders / 5, ["z4", "z5", "z6"], ["chilled"]));
        config.Shared.Add(new SharedCounterConfig { Name = "picking-items", Measure = "items", Capacity = orders * 50 });
        config.Shared.Add(new SharedCounterConfig { Name = "totes", Measure = "totes", Capacity = orders * 4 });
        config.ZoneRules.Add(new ZoneRule { Zone = "z5", MaxOrders = orders / 6 });
        var key = SlotKey.Create($"load-{runId}-hot", new DateTimeOffset(start, TimeSpan.Zero));
        return new SlotPlan([new PlannedSlot(key, config, 1.0)]);
    }

    private static FleetCounterConfig Fleet(string name, long capacity, string[] zones, string[] carries)
    {
        var f = new FleetCounterConfig { Name = name, CapacityOrders = capacity };
        f.Zones.AddRange(zones);
        f.Carries.AddRange(carries);
        return f;
    }
}
