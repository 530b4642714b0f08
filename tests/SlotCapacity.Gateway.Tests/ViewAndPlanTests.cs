using Google.Protobuf.WellKnownTypes;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway.Tests;

public class ViewAndPlanTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);

    private static AvailabilitySnapshot Snapshot(string hub, DateTimeOffset start, long version, long used, long capacity = 10, bool open = true)
    {
        var key = SlotKey.Create(hub, start).ToString();
        return new AvailabilitySnapshot
        {
            Slot = key,
            Hub = hub,
            StartUnixMs = start.ToUnixTimeMilliseconds(),
            EndUnixMs = start.AddHours(2).ToUnixTimeMilliseconds(),
            Open = open,
            Version = version,
            Fleet =
            {
                new FleetCounterState { Name = "vans", CapacityOrders = capacity, UsedOrders = used, Zones = { "north", "south" }, Carries = { "bulky" } },
                new FleetCounterState { Name = "bikes", CapacityOrders = capacity, UsedOrders = 0, Zones = { "central" } },
            },
            Shared = { new SharedCounterState { Name = "picking", Measure = "items", Capacity = 100, Used = 90 } },
            Zones = { new ZoneState { Zone = "south", Closed = true }, new ZoneState { Zone = "north", MaxOrders = 5, UsedOrders = used } },
        };
    }

    [Fact]
    public void The_view_keeps_the_highest_version_of_each_slot()
    {
        var view = new AvailabilityView();
        Assert.True(view.Apply(Snapshot("LON1", Start, version: 5, used: 3)));
        Assert.False(view.Apply(Snapshot("LON1", Start, version: 4, used: 1)));
        Assert.Equal(3, view.Get("LON1@2026-12-01T08:00Z")!.Fleet[0].UsedOrders);
        Assert.True(view.Apply(Snapshot("LON1", Start, version: 9, used: 7)));
        Assert.Equal(7, view.Get("LON1@2026-12-01T08:00Z")!.Fleet[0].UsedOrders);
        Assert.Equal(1, view.SlotCount);

        view.Remove("LON1@2026-12-01T08:00Z");
        Assert.Equal(0, view.SlotCount);
        Assert.Null(view.Get("LON1@2026-12-01T08:00Z"));
    }

    [Fact]
    public void The_view_answers_a_hub_and_range_in_start_order()
    {
        var view = new AvailabilityView();
        for (var i = 6; i >= 0; i--) view.Apply(Snapshot("LON1", Start.AddHours(2 * i), 1, 0));
        view.Apply(Snapshot("MAN1", Start, 1, 0));

        var slots = view.Slots("LON1", Start.AddHours(2), Start.AddHours(8));
        Assert.Equal([Start.AddHours(2), Start.AddHours(4), Start.AddHours(6)], slots.Select(s => DateTimeOffset.FromUnixTimeMilliseconds(s.StartUnixMs)));
        Assert.Equal(2, view.Slots("", Start, Start.AddHours(1)).Count);
        Assert.Empty(view.Slots("NOPE", Start, Start.AddDays(1)));
    }

    [Theory]
    [InlineData("", 0, true, RejectReason.Unspecified)]
    [InlineData("central", 0, true, RejectReason.Unspecified)]
    [InlineData("south", 0, false, RejectReason.ZoneRestricted)]
    [InlineData("north", 5, false, RejectReason.ZoneFull)]
    [InlineData("central", 20, false, RejectReason.SlotFull)]
    [InlineData("west", 0, false, RejectReason.NoEligibleFleet)]
    public void Slot_fit_gives_the_engine_reason(string zone, long items, bool canTake, RejectReason reason)
    {
        var snapshot = Snapshot("LON1", Start, 1, used: zone == "north" ? 5 : 2);
        var needs = new OrderNeeds { Quantities = { ["items"] = items } };
        if (zone == "north") needs.Quantities["items"] = 0;
        var fit = SlotFit.Evaluate(snapshot, zone, needs, Start.AddDays(-1));
        Assert.Equal(canTake, fit.CanTake);
        Assert.Equal(reason, fit.Reason);
    }

    [Fact]
    public void Slot_fit_reports_fill_and_remaining_and_closed_slots()
    {
        var snapshot = Snapshot("LON1", Start, 1, used: 5);
        var fit = SlotFit.Evaluate(snapshot, "", null, Start.AddDays(-1));
        Assert.Equal(0.25, fit.FillRatio, 3);
        Assert.Equal(15, fit.RemainingOrders);

        var bulky = SlotFit.Evaluate(snapshot, "", new OrderNeeds { Requires = { "bulky" } }, Start.AddDays(-1));
        Assert.Equal(5, bulky.RemainingOrders);

        var closed = SlotFit.Evaluate(Snapshot("LON1", Start, 1, 0, open: false), "", null, Start.AddDays(-1));
        Assert.Equal(RejectReason.SlotClosed, closed.Reason);

        // A full shared counter limits only orders that draw on it.
        snapshot.Shared[0].Used = 100;
        Assert.True(SlotFit.Evaluate(snapshot, "", new OrderNeeds(), Start.AddDays(-1)).CanTake);
        Assert.Equal(RejectReason.SlotFull, SlotFit.Evaluate(snapshot, "", new OrderNeeds { Quantities = { ["items"] = 1 } }, Start.AddDays(-1)).Reason);

        snapshot.CutoffUnixMs = Start.AddHours(-1).ToUnixTimeMilliseconds();
        Assert.Equal(RejectReason.PastCutoff, SlotFit.Evaluate(snapshot, "", null, Start).Reason);
    }

    [Fact]
    public void The_view_builds_a_snapshots_configuration_once_and_a_new_version_gets_its_own()
    {
        var view = new AvailabilityView();
        var first = Snapshot("LON1", Start, 1, used: 5);
        view.Apply(first);
        var entry = Assert.Single(view.InHub("LON1", Start, Start.AddHours(1)));
        Assert.Same(entry, Assert.Single(view.InHub("LON1", Start, Start.AddHours(1))));
        Assert.Same(first, entry.Snapshot);
        Assert.Equal(SlotFit.ConfigOf(first), entry.Config);
        Assert.Equal(SlotFit.Evaluate(first, "", null, Start.AddDays(-1)), SlotFit.Evaluate(first, entry.Config, "", null, Start.AddDays(-1)));
        Assert.Equal(new SlotId { Hub = "LON1", Start = Timestamp.FromDateTimeOffset(Start) }, entry.SlotId);

        var closed = Snapshot("LON1", Start, 2, used: 5, open: false);
        view.Apply(closed);
        var replaced = Assert.Single(view.InHub("LON1", Start, Start.AddHours(1)));
        Assert.Same(closed, replaced.Snapshot);
        Assert.False(replaced.Config.Open);
        Assert.Equal(RejectReason.SlotClosed, SlotFit.Evaluate(closed, replaced.Config, "", null, Start.AddDays(-1)).Reason);

        Assert.False(view.Apply(first));
        Assert.Same(closed, view.Get(closed.Slot));
    }

    [Fact]
    public void A_hubs_slots_stay_in_start_order_as_they_arrive_change_and_go()
    {
        var view = new AvailabilityView();
        foreach (var hours in new[] { 6, 2, 10, 0, 4 })
            view.Apply(Snapshot("LON1", Start.AddHours(hours), 1, used: 0));
        view.Apply(Snapshot("LON1", Start.AddHours(4), 2, used: 3));
        view.Remove(Snapshot("LON1", Start.AddHours(6), 1, used: 0).Slot);

        var starts = view.InHub("LON1", Start.AddHours(1), Start.AddHours(11)).Select(e => e.Snapshot.StartUnixMs).ToList();
        Assert.Equal(new[] { 2, 4, 10 }.Select(h => Start.AddHours(h).ToUnixTimeMilliseconds()), starts);
        Assert.Equal(2, view.InHub("LON1", Start, Start.AddHours(11)).Single(e => e.Snapshot.StartUnixMs == Start.AddHours(4).ToUnixTimeMilliseconds()).Snapshot.Version);
        Assert.Equal(4, view.SlotCount);
        Assert.Equal(0, view.InHub("LON1", Start.AddHours(11), Start.AddDays(1)).Count);
        Assert.Equal(0, view.InHub("NOPE", Start, Start.AddDays(1)).Count);
    }

    [Fact]
    public void Utilisation_sums_each_hub_day()
    {
        var slots = new[]
        {
            Snapshot("LON1", Start, 1, used: 5),
            Snapshot("LON1", Start.AddHours(2), 1, used: 10, open: false),
            Snapshot("LON1", Start.AddDays(1), 1, used: 0),
            Snapshot("MAN1", Start, 1, used: 1),
        };
        var days = Utilisation.PerHubAndDay(slots).ToList();
        Assert.Equal(["LON1 2026-12-01", "LON1 2026-12-02", "MAN1 2026-12-01"], days.Select(d => $"{d.Hub} {d.Date}"));
        Assert.Equal(2, days[0].Slots);
        Assert.Equal(40, days[0].CapacityOrders);
        Assert.Equal(15, days[0].UsedOrders);
        Assert.Equal(1, days[0].ClosedSlots);
        Assert.Equal(15.0 / 40, days[0].Utilisation, 3);
    }

    [Fact]
    public void The_sample_plan_covers_five_hubs_fourteen_days_seven_slots_and_parses()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "sample-plan.csv");
        var plan = PlanFile.Read(path);
        Assert.Equal(5 * 14 * 7, plan.Slots.Count);
        Assert.Equal(5, plan.Slots.Select(s => s.Slot.Hub).Distinct().Count());
        Assert.Equal(14, plan.Slots.Select(s => s.Slot.Start.ToDateTimeOffset().Date).Distinct().Count());
        Assert.All(plan.Slots, s => Assert.False(RequestValidation.Configure(s, Start.AddDays(-1), out _).Any));
        Assert.Contains(plan.Slots, s => s.Config.ZoneRules.Any(z => z.Closed));
        Assert.Contains(plan.Slots, s => s.Config.ZoneRules.Any(z => z.HasMaxOrders));
        Assert.All(plan.Slots, s => Assert.NotEmpty(s.Config.Shared));
        // One ApplyPlan call; a plan ten times this size still fits the default message limit.
        Assert.True(plan.CalculateSize() * 10 < new SecuritySettings().MaxMessageBytes, $"{plan.CalculateSize()} bytes");
    }

    [Fact]
    public void A_csv_row_becomes_a_slot_configuration()
    {
        var plan = PlanFile.ParseCsv("plan.csv", """
            # comment
            hub,date,start,open,cutoff_minutes,fleet,shared,zone_rules
            LON1,2026-12-01,08:00,true,60,vans=40@north+south/bulky+chilled;bikes=20,picking:items=3000;totes=400,outer:closed;north:max=10
            """);
        var slot = Assert.Single(plan.Slots);
        Assert.Equal("LON1", slot.Slot.Hub);
        Assert.Equal(Start, slot.Slot.Start.ToDateTimeOffset());
        Assert.Equal(Start.AddHours(-1).ToUnixTimeMilliseconds(), slot.Config.CutoffUnixMs);
        Assert.Equal(["north", "south"], slot.Config.Fleet[0].Zones);
        Assert.Equal(["bulky", "chilled"], slot.Config.Fleet[0].Carries);
        Assert.Equal(20, slot.Config.Fleet[1].CapacityOrders);
        Assert.Empty(slot.Config.Fleet[1].Zones);
        Assert.Equal(("picking", "items", 3000L), (slot.Config.Shared[0].Name, slot.Config.Shared[0].Measure, slot.Config.Shared[0].Capacity));
        Assert.Equal(("totes", "totes"), (slot.Config.Shared[1].Name, slot.Config.Shared[1].Measure));
        Assert.True(slot.Config.ZoneRules[0].Closed);
        Assert.Equal(10, slot.Config.ZoneRules[1].MaxOrders);
    }

    [Theory]
    [InlineData("LON1,2026-13-01,08:00,true,0,vans=1,,", "plan.csv line 2, column date")]
    [InlineData("LON1,2026-12-01,8am,true,0,vans=1,,", "plan.csv line 2, column start")]
    [InlineData("LON1,2026-12-01,08:00,yes,0,vans=1,,", "plan.csv line 2, column open")]
    [InlineData("LON1,2026-12-01,08:00,true,0,vans=many,,", "plan.csv line 2, column fleet")]
    [InlineData("LON1,2026-12-01,08:00,true,0,vans=1,,outer:sometimes", "plan.csv line 2, column zone_rules")]
    [InlineData("LON1,2026-12-01,08:00,true,0", "plan.csv line 2: 5 columns")]
    public void A_bad_csv_cell_is_reported_with_line_and_column(string row, string expected)
    {
        var e = Assert.Throws<PlanFile.PlanFileException>(() => PlanFile.ParseCsv("plan.csv", PlanFile.Header + "\n" + row));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_json_plan_is_an_apply_plan_request()
    {
        var plan = PlanFile.ParseJson("plan.json", """
            {"slots":[{"slot":{"hub":"LON1","start":"2026-12-01T08:00:00Z"},"config":{"open":true,"fleet":[{"name":"vans","capacityOrders":"40"}]}}]}
            """);
        Assert.Equal(40, plan.Slots[0].Config.Fleet[0].CapacityOrders);
        Assert.Throws<PlanFile.PlanFileException>(() => PlanFile.ParseJson("plan.json", "{\"slots\": 3}"));
    }
}

