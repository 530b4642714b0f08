using System.Collections.Concurrent;
using SlotCapacity.Contracts;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

public class PhantomAuditTests
{
    private static readonly SlotPlan Plan = SlotPlan.Hot("phantom", new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero), expectedReserves: 100);
    private static string Slot => Plan.Slots[0].Id;

    private static AcceptedReservation Accept(string id) => new(id, Slot, "vans", "z1", 10, 1);

    private static Readback Live(IEnumerable<string> recorded, params string[] live) =>
        new("test", [], recorded.ToHashSet(), [], live.ToDictionary(id => id, _ => Slot));

    [Fact]
    public void Live_bookings_equal_to_what_the_caller_holds_pass()
    {
        var accepted = new[] { Accept("booked"), Accept("confirmed"), Accept("released"), Accept("expired") };
        var fates = new Dictionary<string, CallerFate>
        {
            ["booked"] = CallerFate.Live, ["confirmed"] = CallerFate.Live, ["released"] = CallerFate.Released, ["expired"] = CallerFate.LeftToExpire,
        };

        var result = Audit.Check(Plan, accepted, Live(accepted.Select(a => a.ReservationId), "booked", "confirmed"), fates);

        Assert.True(result.Passed, string.Join("\n", result.Violations));
        Assert.Equal(new PhantomAudit(2, 2, 0, 0, 0, 0, 1, 0), result.Phantoms);
    }

    [Fact]
    public void Capacity_held_for_a_caller_told_no_is_a_phantom_booking()
    {
        var accepted = new[] { Accept("booked") };
        // "late" was answered UNAVAILABLE (not accepted), yet the target still holds it: its abandon was lost.
        var result = Audit.Check(Plan, accepted, Live(["booked", "late"], "booked", "late"), new Dictionary<string, CallerFate> { ["booked"] = CallerFate.Live });

        Assert.False(result.Passed);
        Assert.Equal(1, result.Phantoms!.Phantoms);
        Assert.Equal(1, result.Phantoms.SlotsMismatched);
        Assert.Contains(result.Violations, v => v.StartsWith("phantom booking: reservation late", StringComparison.Ordinal) && v.Contains("not accepted"));
    }

    [Fact]
    public void A_released_or_expired_hold_still_held_is_a_phantom_an_unanswered_confirm_is_not_and_a_confirmed_one_gone_is_missing()
    {
        var accepted = new[] { Accept("released"), Accept("expired"), Accept("unsure"), Accept("confirmed") };
        var fates = new Dictionary<string, CallerFate>
        {
            ["released"] = CallerFate.Released, ["expired"] = CallerFate.LeftToExpire, ["unsure"] = CallerFate.Uncertain,
            ["confirmed"] = CallerFate.Live, ["no-answer"] = CallerFate.NoAnswer,
        };

        var result = Audit.Check(Plan, accepted, Live(["released", "expired", "unsure", "confirmed", "no-answer"], "released", "expired", "unsure", "no-answer"), fates);

        var p = result.Phantoms!;
        Assert.Equal(3, p.Phantoms);
        Assert.Equal(1, p.PhantomsAfterNoAnswer);
        Assert.Equal(1, p.MissingLive);
        Assert.Equal(2, p.UncertainByCaller);
        Assert.Contains(result.Violations, v => v.Contains("reservation released") && v.Contains("released it"));
        Assert.Contains(result.Violations, v => v.Contains("reservation expired") && v.Contains("let its hold expire"));
        Assert.Contains(result.Violations, v => v.StartsWith("lost booking: reservation confirmed", StringComparison.Ordinal));
        Assert.DoesNotContain(result.Violations, v => v.Contains("reservation unsure"));
    }

    [Fact]
    public async Task The_harness_catches_a_target_that_keeps_capacity_for_released_holds_end_to_end()
    {
        var shape = new CheckoutShape(HoldSeconds: 60, ConfirmShare: 0.5, ReleaseShare: 0.5,
            ConfirmAfterMinSeconds: 0.05, ConfirmAfterMaxSeconds: 0.2, ReleaseAfterMinSeconds: 0.05, ReleaseAfterMaxSeconds: 0.2);
        foreach (var keepReleased in new[] { false, true })
        {
            var target = new InstantTarget(enforceCapacity: true, keepReleased);
            var accepted = new ConcurrentQueue<AcceptedReservation>();
            var runner = new OpenLoopRunner(target, new Workload(Plan, 9, $"keep{keepReleased}", shape), accepted, TextWriter.Null);
            await runner.RunPhaseAsync("1x", 1, 50, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

            var list = accepted.ToArray();
            var result = Audit.Check(Plan, list, await target.ReadBackAsync(Plan, list, CancellationToken.None), runner.Fates);

            var released = runner.Fates.Count(f => f.Value == CallerFate.Released);
            Assert.True(released > 0);
            Assert.Equal(keepReleased ? released : 0, result.Phantoms!.Phantoms);
            Assert.Equal(!keepReleased, result.Passed);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_reserve_booked_but_never_answered_is_released_by_the_caller_and_a_phantom_only_if_the_release_goes_unanswered_too(bool releasesUnanswered)
    {
        var target = new LateAnswerTarget(sequence => sequence == 3, releasesUnanswered);
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        var runner = new OpenLoopRunner(target, new Workload(Plan, 9, $"late{releasesUnanswered}"), accepted, TextWriter.Null);
        var phase = await runner.RunPhaseAsync("1x", 1, 10, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

        var list = accepted.ToArray();
        var result = Audit.Check(Plan, list, await target.ReadBackAsync(Plan, list, CancellationToken.None), runner.Fates);

        Assert.Equal(1, phase.Reserve.Lost);
        Assert.Equal(9, list.Length);
        Assert.Equal(releasesUnanswered ? 0 : 1, target.Releases);
        var fate = Assert.Single(runner.Fates, f => f.Value != CallerFate.Live).Value;
        Assert.Equal(releasesUnanswered ? CallerFate.NoAnswer : CallerFate.Released, fate);
        Assert.Equal(releasesUnanswered ? 1 : 0, result.Phantoms!.Phantoms);
        Assert.Equal(releasesUnanswered ? 1 : 0, result.Phantoms.PhantomsAfterNoAnswer);
        Assert.Equal(!releasesUnanswered, result.Passed);
        if (releasesUnanswered)
            Assert.Equal("phantom bookings by what the caller was told: never learned whether it holds it (no definite answer): 1", result.Violations[0]);
    }

    [Fact]
    public async Task A_reserve_refused_after_an_attempt_that_booked_unanswered_is_released_too()
    {
        // The first attempt books and its answer is lost; the retry is refused (as a gateway answers
        // ABANDONED when its own attempt missed the deadline, which strikes off only that attempt).
        var target = new LateAnswerTarget(sequence => sequence == 3, refuseRetries: true);
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        var runner = new OpenLoopRunner(target, new Workload(Plan, 9, "refused-retry"), accepted, TextWriter.Null);
        var phase = await runner.RunPhaseAsync("1x", 1, 10, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

        var list = accepted.ToArray();
        var result = Audit.Check(Plan, list, await target.ReadBackAsync(Plan, list, CancellationToken.None), runner.Fates);

        Assert.Equal(0, phase.Reserve.Lost);
        Assert.Equal(1, phase.Reserve.Retried);
        Assert.Equal(1, target.Releases);
        Assert.Equal(CallerFate.Released, Assert.Single(runner.Fates, f => f.Value != CallerFate.Live).Value);
        Assert.Equal(0, result.Phantoms!.Phantoms);
        Assert.True(result.Passed);
    }

    [Fact]
    public void The_event_ledger_keeps_live_only_reservations_not_given_back()
    {
        var ledger = new EventLedger(Plan);
        var n = 0;
        void Event(SlotEventKind kind, string id, long units) =>
            ledger.Apply(new SlotEvent { EventId = $"0:{n++}:0", Slot = Slot, Kind = kind, ReservationId = id, FleetCounter = "vans", FleetUnits = units });
        Event(SlotEventKind.ReservationBooked, "late", 1);
        Event(SlotEventKind.ReservationAbandoned, "late", -1);
        Event(SlotEventKind.ReservationHeld, "held", 1);
        Event(SlotEventKind.ReservationConfirmed, "held", 0);
        Event(SlotEventKind.ReservationHeld, "walked-away", 1);
        Event(SlotEventKind.HoldExpired, "walked-away", -1);
        Event(SlotEventKind.ReservationHeld, "cancelled", 1);
        Event(SlotEventKind.ReservationReleased, "cancelled", -1);

        Assert.Equal(["held"], ledger.Live.Keys);
        Assert.Equal(4, ledger.AcceptedIds.Count);
    }
}
