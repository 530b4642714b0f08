using System.Collections.Concurrent;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

public class CheckoutScenarioTests
{
    private static readonly SlotPlan Plan = SlotPlan.Spread("mix", new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero), hubs: 2, days: 1, expectedReserves: 10_000);

    [Fact]
    public void Every_checkout_reserve_is_a_hold_mostly_confirmed_some_released_the_rest_left_to_expire()
    {
        var shape = CheckoutShape.Default;
        var workload = new Workload(Plan, 1, "mix", shape);
        var ops = Enumerable.Range(0, 10_000).Select(_ => workload.NextReserve()).ToList();

        Assert.All(ops, op => Assert.Equal(shape.HoldSeconds, op.HoldSeconds));
        double Share(FollowUp f) => ops.Count(op => op.Then!.Action == f) / (double)ops.Count;
        Assert.InRange(Share(FollowUp.Confirm), 0.78, 0.82);
        Assert.InRange(Share(FollowUp.Release), 0.09, 0.11);
        Assert.InRange(Share(FollowUp.LetExpire), 0.09, 0.11);
        Assert.All(ops.Where(op => op.Then!.Action == FollowUp.Confirm),
            op => Assert.InRange(op.Then!.After.TotalSeconds, shape.ConfirmAfterMinSeconds, shape.ConfirmAfterMaxSeconds));
        Assert.All(ops.Where(op => op.Then!.Action == FollowUp.Release),
            op => Assert.InRange(op.Then!.After.TotalSeconds, shape.ReleaseAfterMinSeconds, shape.ReleaseAfterMaxSeconds));
        // The follow-ups all come before the hold would expire.
        Assert.All(ops.Where(op => op.Then!.Action != FollowUp.LetExpire), op => Assert.True(op.Then!.After.TotalSeconds < op.HoldSeconds));
    }

    [Fact]
    public void The_booking_scenarios_book_at_once_and_draw_the_same_operations_as_before()
    {
        var plain = new Workload(Plan, 1, "same");
        var checkout = new Workload(Plan, 1, "same", CheckoutShape.Default);
        var a = plain.NextReserve();
        var b = checkout.NextReserve();
        Assert.Equal(0, a.HoldSeconds);
        Assert.Null(a.Then);
        Assert.Equal((a.ReservationId, a.Slot, a.Zone, a.Needs), (b.ReservationId, b.Slot, b.Zone, b.Needs));
    }

    [Fact]
    public async Task The_runner_confirms_and_releases_as_drawn_and_the_audit_sees_what_the_customer_left()
    {
        var shape = new CheckoutShape(HoldSeconds: 1, ConfirmAfterMinSeconds: 0.05, ConfirmAfterMaxSeconds: 0.3,
            ReleaseAfterMinSeconds: 0.05, ReleaseAfterMaxSeconds: 0.3);
        // One roomy slot: the fake enforces fleet capacity only, not zone rules.
        var plan = SlotPlan.Hot("flow", new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero), expectedReserves: 10_000);
        var target = new InstantTarget(enforceCapacity: true);
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        var runner = new OpenLoopRunner(target, new Workload(plan, 3, "flow", shape), accepted, TextWriter.Null);

        var phase = await runner.RunPhaseAsync("1x", 1, 200, 100, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

        var confirms = runner.Fates.Count(f => f.Value == CallerFate.Live);
        var releases = runner.Fates.Count(f => f.Value == CallerFate.Released);
        var expiring = runner.Fates.Count(f => f.Value == CallerFate.LeftToExpire);
        Assert.Equal(200, phase.Reserve.Accepted);
        Assert.Equal(200, confirms + releases + expiring);
        Assert.Equal(confirms, phase.Confirm.Accepted);
        Assert.Equal(releases, phase.Release.Accepted);
        Assert.Equal(target.Confirms, phase.Confirm.Count);
        Assert.Equal(target.Releases, phase.Release.Count);
        Assert.True(confirms > releases && releases > 0 && expiring > 0);

        // After the holds left alone have expired, exactly the confirmed ones hold capacity.
        await Task.Delay(TimeSpan.FromSeconds(shape.HoldSeconds + 0.5));
        var list = accepted.ToArray();
        var audit = Audit.Check(plan, list, await target.ReadBackAsync(plan, list, CancellationToken.None), runner.Fates);
        Assert.True(audit.Passed, string.Join("\n", audit.Violations));
        Assert.Equal(confirms, audit.Phantoms!.LiveByTarget);
        Assert.Equal(confirms, audit.Phantoms.LiveByCaller);
    }

    [Fact]
    public void The_checkout_scenarios_exist_and_run_on_holding_targets_only()
    {
        Assert.True(Scenario.Find("checkout").Checkout);
        Assert.True(Scenario.Find("checkout-hot-slot") is { Checkout: true, HotSlot: true });
        Assert.IsAssignableFrom<IHoldingTarget>(new InstantTarget(true));
        Assert.False(typeof(IHoldingTarget).IsAssignableFrom(typeof(RedisTarget)));
    }
}