public class CliTests
{
    [Fact]
    public async Task Plan_sample_writes_a_plan_that_parses_back()
    {
        var output = new StringWriter();
        Assert.Equal(0, await GatewayCli.RunAsync(["plan", "sample", "--from", "2027-01-04", "--days", "2"], output));
        var plan = PlanFile.ParseCsv("sample", output.ToString());
        Assert.Equal(5 * 2 * 7, plan.Slots.Count);
        Assert.Equal(new DateTimeOffset(2027, 1, 4, 8, 0, 0, TimeSpan.Zero), plan.Slots[0].Slot.Start.ToDateTimeOffset());
    }

    [Fact]
    public async Task Token_signs_a_short_lived_token_with_the_key_file_and_refuses_unknown_roles_and_long_lifetimes()
    {
        var keyFile = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(keyFile, Convert.ToBase64String(EngineAndGateways.SigningKey));
            var output = new StringWriter();
            Assert.Equal(0, await GatewayCli.RunAsync(["token", "--role", "planner,viewer", "--subject", "alice", "--ttl", "90m", "--key-file", keyFile], output));
            var token = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(output.ToString().Trim());
            Assert.Equal(("alice", "slot-capacity", "HS256"), (token.Subject, token.Issuer, token.Alg));
            Assert.Equal(["planner", "viewer"], token.Claims.Where(c => c.Type == "role").Select(c => c.Value));
            Assert.Equal(TimeSpan.FromMinutes(90), token.ValidTo - token.ValidFrom);

            foreach (var bad in new[] { new[] { "--role", "admin", "--ttl", "1h" }, ["--role", "planner", "--ttl", "48h"] })
                Assert.Equal(2, await GatewayCli.RunAsync(["token", "--subject", "alice", "--key-file", keyFile, .. bad], new StringWriter()));
        }
        finally
        {
            File.Delete(keyFile);
        }
    }

    [Theory]
    [InlineData("plan")]
    [InlineData("plan", "apply")]
    [InlineData("reserve", "--hub")]
    [InlineData("reserve", "--hub", "LON1", "--start", "tomorrow", "--zone", "north")]
    [InlineData("replay", "--at", "yesterday")]
    [InlineData("replay", "--days", "many")]
    public async Task Bad_usage_exits_2_without_calling_a_gateway(params string[] args)
    {
        var served = false;
        Assert.Equal(2, await GatewayCli.RunAsync(args, new StringWriter(), new StringWriter(), _ =>
        {
            served = true;
            return Task.FromResult(0);
        }));
        Assert.False(served);
    }

    [Theory]
    [InlineData("--bogus", "Unrecognized command or argument '--bogus'", "reserve", "--hub", "LON1", "--start", "2030-01-01T10:00Z", "--zone", "north", "--bogus")]
    [InlineData("--items", "--items 'ten' is not a whole number", "availability", "--hub", "LON1", "--items", "ten")]
    [InlineData("--zone", "Option '--zone' is required", "reserve", "--hub", "LON1", "--start", "2030-01-01T10:00Z")]
    [InlineData("--ttl", "--ttl '2d' is not a duration", "token", "--role", "planner", "--subject", "alice", "--ttl", "2d")]
    public async Task A_bad_option_is_refused_with_a_line_naming_it(string option, string expected, params string[] args)
    {
        var error = new StringWriter();
        Assert.Equal(2, await GatewayCli.RunAsync(args, new StringWriter(), error));
        var line = Assert.Single(error.ToString().Split('\n'), l => l.Contains(option, StringComparison.Ordinal) && !l.Contains("--help", StringComparison.Ordinal));
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_verb_the_executable_serves_on_urls()
    {
        var urls = new List<string?>();
        Task<int> Serve(string? url)
        {
            urls.Add(url);
            return Task.FromResult(0);
        }
        Assert.Equal(0, await GatewayCli.RunAsync([], serve: Serve));
        Assert.Equal(0, await GatewayCli.RunAsync(["--urls", "http://127.0.0.1:5109"], serve: Serve));
        Assert.Equal([null, "http://127.0.0.1:5109"], urls);
    }

    [Fact]
    public async Task Help_lists_every_verb()
    {
        var output = new StringWriter();
        Assert.Equal(0, await GatewayCli.RunAsync(["--help"], output));
        foreach (var verb in new[] { "plan", "replay", "reserve", "confirm", "release", "availability", "token" })
            Assert.Contains($"  {verb} ", output.ToString(), StringComparison.Ordinal);
    }
}
