using Google.Protobuf;
using SlotCapacity.Contracts;
using Xunit;
using static SlotCapacity.Domain.Tests.SlotHarness;

namespace SlotCapacity.Domain.Tests;

public sealed class SlotDecisionTests
{
    private static SlotHarness Configured(SlotConfig config)
    {
        var slot = new SlotHarness();
        Assert.True(slot.Send(Configure(config)).Reply.Accepted);
        return slot;
    }

    private static void AssertRejected(Decision decision, RejectReason reason)
    {
        Assert.False(decision.Reply.Accepted, decision.Reply.Detail);
        Assert.Equal(reason, decision.Reply.Reason);
        Assert.False(string.IsNullOrEmpty(decision.Reply.Detail));
        Assert.Empty(decision.Events);
        Assert.Null(decision.Snapshot);
    }

    [Fact]
    public void Reserve_books_on_the_eligible_counter_with_most_room_left()
    {
        var slot = Configured(Config(Fleet("bikes", 2), Fleet("vans", 5)));
        var decision = slot.Send(Reserve("r1"));
        Assert.True(decision.Reply.Accepted);
        Assert.Equal("vans", decision.Reply.FleetCounter);
        Assert.Equal(ReservationStatus.Booked, decision.Reply.Status);
        Assert.Equal(1, slot.Used("vans"));
        var booked = Assert.Single(decision.Events);
        Assert.Equal(SlotEventKind.ReservationBooked, booked.Kind);
        Assert.Equal(("r1", "vans", 1L), (booked.ReservationId, booked.FleetCounter, booked.FleetUnits));
        Assert.Equal($"0:{decision.State!.LastApplied.Offset}:0", booked.EventId);
        Assert.Equal(1, decision.Snapshot!.Fleet.Single(f => f.Name == "vans").UsedOrders);
    }

    [Fact]
    public void Ties_in_room_go_to_the_counter_whose_name_sorts_first_ordinally()
    {
        var slot = Configured(Config(Fleet("vans-b", 3), Fleet("Vans-c", 3), Fleet("vans-a", 3)));
        Assert.Equal("Vans-c", slot.Send(Reserve("r1")).Reply.FleetCounter);
        Assert.Equal("vans-a", slot.Send(Reserve("r2")).Reply.FleetCounter);
        Assert.Equal("vans-b", slot.Send(Reserve("r3")).Reply.FleetCounter);
        Assert.Equal("Vans-c", slot.Send(Reserve("r4")).Reply.FleetCounter);
    }

    [Fact]
    public void Only_counters_serving_the_zone_and_carrying_every_requirement_are_eligible()
    {
        var slot = Configured(Config(Fleet("bikes-north", 9, zones: ["north"]), Fleet("vans", 1, carries: ["bulky", "chilled"]),
            Fleet("vans-south", 9, zones: ["south"], carries: ["bulky"])));
        Assert.Equal("bikes-north", slot.Send(Reserve("plain")).Reply.FleetCounter);
        Assert.Equal("vans", slot.Send(Reserve("bulky", requires: ["bulky"])).Reply.FleetCounter);
        AssertRejected(slot.Send(Reserve("bulky-2", requires: ["bulky"])), RejectReason.SlotFull);
        AssertRejected(slot.Send(Reserve("frozen", requires: ["frozen"])), RejectReason.NoEligibleFleet);
        AssertRejected(slot.Send(Reserve("east", zone: "east", requires: ["bulky"])), RejectReason.SlotFull);
        AssertRejected(slot.Send(Reserve("west-chilled", zone: "west", requires: ["chilled", "frozen"])), RejectReason.NoEligibleFleet);
    }

