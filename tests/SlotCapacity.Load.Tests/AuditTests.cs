using System.Collections.Concurrent;
using SlotCapacity.Contracts;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

public class AuditTests
{
    private static readonly SlotPlan Plan = SlotPlan.Hot("audit", new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero), expectedReserves: 100);
    private static PlannedSlot Slot => Plan.Slots[0];
    private static long VansCapacity => Slot.Config.Fleet.Single(f => f.Name == "vans").CapacityOrders;

    private static List<AcceptedReservation> Accepts(int n, string fleet = "vans", string zone = "z1") =>
        Enumerable.Range(0, n).Select(i => new AcceptedReservation($"r{i}", Slot.Id, fleet, zone, 10, 1)).ToList();

    private static Readback Recording(IEnumerable<AcceptedReservation> accepted, long vansUsed) =>
        new("test", [new CounterReading(Slot.Id, CounterKind.Fleet, "vans", vansUsed, vansUsed)],
            accepted.Select(a => a.ReservationId).ToHashSet(), []);

    [Fact]
    public void A_run_within_capacity_with_every_accept_recorded_passes()
    {
        var accepted = Accepts((int)VansCapacity);
        var result = Audit.Check(Plan, accepted, Recording(accepted, VansCapacity));
        Assert.True(result.Passed, string.Join("\n", result.Violations));
        Assert.Equal(0, result.OversoldUnits);
        Assert.Equal(1, result.CountersChecked);
    }

    [Fact]
    public void Accepts_beyond_a_fleet_counter_capacity_are_an_oversell_even_when_the_target_claims_otherwise()
    {
        var accepted = Accepts((int)VansCapacity + 3);
        // The target's own counters say it is within capacity: the harness's accepts still convict it.
        var result = Audit.Check(Plan, accepted, Recording(accepted, VansCapacity));
        Assert.False(result.Passed);
        Assert.Equal(3, result.OversoldUnits);
        Assert.Contains(result.Violations, v => v.Contains("oversell (harness accepts)") && v.Contains("'vans'"));
    }

    [Fact]
    public void A_counter_the_target_recorded_above_capacity_is_an_oversell()
    {
        var accepted = Accepts(5);
        var readback = new Readback("test",
            [new CounterReading(Slot.Id, CounterKind.Fleet, "vans", Used: 5, Peak: VansCapacity + 1)],
            accepted.Select(a => a.ReservationId).ToHashSet(), []);
        var result = Audit.Check(Plan, accepted, readback);
        Assert.False(result.Passed);
        Assert.Equal(1, result.OversoldCounters);
    }

    [Fact]
    public void A_readback_that_could_not_read_says_why_before_the_accepts_it_could_not_find()
    {
        var accepted = Accepts(200);
        var readback = new Readback("test", [], new HashSet<string>(), ["KAFKA_BOOTSTRAP_SERVERS is not set"]);
        var result = Audit.Check(Plan, accepted, readback);
        Assert.False(result.Passed);
        Assert.Equal("readback incomplete: KAFKA_BOOTSTRAP_SERVERS is not set", result.Violations[0]);
        Assert.Equal(200, result.MissingAccepted);
    }

    [Fact]
    public void An_accept_missing_from_the_target_record_is_a_lost_reservation()
    {
        var accepted = Accepts(4);
        var readback = Recording(accepted.Take(3), 3);
        var result = Audit.Check(Plan, accepted, readback);
        Assert.False(result.Passed);
        Assert.Equal(1, result.MissingAccepted);
        Assert.Contains(result.Violations, v => v.StartsWith("lost: reservation r3", StringComparison.Ordinal));
    }

    [Fact]
    public void Accepts_into_a_capped_zone_beyond_its_limit_and_shared_counters_beyond_capacity_are_oversells()
    {
        var zoneCap = Slot.Config.ZoneRules.Single(z => z.Zone == "z5").MaxOrders;
        var accepted = Accepts((int)zoneCap + 1, zone: "z5");
        var items = Slot.Config.Shared.Single(s => s.Measure == "items").Capacity;
        accepted.Add(new AcceptedReservation("big", Slot.Id, "vans", "z1", items, 1));
        var result = Audit.Check(Plan, accepted, Recording(accepted, accepted.Count));
        Assert.False(result.Passed);
        Assert.Contains(result.Violations, v => v.Contains("zone counter 'z5'"));
        Assert.Contains(result.Violations, v => v.Contains("shared counter 'picking-items'"));
    }

    [Fact]
    public async Task The_harness_catches_an_injected_oversell_end_to_end()
    {
        // A target that accepts every reservation, whatever the capacity: the run's audit must fail.
        var plan = SlotPlan.Hot("oversell", DateTimeOffset.UtcNow.AddDays(3), expectedReserves: 100);
        var target = new InstantTarget(enforceCapacity: false);
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        var runner = new OpenLoopRunner(target, new Workload(plan, 3, "oversell"), accepted, TextWriter.Null);
        await runner.RunPhaseAsync("1x", 1, 200, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

        var list = accepted.ToArray();
        Assert.Equal(200, list.Length);
        var result = Audit.Check(plan, list, await target.ReadBackAsync(plan, list, CancellationToken.None));
        Assert.False(result.Passed);
        Assert.True(result.OversoldUnits > 0);
        Assert.NotEmpty(Audit.OversellsInAccepts(plan, list));

        // The same run against a target that enforces fleet capacity shows no fleet oversell.
        var honest = new InstantTarget(enforceCapacity: true);
        var honestAccepted = new ConcurrentQueue<AcceptedReservation>();
        var honestRunner = new OpenLoopRunner(honest, new Workload(plan, 3, "honest"), honestAccepted, TextWriter.Null);
        await honestRunner.RunPhaseAsync("1x", 1, 200, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);
        var honestList = honestAccepted.ToArray();
        Assert.NotEmpty(honestList);
        Assert.DoesNotContain(Audit.OversellsInAccepts(plan, honestList), v => v.Contains("fleet counter"));
    }

    [Fact]
    public void Event_ledger_counts_duplicates_once_and_keeps_the_peak_of_an_oversell_given_back_later()
    {
        var ledger = new EventLedger(Plan);
        for (var i = 0; i < VansCapacity + 1; i++)
        {
            var booked = new SlotEvent { EventId = $"0:{i}:0", Slot = Slot.Id, Kind = SlotEventKind.ReservationBooked, ReservationId = $"r{i}", FleetCounter = "vans", FleetUnits = 1, Zone = "z1" };
            booked.SharedUnits.Add("picking-items", 10);
            ledger.Apply(booked);
            ledger.Apply(booked.Clone()); // a re-delivered command re-emits the same event id
        }
        ledger.Apply(new SlotEvent { EventId = "0:999:0", Slot = Slot.Id, Kind = SlotEventKind.ReservationReleased, ReservationId = "r0", FleetCounter = "vans", FleetUnits = -1 });
        ledger.Apply(new SlotEvent { EventId = "0:1000:0", Slot = "someone-else@2030-01-01T18:00Z", Kind = SlotEventKind.ReservationBooked, ReservationId = "x", FleetCounter = "vans", FleetUnits = 1 });

        var key = (Slot.Id, CounterKind.Fleet, "vans");
        Assert.Equal(VansCapacity, ledger.Totals[key]);
        Assert.Equal(VansCapacity + 1, ledger.Peaks[key]);
        Assert.Equal((VansCapacity + 1) * 10, ledger.Totals[(Slot.Id, CounterKind.Shared, "picking-items")]);
        Assert.Equal((int)VansCapacity + 1, ledger.AcceptedIds.Count);
        Assert.DoesNotContain("x", ledger.AcceptedIds);

        var readback = new Readback("events", [new CounterReading(Slot.Id, CounterKind.Fleet, "vans", ledger.Totals[key], ledger.Peaks[key])], ledger.AcceptedIds, []);
        Assert.False(Audit.Check(Plan, [], readback).Passed);
    }
}
