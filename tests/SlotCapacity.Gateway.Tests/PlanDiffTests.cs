using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

/// <summary>The console's plan dry run and the plan file's problems, without a broker.</summary>
public class PlanDiffTests
{
    private static readonly DateTimeOffset Start = new(2030, 6, 3, 10, 0, 0, TimeSpan.Zero);

    private static AvailabilitySnapshot Busy() => new()
    {
        Slot = SlotKey.Create("LON1", Start).ToString(),
        Hub = "LON1",
        StartUnixMs = Start.ToUnixTimeMilliseconds(),
        Open = true,
        Fleet =
        {
            new FleetCounterState { Name = "vans", CapacityOrders = 10, UsedOrders = 6, HeldOrders = 1, Zones = { "north" } },
            new FleetCounterState { Name = "bikes", CapacityOrders = 4, UsedOrders = 2 },
        },
        Shared = { new SharedCounterState { Name = "picking", Measure = "items", Capacity = 100, Used = 60 } },
        Zones = { new ZoneState { Zone = "south", MaxOrders = 5, UsedOrders = 3 }, new ZoneState { Zone = "outer", Closed = true } },
    };

    [Fact]
    public void A_plan_diff_names_each_change_and_what_it_would_over_commit()
    {
        var plan = PlanFile.ParseCsv("week.csv", $"""
            {PlanFile.Header}
            LON1,2030-06-03,10:00,false,0,vans=4@north,picking:items=50,south:max=2
            LON1,2030-06-03,12:00,true,0,vans=10,,
            """, out var sources);
        var busy = Busy();
        var preview = PlanDiff.Compute(plan, sources, slot => slot == busy.Slot ? busy : null, DateTimeOffset.UtcNow);

        Assert.Empty(preview.Problems);
        Assert.Equal((1, 1, 0, 1), (preview.New, preview.Changed, preview.Unchanged, preview.OverCommitted));
        var changed = preview.Slots[0];
        Assert.Equal("week.csv line 2", changed.Source);
        Assert.Equal(["closes", "fleet vans: 10 -> 4 orders", "fleet bikes: removed", "shared picking: 100 -> 50 items", "zone south: max 5 -> max 2", "zone outer: closed -> none"], changed.Changes);
        Assert.Equal(["fleet vans: 6 used > 4", "fleet bikes: removed with 2 orders on it", "shared picking: 60 used > 50", "zone south: 3 used > max 2"], changed.OverCommitted);
        Assert.Equal("new", preview.Slots[1].Change);
        Assert.Equal("week.csv line 3", preview.Slots[1].Source);
    }

    [Fact]
    public void A_plan_that_repeats_its_own_configuration_is_unchanged()
    {
        var plan = PlanFile.ParseCsv("same.csv", $"""
            {PlanFile.Header}
            LON1,2030-06-03,10:00,true,0,vans=10@north;bikes=4,picking:items=100,south:max=5;outer:closed
            """, out var sources);
        var busy = Busy();
        var preview = PlanDiff.Compute(plan, sources, slot => slot == busy.Slot ? busy : null, DateTimeOffset.UtcNow);
        Assert.Equal((0, 0, 1, 0), (preview.New, preview.Changed, preview.Unchanged, preview.OverCommitted));
    }

    [Fact]
    public void Every_bad_row_and_every_invalid_slot_is_reported_with_where_it_is()
    {
        var e = Assert.Throws<PlanFile.PlanFileException>(() => PlanFile.ParseCsv("plan.csv", $"""
            {PlanFile.Header}
            LON1,2026-13-01,08:00,true,0,vans=1,,
            LON1,2026-12-01,08:00,true,0,vans=1,,
            LON1,2026-12-01,8am,true,0,vans=1,,
            """));
        var lines = e.Message.Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("plan.csv line 2, column date", lines[0], StringComparison.Ordinal);
        Assert.StartsWith("plan.csv line 4, column start", lines[1], StringComparison.Ordinal);

        var plan = PlanFile.ParseCsv("plan.csv", $"""
            {PlanFile.Header}
            LON1,2026-12-01,08:00,true,0,vans=1,,
            LON1,2026-12-01,08:30,true,0,vans=1,,
            LON1,2026-12-01,08:00,true,0,vans=2,,
            """, out var sources);
        var preview = PlanDiff.Compute(plan, sources, _ => null, DateTimeOffset.UtcNow);
        Assert.Empty(preview.Slots);
        Assert.Equal(2, preview.Problems.Count);
        Assert.StartsWith("plan.csv line 3: slot.start:", preview.Problems[0], StringComparison.Ordinal);
        Assert.Equal("plan.csv line 4: slot LON1@2026-12-01T08:00Z is already in the plan at plan.csv line 2", preview.Problems[1]);
    }
}

/// <summary>The console's live feed, on a view fed by hand.</summary>
public class ConsoleFeedTests
{
    private static readonly DateTimeOffset Start = new(2030, 6, 3, 10, 0, 0, TimeSpan.Zero);

    private static AvailabilitySnapshot Snapshot(string hub, int hour, long used, long version) => new()
    {
        Slot = SlotKey.Create(hub, Start.AddHours(hour)).ToString(),
        Hub = hub,
        StartUnixMs = Start.AddHours(hour).ToUnixTimeMilliseconds(),
        Open = true,
        Fleet = { new FleetCounterState { Name = "vans", CapacityOrders = 100, UsedOrders = used } },
        Version = version,
    };

    [Fact]
    public async Task Many_changes_are_coalesced_into_one_update_per_listener_and_the_view_is_unhooked_when_none_listens()
    {
        var view = new AvailabilityView();
        var feed = new ConsoleFeed(view);
        view.Apply(Snapshot("LON1", 0, 0, 1));
        Assert.Null(view.Applied);

        using (var lon = feed.Listen("LON1", Start.AddDays(-1), Start.AddDays(1)))
        using (var man = feed.Listen("MAN1", Start.AddDays(-1), Start.AddDays(1)))
        {
            Assert.NotNull(view.Applied);
            for (var v = 2; v < 1_002; v++) view.Apply(Snapshot("LON1", 2 * (v % 3), v, v));
            view.Apply(Snapshot("LON1", 0, 5, 1)); // older than what the view holds: not applied, not sent

            var update = await lon.NextAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            Assert.NotNull(update);
            Assert.Equal(3, update.Slots.Count);
            Assert.Equal(1_001, update.Slots.Max(s => s.Fleet[0].UsedOrders));
            var day = Assert.Single(update.Days);
            Assert.Equal(("LON1", "2030-06-03", 3), (day.Hub, day.Date, day.Slots));
            Assert.Null(await lon.NextAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None));
            Assert.Null(await man.NextAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None));
            Assert.Equal(2, feed.Listeners);
        }
        Assert.Equal(0, feed.Listeners);
        Assert.Null(view.Applied);
    }
}