    [Fact]
    public void A_full_fleet_rejects_with_SLOT_FULL_and_draws_nothing_from_shared_counters()
    {
        var config = Config(Fleet("vans", 1));
        config.Shared.Add(new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 100 });
        var slot = Configured(config);
        slot.Send(Reserve("r1", items: 10));
        AssertRejected(slot.Send(Reserve("r2", items: 10)), RejectReason.SlotFull);
        Assert.Equal(10, slot.SharedUsed("picking"));
    }

    [Fact]
    public void Shared_counters_are_drawn_all_or_nothing_by_measure()
    {
        var config = Config(Fleet("vans", 10));
        config.Shared.Add(new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 50 });
        config.Shared.Add(new SharedCounterConfig { Name = "totes", Measure = "totes", Capacity = 2 });
        var slot = Configured(config);
        var first = Reserve("r1", items: 30);
        first.Reserve.Needs.Quantities["totes"] = 2;
        Assert.True(slot.Send(first).Reply.Accepted);
        var second = Reserve("r2", items: 5);
        second.Reserve.Needs.Quantities["totes"] = 1;
        var rejected = slot.Send(second);
        AssertRejected(rejected, RejectReason.SlotFull);
        Assert.Contains("totes", rejected.Reply.Detail, StringComparison.Ordinal);
        Assert.Equal(30, slot.SharedUsed("picking"));
        AssertRejected(slot.Send(Reserve("r3", items: 21)), RejectReason.SlotFull);
        var fits = slot.Send(Reserve("r4", items: 20));
        Assert.True(fits.Reply.Accepted);
        Assert.Equal(20, fits.Events.Single().SharedUnits["picking"]);
        Assert.Equal(50, slot.SharedUsed("picking"));
        Assert.Equal(2, slot.Used("vans"));
    }

    [Fact]
    public void Zone_rules_reject_closed_zones_and_full_zones()
    {
        var config = Config(Fleet("vans", 10));
        config.ZoneRules.Add(new ZoneRule { Zone = "centre", Closed = true });
        config.ZoneRules.Add(new ZoneRule { Zone = "north", MaxOrders = 1 });
        var slot = Configured(config);
        AssertRejected(slot.Send(Reserve("c1", zone: "centre")), RejectReason.ZoneRestricted);
        Assert.True(slot.Send(Reserve("n1", zone: "north")).Reply.Accepted);
        AssertRejected(slot.Send(Reserve("n2", zone: "north")), RejectReason.ZoneFull);
        Assert.True(slot.Send(Reserve("s1", zone: "south")).Reply.Accepted);
        slot.Send(Release("n1"));
        Assert.True(slot.Send(Reserve("n3", zone: "north")).Reply.Accepted);
    }

    [Fact]
    public void A_closed_slot_rejects_SLOT_CLOSED_until_reopened()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        Assert.True(slot.Send(SetOpen(false)).Reply.Accepted);
        AssertRejected(slot.Send(Reserve("r1")), RejectReason.SlotClosed);
        slot.Send(SetOpen(true));
        Assert.True(slot.Send(Reserve("r1")).Reply.Accepted);
    }

    [Fact]
    public void A_configuration_an_open_and_a_close_name_the_planner_who_made_them_also_when_redelivered()
    {
        var slot = new SlotHarness();
        var configure = Configure(Config(Fleet("vans", 10)));
        configure.Configure.ChangedBy = "alice";
        var configured = Assert.Single(slot.Send(configure).Events);
        Assert.Equal((SlotEventKind.SlotConfigured, "alice"), (configured.Kind, configured.ChangedBy));

        var close = SetOpen(false);
        close.SetOpen.ChangedBy = "bob";
        var closed = Assert.Single(slot.Send(close).Events);
        Assert.Equal(("bob", false), (closed.ChangedBy, closed.Config.Open));
        Assert.Equal("bob", Assert.Single(slot.Redeliver(close, T0, offset: 1).Events).ChangedBy);
    }

    [Fact]
    public void Reservations_at_or_after_the_cutoff_are_rejected_PAST_CUTOFF_by_record_timestamp()
    {
        var config = Config(Fleet("vans", 10));
        config.CutoffUnixMs = T0 + 1000;
        var slot = Configured(config);
        Assert.True(slot.Send(Reserve("r1"), at: T0 + 999).Reply.Accepted);
        AssertRejected(slot.Send(Reserve("r2"), at: T0 + 1000), RejectReason.PastCutoff);
    }

    [Fact]
    public void The_PAST_CUTOFF_detail_gives_both_times_in_ISO_and_a_cutoff_of_0_means_none()
    {
        var config = Config(Fleet("vans", 10));
        config.CutoffUnixMs = T0 + 1000;
        var slot = Configured(config);
        var late = slot.Send(Reserve("r1"), at: T0 + 1000);
        Assert.Equal("command time 2030-03-17T17:46:41.000Z is at or after the slot's cut-off 2030-03-17T17:46:41.000Z", late.Reply.Detail);

        config.CutoffUnixMs = 0;
        slot.Send(Configure(config), at: T0 + 1001);
        var slotEnd = SlotKey.TryParse(Slot, out var key) ? key.Value.End.ToUnixTimeMilliseconds() : 0;
        Assert.True(slot.Send(Reserve("r2"), at: slotEnd - 1).Reply.Accepted);
    }

    [Fact]
    public void A_slot_whose_window_has_ended_can_be_neither_configured_nor_booked()
    {
        var slotEnd = SlotKey.TryParse(Slot, out var key) ? key.Value.End.ToUnixTimeMilliseconds() : 0;
        var slot = Configured(Config(Fleet("vans", 10)));
        var late = slot.Send(Reserve("r1"), at: slotEnd);
        AssertRejected(late, RejectReason.PastCutoff);
        Assert.StartsWith("the slot's window ended at 2030-05-06T12:00:00.000Z", late.Reply.Detail, StringComparison.Ordinal);

        var reconfigure = slot.Send(Configure(Config(Fleet("vans", 20))), at: slotEnd);
        AssertRejected(reconfigure, RejectReason.Invalid);
        Assert.Contains("slot: the slot's window ended at 2030-05-06T12:00:00.000Z", reconfigure.Reply.Detail, StringComparison.Ordinal);
        Assert.Equal(10, slot.State!.Config.Fleet.Single().CapacityOrders);
    }

    [Fact]
    public void A_configuration_without_open_is_rejected_naming_the_field()
    {
        var config = Config(Fleet("vans", 10));
        config.ClearOpen();
        var decision = new SlotHarness().Send(Configure(config));
        AssertRejected(decision, RejectReason.Invalid);
        Assert.StartsWith("config.open: is not set", decision.Reply.Detail, StringComparison.Ordinal);

        config.Open = false;
        Assert.True(new SlotHarness().Send(Configure(config)).Reply.Accepted);
    }

    [Theory]
    [InlineData("van s", "config.fleet[0].name")]
    [InlineData("vans\n", "config.fleet[0].name")]
    [InlineData("a|b", "config.fleet[0].name")]
    [InlineData("", "config.fleet[0].name: is empty")]
    public void Counter_names_outside_the_name_characters_are_rejected(string name, string field)
    {
        var decision = new SlotHarness().Send(Configure(Config(Fleet(name, 1))));
        AssertRejected(decision, RejectReason.Invalid);
        Assert.StartsWith(field, decision.Reply.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Map_and_list_sizes_are_bounded()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        var reserve = Reserve("r1");
        for (var i = 0; i < 20_000; i++) reserve.Reserve.Needs.Quantities["m" + i] = 1;
        var decision = slot.Send(reserve);
        AssertRejected(decision, RejectReason.Invalid);
        Assert.Equal($"needs.quantities: has 20001 measures, more than {SlotValidation.MaxQuantities}", decision.Reply.Detail);

        var config = Config([.. Enumerable.Range(0, SlotValidation.MaxFleetCounters + 1).Select(i => Fleet("f" + i, 1))]);
        config.Shared.Add(new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = SlotValidation.MaxCapacity + 1 });
        var problems = slot.Send(Configure(config)).Reply.Detail;
        Assert.Contains($"config.fleet: has {SlotValidation.MaxFleetCounters + 1} fleet counters, more than {SlotValidation.MaxFleetCounters}", problems, StringComparison.Ordinal);
        Assert.Contains("config.shared[0].capacity: 1000000000001 is more than", problems, StringComparison.Ordinal);
    }

    [Fact]
    public void A_command_past_its_deadline_is_rejected_EXPIRED_DEADLINE_without_effect()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        AssertRejected(slot.Send(Reserve("late", deadline: T0 - 1)), RejectReason.ExpiredDeadline);
        Assert.Equal(0, slot.Used("vans"));
        Assert.True(slot.Send(Reserve("on-time", deadline: T0)).Reply.Accepted);
    }

    [Theory]
    [InlineData("", "north", 1, 0, "reservation_id: is empty")]
    [InlineData("r1", "", 1, 0, "zone: is empty")]
    [InlineData("r1", "north zone", 1, 0, "zone: 'north zone' has a character outside")]
    [InlineData("r1", "north|x", 1, 0, "zone: 'north|x' has a character outside")]
    [InlineData("r1", "north", -1, 0, "needs.quantities[items]: -1 is negative")]
    [InlineData("r1", "north", SlotValidation.MaxUnits + 1, 0, "needs.quantities[items]: 1000000001 is more than")]
    [InlineData("r1", "north", 1, T0, "hold_expires_unix_ms: 2030-03-17T17:46:40.000Z is not after the command time 2030-03-17T17:46:40.000Z")]
    public void Bad_reservations_are_rejected_INVALID_naming_what_is_wrong(string id, string zone, long items, long hold, string problem)
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        var decision = slot.Send(Reserve(id, zone: zone, items: items, hold: hold));
        AssertRejected(decision, RejectReason.Invalid);
        Assert.Contains(problem, decision.Reply.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_command_without_a_body_or_with_a_bad_slot_key_is_INVALID()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        AssertRejected(slot.Send(Command(_ => { })), RejectReason.Invalid);
        var badKey = Reserve("r1");
        badKey.Slot = "not-a-slot";
        var decision = SlotDecisions.Decide(slot.State!.Clone(), slot, badKey, T0, 0, 99);
        AssertRejected(decision, RejectReason.Invalid);
        Assert.Null(decision.State);
    }

    [Theory]
    [InlineData("dup")]
    [InlineData("")]
    public void An_invalid_configuration_is_rejected_and_keeps_the_old_one(string secondName)
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        AssertRejected(slot.Send(Configure(Config(Fleet("dup", 1), Fleet(secondName, 1)))), RejectReason.Invalid);
        AssertRejected(slot.Send(Configure(Config(Fleet("vans", -1)))), RejectReason.Invalid);
        Assert.Equal("vans", slot.State!.Config.Fleet.Single().Name);
    }

    [Fact]
    public void Commands_for_a_slot_never_configured_are_rejected_UNKNOWN_SLOT()
    {
        var slot = new SlotHarness();
        AssertRejected(slot.Send(Reserve("r1")), RejectReason.UnknownSlot);
        AssertRejected(slot.Send(SetOpen(true)), RejectReason.UnknownSlot);
    }

    [Fact]
    public void Confirm_and_release_of_an_unknown_reservation_are_rejected_UNKNOWN_RESERVATION()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        AssertRejected(slot.Send(Confirm("nope")), RejectReason.UnknownReservation);
        AssertRejected(slot.Send(Release("nope")), RejectReason.UnknownReservation);
    }

    [Fact]
    public void The_same_reserve_twice_gives_the_same_reply_and_no_second_effect()
    {
        var slot = Configured(Config(Fleet("bikes", 5), Fleet("vans", 5)));
        var first = slot.Send(Reserve("r1", order: "o1"));
        var again = slot.Send(Reserve("r1", order: "o1"));
        Assert.True(again.Reply.Accepted);
        Assert.Equal(first.Reply.FleetCounter, again.Reply.FleetCounter);
        Assert.Equal(first.Reply.Status, again.Reply.Status);
        Assert.Empty(again.Events);
        Assert.Equal(1, slot.Used("bikes") + slot.Used("vans"));
    }

    [Fact]
    public void A_reserve_reusing_an_id_with_different_content_is_INVALID()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("r1", order: "o1"));
        AssertRejected(slot.Send(Reserve("r1", order: "o2")), RejectReason.Invalid);
        AssertRejected(slot.Send(Reserve("r1", order: "o1", items: 2)), RejectReason.Invalid);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void A_held_reserve_retried_with_a_later_expiry_gets_the_original_hold_and_takes_nothing_more()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        var first = slot.Send(Reserve("r1", hold: T0 + 600_000));
        slot.Now = T0 + 2_000;
        var retry = slot.Send(Reserve("r1", hold: T0 + 602_000));

        Assert.True(retry.Reply.Accepted);
        Assert.Equal(ReservationStatus.Held, retry.Reply.Status);
        Assert.Equal(first.Reply.HoldExpiresUnixMs, retry.Reply.HoldExpiresUnixMs);
        Assert.Empty(retry.Events);
        Assert.Equal(1, slot.Used("vans"));
        AssertRejected(slot.Send(Reserve("r1")), RejectReason.Invalid);
    }

    [Fact]
    public void A_confirmed_reservation_retried_is_answered_booked()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("r1", hold: T0 + 600_000));
        slot.Send(Confirm("r1"));
        var retry = slot.Send(Reserve("r1", hold: T0 + 600_000));
        Assert.True(retry.Reply.Accepted);
        Assert.Equal(ReservationStatus.Booked, retry.Reply.Status);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void A_reserve_retried_after_its_reservation_was_released_expired_or_abandoned_is_rejected_and_takes_nothing()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("released"));
        slot.Send(Release("released"));
        slot.Send(Reserve("abandoned"));
        slot.Send(Abandon("abandoned"));
        slot.Send(Reserve("expired", hold: T0 + 100));
        slot.Now = T0 + 1_000;
        // Any command after the expiry frees the hold (and reports it in its own events).
        Assert.Contains(slot.Send(Release("released")).Events, e => e.Kind == SlotEventKind.HoldExpired);

        var released = slot.Send(Reserve("released"));
        var abandoned = slot.Send(Reserve("abandoned"));
        var expired = slot.Send(Reserve("expired", hold: T0 + 5_000));

        AssertRejected(released, RejectReason.Invalid);
        Assert.Equal(ReservationStatus.Released, released.Reply.Status);
        Assert.Contains("new reservation id", released.Reply.Detail);
        AssertRejected(abandoned, RejectReason.Unavailable);
        Assert.Equal(ReservationStatus.Abandoned, abandoned.Reply.Status);
        AssertRejected(expired, RejectReason.Invalid);
        Assert.Equal(ReservationStatus.Expired, expired.Reply.Status);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Fact]
    public void A_redelivered_command_is_answered_from_state_with_the_same_reply_and_events_and_never_applied_twice()
    {
        var slot = Configured(Config(Fleet("vans", 2)));
        var reserve = Reserve("r1");
        var first = slot.Send(reserve);
        slot.Send(Reserve("r2"));
        var before = slot.State!.Clone();

        var replay = slot.Redeliver(reserve, T0, offset: 1);
        Assert.Null(replay.State);
        Assert.Empty(replay.Reservations);
        Assert.True(replay.Reply.Replayed);
        Assert.True(replay.Reply.Accepted);
        Assert.Equal(first.Reply.FleetCounter, replay.Reply.FleetCounter);
        Assert.Equal(first.Events, replay.Events);
        Assert.Equal(before, slot.State);
        Assert.Equal(2, slot.Used("vans"));
        // Its snapshot may have been lost in the crash that caused the re-delivery: the current one
        // is written again, at the position of the last command applied (r2's), never an older one.
        Assert.NotNull(replay.Snapshot);
        Assert.Equal(2, replay.Snapshot.Fleet.Single().UsedOrders);
        Assert.Equal(slot.State!.LastApplied.Offset, replay.Snapshot.Version);
        Assert.True(replay.Snapshot.Version > first.Snapshot!.Version);
    }

    [Fact]
    public void A_redelivered_reject_whose_cause_has_gone_is_answered_as_a_retryable_reject_not_applied()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        slot.Send(Reserve("r1"));
        var loser = Reserve("r2");
        AssertRejected(slot.Send(loser), RejectReason.SlotFull);
        slot.Send(Release("r1"));
        var replay = slot.Redeliver(loser, T0, offset: 2);
        Assert.False(replay.Reply.Accepted);
        Assert.Equal(RejectReason.Unavailable, replay.Reply.Reason);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Fact]
    public void A_hold_is_freed_by_the_first_command_at_or_after_its_expiry()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        var held = slot.Send(Reserve("h1", hold: T0 + 5000));
        Assert.Equal(ReservationStatus.Held, held.Reply.Status);
        Assert.Equal(T0 + 5000, held.Reply.HoldExpiresUnixMs);
        Assert.Equal(SlotEventKind.ReservationHeld, held.Events.Single().Kind);
        Assert.Equal(1, held.Snapshot!.Fleet.Single().HeldOrders);
        AssertRejected(slot.Send(Reserve("r2"), at: T0 + 4999), RejectReason.SlotFull);

        var next = slot.Send(Reserve("r3"), at: T0 + 5000);
        Assert.True(next.Reply.Accepted);
        Assert.Equal([SlotEventKind.HoldExpired, SlotEventKind.ReservationBooked], next.Events.Select(e => e.Kind));
        Assert.Equal(-1, next.Events[0].FleetUnits);
        Assert.Equal(ReservationStatus.Expired, slot.Records["h1"].Status);
        AssertRejected(slot.Send(Confirm("h1"), at: T0 + 5001), RejectReason.Invalid);
    }

    [Fact]
    public void ExpireHolds_frees_due_holds_and_does_nothing_else()
    {
        var slot = Configured(Config(Fleet("vans", 3)));
        slot.Send(Reserve("h1", hold: T0 + 100));
        slot.Send(Reserve("h2", hold: T0 + 200));
        slot.Send(Reserve("b1"));
        Assert.Equal(T0 + 100, slot.State!.NextHoldExpiryUnixMs);
        var tick = slot.Send(ExpireHolds(), at: T0 + 150);
        Assert.True(tick.Reply.Accepted);
        Assert.Equal("h1", tick.Events.Single().ReservationId);
        Assert.Equal(2, slot.Used("vans"));
        Assert.Equal(T0 + 200, slot.State.NextHoldExpiryUnixMs);
        Assert.Empty(slot.Send(ExpireHolds(), at: T0 + 150).Events);
    }

    [Fact]
    public void Confirm_turns_a_hold_into_a_booking_once()
    {
        var slot = Configured(Config(Fleet("vans", 3)));
        slot.Send(Reserve("h1", hold: T0 + 100));
        var confirmed = slot.Send(Confirm("h1"));
        Assert.True(confirmed.Reply.Accepted);
        Assert.Equal(ReservationStatus.Booked, confirmed.Reply.Status);
        Assert.Equal(SlotEventKind.ReservationConfirmed, confirmed.Events.Single().Kind);
        Assert.Empty(slot.State!.FleetHeld);
        Assert.Equal(0, slot.State.NextHoldExpiryUnixMs);
        var again = slot.Send(Confirm("h1"), at: T0 + 500);
        Assert.True(again.Reply.Accepted);
        Assert.Empty(again.Events);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void Release_frees_a_booking_once_and_names_the_reason()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        slot.Send(Reserve("r1", items: 4));
        var released = slot.Send(Release("r1"));
        Assert.True(released.Reply.Accepted);
        Assert.Equal(ReservationStatus.Released, released.Reply.Status);
        var e = released.Events.Single();
        Assert.Equal((SlotEventKind.ReservationReleased, -1L, "order cancelled"), (e.Kind, e.FleetUnits, e.Reason));
        Assert.Equal(0, slot.Used("vans"));
        var again = slot.Send(Release("r1"));
        Assert.True(again.Reply.Accepted);
        Assert.Empty(again.Events);
        Assert.True(slot.Send(Reserve("r2")).Reply.Accepted);
        // A re-sent Reserve of the released id is told it no longer holds anything, and takes nothing.
        var resent = slot.Send(Reserve("r1", items: 4));
        Assert.False(resent.Reply.Accepted);
        Assert.Equal(ReservationStatus.Released, resent.Reply.Status);
        Assert.Empty(resent.Events);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void Abandon_frees_an_accepted_reservation()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        slot.Send(Reserve("r1"));
        var abandoned = slot.Send(Abandon("r1"));
        Assert.True(abandoned.Reply.Accepted);
        Assert.Equal(ReservationStatus.Abandoned, abandoned.Reply.Status);
        Assert.Equal(SlotEventKind.ReservationAbandoned, abandoned.Events.Single().Kind);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void An_abandoned_attempt_does_not_free_a_reservation_a_retry_was_answered_accepted_for(bool firstAttemptFirst)
    {
        // Checkout's first attempt timed out at its gateway, which abandons it; the retry with the
        // same reservation id, on the other gateway, was answered accepted from state. Either may
        // reach the partition first. Freeing on the first Abandon lost that accept (seen at 10x).
        var slot = Configured(Config(Fleet("vans", 1)));
        var first = Reserve("r1");
        var retry = Reserve("r1");
        retry.Reserve = first.Reserve.Clone();
        var (earlier, later) = firstAttemptFirst ? (first, retry) : (retry, first);
        Assert.True(slot.Send(earlier).Reply.Accepted);
        Assert.True(slot.Send(later).Reply.Accepted);

        var abandoned = slot.Send(AbandonAttempt("r1", first));
        Assert.True(abandoned.Reply.Accepted);
        Assert.Equal(ReservationStatus.Booked, abandoned.Reply.Status);
        Assert.Empty(abandoned.Events);
        Assert.Equal(1, slot.Used("vans"));
        AssertRejected(slot.Send(Reserve("r2")), RejectReason.SlotFull);

        // Once the retry is given up too, nothing is left holding it.
        var last = slot.Send(AbandonAttempt("r1", retry));
        Assert.Equal(ReservationStatus.Abandoned, last.Reply.Status);
        Assert.Equal(SlotEventKind.ReservationAbandoned, last.Events.Single().Kind);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Fact]
    public void An_abandon_naming_an_attempt_that_was_not_accepted_frees_nothing_and_one_naming_none_frees_as_before()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        var reserve = Reserve("r1");
        Assert.True(slot.Send(reserve).Reply.Accepted);
        var stranger = Reserve("r1");
        Assert.Equal(ReservationStatus.Booked, slot.Send(AbandonAttempt("r1", stranger)).Reply.Status);
        Assert.Equal(1, slot.Used("vans"));
        // A gateway from before the attempt ids.
        Assert.Equal(ReservationStatus.Abandoned, slot.Send(Abandon("r1")).Reply.Status);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Fact]
    public void A_redelivered_retry_and_abandon_give_their_first_answers_again()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        var first = Reserve("r1");
        var retry = Reserve("r1");
        retry.Reserve = first.Reserve.Clone();
        slot.Send(first);
        var retried = slot.Send(retry);
        var abandon = AbandonAttempt("r1", first);
        var abandoned = slot.Send(abandon);
        var (_, retryTimestamp, retryOffset, _) = slot.Log.Single(l => l.Command == retry);
        var (_, abandonTimestamp, abandonOffset, _) = slot.Log.Single(l => l.Command == abandon);
        Assert.Equal(retried.Reply.Status, slot.Redeliver(retry, retryTimestamp, retryOffset).Reply.Status);
        Assert.True(slot.Redeliver(retry, retryTimestamp, retryOffset).Reply.Accepted);
        Assert.Equal(abandoned.Reply.Status, slot.Redeliver(abandon, abandonTimestamp, abandonOffset).Reply.Status);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void Abandon_of_an_unseen_id_makes_a_late_reserve_with_it_rejected()
    {
        var slot = Configured(Config(Fleet("vans", 1)));
        Assert.True(slot.Send(Abandon("late")).Reply.Accepted);
        var late = slot.Send(Reserve("late"));
        AssertRejected(late, RejectReason.Unavailable);
        Assert.Equal(ReservationStatus.Abandoned, late.Reply.Status);
        Assert.Equal(0, slot.Used("vans"));
        Assert.True(slot.Send(Reserve("other")).Reply.Accepted);
    }

    [Fact]
    public void Lowering_capacity_keeps_bookings_blocks_new_ones_and_shows_over_committed()
    {
        var slot = Configured(Config(Fleet("vans", 3)));
        slot.Send(Reserve("r1"));
        slot.Send(Reserve("r2"));
        var lowered = slot.Send(Configure(Config(Fleet("vans", 1))));
        Assert.True(lowered.Reply.Accepted);
        Assert.True(lowered.Snapshot!.OverCommitted);
        Assert.Equal(2, lowered.Snapshot.Fleet.Single().UsedOrders);
        AssertRejected(slot.Send(Reserve("r3")), RejectReason.SlotFull);
        slot.Send(Release("r1"));
        AssertRejected(slot.Send(Reserve("r4")), RejectReason.SlotFull);
        var released = slot.Send(Release("r2"));
        Assert.False(released.Snapshot!.OverCommitted);
        Assert.True(slot.Send(Reserve("r5")).Reply.Accepted);
    }

    [Fact]
    public void A_removed_counter_with_bookings_shows_with_capacity_zero()
    {
        var slot = Configured(Config(Fleet("vans", 3)));
        slot.Send(Reserve("r1"));
        var snapshot = slot.Send(Configure(Config(Fleet("bikes", 3)))).Snapshot!;
        Assert.True(snapshot.OverCommitted);
        var vans = snapshot.Fleet.Single(f => f.Name == "vans");
        Assert.Equal((0L, 1L), (vans.CapacityOrders, vans.UsedOrders));
        Assert.True(slot.Send(Release("r1")).Reply.Accepted);
        Assert.Equal(0, slot.Used("vans"));
    }

    [Fact]
    public void Records_written_by_a_command_whose_slot_state_was_lost_are_undone_and_the_command_applies_once()
    {
        var slot = Configured(Config(Fleet("vans", 2)));
        slot.Send(Reserve("r1", hold: T0 + 60_000));
        var release = Release("r1");
        // The crash: the released record reached the store, the slot state (counters, offset) did not.
        slot.CrashAfterPartialWrite(release, keep: 1);
        Assert.Equal(ReservationStatus.Released, slot.Records["r1"].Status);
        Assert.Equal(1, slot.Used("vans"));

        var again = slot.Send(release);
        Assert.True(again.Reply.Accepted);
        Assert.False(again.Reply.Replayed);
        Assert.Equal(SlotEventKind.ReservationReleased, again.Events.Single().Kind);
        Assert.Equal(0, slot.Used("vans"));
        Assert.Empty(slot.State!.FleetHeld);
        Assert.Empty(slot.Holds);
    }

    [Fact]
    public void Holds_are_found_in_the_index_and_expire_by_expiry_then_id()
    {
        var slot = Configured(Config(Fleet("vans", 10)));
        slot.Send(Reserve("b", hold: T0 + 300));
        slot.Send(Reserve("late", hold: T0 + 900));
        slot.Send(Reserve("c", hold: T0 + 100));
        slot.Send(Reserve("a", hold: T0 + 300));
        slot.Send(Reserve("B", hold: T0 + 300));
        Assert.Equal([(T0 + 100, "c"), (T0 + 300, "B"), (T0 + 300, "a"), (T0 + 300, "b"), (T0 + 900, "late")], slot.Holds);
        Assert.Equal(T0 + 100, slot.State!.NextHoldExpiryUnixMs);

        var tick = slot.Send(ExpireHolds(), at: T0 + 500);
        Assert.Equal(["c", "B", "a", "b"], tick.Events.Select(e => e.ReservationId));
        Assert.All(tick.Events, e => Assert.Equal(SlotEventKind.HoldExpired, e.Kind));
        Assert.Equal(["B", "a", "b", "c"], tick.Index.HoldsRemoved.Select(h => h.ReservationId).Order(StringComparer.Ordinal));
        Assert.Equal([(T0 + 900, "late")], slot.Holds);
        Assert.Equal(T0 + 900, slot.State.NextHoldExpiryUnixMs);
        Assert.Equal(1, slot.Used("vans"));
        Assert.Equal(4, slot.Expired.Count);
    }

    [Fact]
    public void The_slot_state_and_a_commands_writes_do_not_grow_with_the_holds_of_the_slot()
    {
        var slot = Configured(Config(Fleet("vans", 100_000)));
        slot.Send(Reserve("first", hold: T0 + 600_000));
        var stateWithOneHold = slot.State!.CalculateSize();
        for (var i = 0; i < 2_000; i++) slot.Send(Reserve($"h{i}", hold: T0 + 600_000 + i));

        var reserve = slot.Send(Reserve("one-more", hold: T0 + 700_000));
        var confirm = slot.Send(Confirm("one-more"));
        // Counters gain digits, nothing else.
        Assert.InRange(slot.State.CalculateSize(), stateWithOneHold, stateWithOneHold + 8);
        Assert.Equal(2_001, slot.Holds.Count);
        Assert.Equal((1, 1, 0), (reserve.Reservations.Count, reserve.Index.HoldsAdded.Count, reserve.Index.HoldsRemoved.Count));
        Assert.Equal((1, 0, 1), (confirm.Reservations.Count, confirm.Index.HoldsAdded.Count, confirm.Index.HoldsRemoved.Count));
    }

    [Fact]
    public void A_redelivered_ExpireHolds_re_emits_the_events_it_caused_and_changes_nothing()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("h2", hold: T0 + 200));
        slot.Send(Reserve("h1", hold: T0 + 200));
        slot.Send(Reserve("h3", hold: T0 + 100));
        var tick = ExpireHolds();
        var first = slot.Send(tick, at: T0 + 250);
        var tickOffset = slot.NextOffset - 1;
        slot.Send(Reserve("later"), at: T0 + 300);
        var before = slot.State!.Clone();
        var holds = slot.Holds.ToList();
        var marks = slot.Expired.Keys.ToList();

        var replay = slot.Redeliver(tick, T0 + 250, tickOffset);
        Assert.True(replay.Reply.Replayed);
        Assert.Equal(["h3", "h1", "h2"], replay.Events.Select(e => e.ReservationId));
        Assert.Equal(first.Events, replay.Events);
        Assert.Null(replay.State);
        Assert.Same(IndexChanges.None, replay.Index);
        Assert.Equal(before, slot.State);
        Assert.Equal(holds, slot.Holds);
        Assert.Equal(marks, slot.Expired.Keys);
    }

    [Fact]
    public void Expired_hold_marks_are_kept_ten_minutes_then_removed_by_a_later_expiry()
    {
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("h1", hold: T0 + 100));
        slot.Send(Reserve("h2", hold: T0 + 900_000));
        var tick = ExpireHolds();
        slot.Send(tick, at: T0 + 200);
        var tickOffset = slot.NextOffset - 1;
        Assert.Equal([(tickOffset, "h1")], slot.Expired.Keys);

        var later = slot.Send(ExpireHolds(), at: T0 + 900_000);
        Assert.Equal("h2", later.Events.Single().ReservationId);
        Assert.Equal(["h1"], later.Index.ExpiredRemoved.Select(m => m.ReservationId));
        Assert.Equal("h2", slot.Expired.Values.Single().ReservationId);
        // Past the ten minutes a re-delivery no longer re-emits, as before the index.
        Assert.Empty(slot.Redeliver(tick, T0 + 200, tickOffset).Events);
    }

    [Fact]
    public void A_crash_after_index_entries_and_records_were_written_but_not_the_slot_state_is_repaired()
    {
        var slot = Configured(Config(Fleet("vans", 2)));
        var reserve = Reserve("h1", hold: T0 + 100);
        // The index entry reached the store, the record and the slot state did not.
        slot.CrashAfterPartialWrite(reserve, keep: 0);
        Assert.Equal([(T0 + 100, "h1")], slot.Holds);
        Assert.Empty(slot.Records);
        Assert.Equal(ReservationStatus.Held, slot.Send(reserve).Reply.Status);
        Assert.Equal([(T0 + 100, "h1")], slot.Holds);

        slot.Send(Reserve("h2", hold: T0 + 100));
        var tick = ExpireHolds();
        slot.Now = T0 + 150;
        // The expiry's marks and one expired record reached the store; the slot state and the
        // removal of the index entries did not.
        slot.CrashAfterPartialWrite(tick, keep: 1);
        Assert.Equal(2, slot.Holds.Count);
        Assert.Equal(2, slot.Expired.Count);

        var again = slot.Send(tick);
        Assert.False(again.Reply.Replayed);
        Assert.Equal(["h1", "h2"], again.Events.Select(e => e.ReservationId));
        Assert.Empty(slot.Holds);
        Assert.Equal(0, slot.Used("vans"));
        Assert.Equal(0, slot.State!.NextHoldExpiryUnixMs);
    }

    [Fact]
    public void An_index_entry_left_by_a_crash_after_the_slot_state_was_written_is_skipped_and_removed()
    {
        var slot = Configured(Config(Fleet("vans", 3)));
        slot.Send(Reserve("h1", hold: T0 + 100));
        slot.Send(Reserve("h2", hold: T0 + 200));
        // Confirmed and stored, but its index entry was not removed.
        slot.SendAndCrashBeforeIndexRemovals(Confirm("h1"));
        Assert.Equal(2, slot.Holds.Count);
        Assert.Equal(T0 + 200, slot.State!.NextHoldExpiryUnixMs);

        var tick = slot.Send(ExpireHolds(), at: T0 + 300);
        Assert.Equal("h2", tick.Events.Single().ReservationId);
        Assert.Empty(slot.Holds);
        Assert.Equal(ReservationStatus.Booked, slot.Records["h1"].Status);
        Assert.Equal(1, slot.Used("vans"));
    }

    [Fact]
    public void A_state_written_before_the_hold_index_is_honoured_and_its_holds_move_to_the_index()
    {
        // Fields 13 and 14 are what the previous version wrote as `held` and `recently_expired`.
        Assert.Equal((13, 14), (SlotState.LegacyHeldFieldNumber, SlotState.LegacyRecentlyExpiredFieldNumber));
        var slot = Configured(Config(Fleet("vans", 5)));
        slot.Send(Reserve("gone", hold: T0 + 50));
        slot.Send(Reserve("h1", hold: T0 + 300));
        slot.Send(Reserve("h2", hold: T0 + 200));
        slot.Send(Reserve("h3", hold: T0 + 200));
        var tick = ExpireHolds();
        var expired = slot.Send(tick, at: T0 + 100);
        var tickOffset = slot.NextOffset - 1;

        // What the previous version stored: the same records, the holds and expiry marks inside the state.
        var old = slot.State!.Clone();
        foreach (var (expiry, id) in slot.Holds) old.LegacyHeld[id] = expiry;
        old.LegacyRecentlyExpired.AddRange(slot.Expired.Values.Select(m => m.Clone()));
        slot.Holds.Clear();
        slot.Expired.Clear();
        slot.Restore(SlotState.Parser.ParseFrom(old.ToByteArray()));

        Assert.Equal(expired.Events, slot.Redeliver(tick, T0 + 100, tickOffset).Events);

        var confirm = slot.Send(Confirm("h3"), at: T0 + 150);
        Assert.True(confirm.Reply.Accepted);
        Assert.Empty(slot.State!.LegacyHeld);
        Assert.Empty(slot.State.LegacyRecentlyExpired);
        Assert.Equal([(T0 + 200, "h2"), (T0 + 300, "h1")], slot.Holds);
        Assert.Equal("gone", slot.Expired.Values.Single().ReservationId);
        Assert.Equal(T0 + 200, slot.State.NextHoldExpiryUnixMs);
        Assert.Equal(expired.Events, slot.Redeliver(tick, T0 + 100, tickOffset).Events);

        var later = slot.Send(ExpireHolds(), at: T0 + 400);
        Assert.Equal(["h2", "h1"], later.Events.Select(e => e.ReservationId));
        Assert.Equal(1, slot.Used("vans"));
        Assert.Empty(slot.Holds);
    }

    [Fact]
    public void Settle_restores_a_record_to_what_it_was_after_the_last_applied_command()
    {
        AppliedAt At(long offset) => new() { Partition = 0, Offset = offset };
        var record = new ReservationRecord
        {
            ReservationId = "r1", Reserved = true, HoldExpiresUnixMs = T0 + 1, Status = ReservationStatus.Released,
            ReservedAt = At(3), ConfirmedAt = At(5), EndedAt = At(8), EndReason = "released",
        };
        Assert.Equal(record, SlotDecisions.Settle(record.Clone(), At(8)));
        Assert.Equal(ReservationStatus.Booked, SlotDecisions.Settle(record.Clone(), At(7))!.Status);
        Assert.Equal(ReservationStatus.Held, SlotDecisions.Settle(record.Clone(), At(4))!.Status);
        Assert.Null(SlotDecisions.Settle(record.Clone(), At(2)));
        Assert.Null(SlotDecisions.Settle(record.Clone(), null));
    }
}
