using Google.Protobuf;
using SlotCapacity.Contracts;
using SlotCapacity.Domain.Tests;

namespace SlotCapacity.History.Tests;

/// <summary>The replay's fold: the engine's own events give back the engine's own snapshot.</summary>
public sealed class ReplayedSlotsTests
{
    private static readonly DateTimeOffset Always = DateTimeOffset.MaxValue;

    [Fact]
    public void Every_event_kind_folds_into_the_snapshot_the_engine_published()
    {
        var day = EngineEvents.Day();
        var replayed = new ReplayedSlots("", Always);
        foreach (var e in EngineEvents.Events(day)) Assert.Null(replayed.Apply(e));

        var snapshot = Assert.Single(replayed.Snapshots());
        Assert.Equal(EngineEvents.Content(EngineEvents.SnapshotAfter(day)), EngineEvents.Content(snapshot));
        Assert.False(snapshot.Open);
        Assert.Contains(snapshot.Fleet, f => f.HeldOrders > 0);
        Assert.Equal(0, replayed.Skipped + replayed.Inconsistent + replayed.Duplicates);
    }

    [Fact]
    public void Each_instant_gives_the_snapshot_the_engine_had_then()
    {
        var day = EngineEvents.Day();
        for (var i = 0; i < day.Log.Count; i++)
        {
            var replayed = new ReplayedSlots("", DateTimeOffset.FromUnixTimeMilliseconds(day.Log[i].Timestamp));
            foreach (var e in EngineEvents.Events(day)) replayed.Apply(e);
            Assert.Equal(EngineEvents.Content(EngineEvents.SnapshotAfter(day, i)), EngineEvents.Content(Assert.Single(replayed.Snapshots())));
        }
        var before = new ReplayedSlots("", DateTimeOffset.FromUnixTimeMilliseconds(EngineEvents.T0 - 1));
        foreach (var e in EngineEvents.Events(day)) before.Apply(e);
        Assert.Empty(before.Snapshots());
        Assert.Equal(EngineEvents.Events(day).Count, before.Later);
    }

    [Fact]
    public void Events_delivered_twice_count_once()
    {
        var day = EngineEvents.Day();
        var events = EngineEvents.Events(day);
        var replayed = new ReplayedSlots("", Always);
        // A re-delivered command re-emits its events, with the same ids, after later ones.
        foreach (var e in events.Concat(events.Take(5)).Concat(events)) replayed.Apply(e);
        Assert.Equal(events.Count + 5, replayed.Duplicates);
        Assert.Equal(EngineEvents.Content(EngineEvents.SnapshotAfter(day)), EngineEvents.Content(Assert.Single(replayed.Snapshots())));
    }

    [Fact]
    public void Events_written_before_the_later_fields_existed_are_replayed()
    {
        // As the first writers wrote them: fields 1-12 only, no config (13) on a reservation event, no hold expiry (14).
        var configured = Parse(w =>
        {
            Text(w, 1, "0:0:0");
            Text(w, 2, SlotHarness.Slot);
            Number(w, 3, (long)SlotEventKind.SlotConfigured);
            Number(w, 4, EngineEvents.T0);
            w.WriteTag(13, WireFormat.WireType.LengthDelimited);
            w.WriteMessage(SlotHarness.Config(SlotHarness.Fleet("vans", 4)));
        });
        var booked = Parse(w =>
        {
            Text(w, 1, "0:1:0");
            Text(w, 2, SlotHarness.Slot);
            Number(w, 3, (long)SlotEventKind.ReservationBooked);
            Number(w, 4, EngineEvents.T0 + 1);
            Text(w, 6, "r-old");
            Text(w, 8, "north");
            Text(w, 9, "vans");
            Number(w, 11, 1);
        });
        // As a newer writer may write it: a field this reader does not know (an identity, say) is ignored.
        var newer = Parse(w =>
        {
            Text(w, 1, "0:2:0");
            Text(w, 2, SlotHarness.Slot);
            Number(w, 3, (long)SlotEventKind.ReservationBooked);
            Number(w, 4, EngineEvents.T0 + 2);
            Text(w, 6, "r-new");
            Text(w, 9, "vans");
            Number(w, 11, 1);
            Text(w, 15, "planner@example");
        });
        Assert.Equal(0, booked.HoldExpiresUnixMs);

        var replayed = new ReplayedSlots("", Always);
        Assert.Null(replayed.Apply(configured));
        Assert.Null(replayed.Apply(booked));
        Assert.Null(replayed.Apply(newer));

        var vans = Assert.Single(Assert.Single(replayed.Snapshots()).Fleet);
        Assert.Equal((4, 2, 0), (vans.CapacityOrders, vans.UsedOrders, vans.HeldOrders));
    }

    [Theory]
    [InlineData("", "hub-a@2030-05-06T10:00Z", SlotEventKind.ReservationBooked, "r", "has no event id")]
    [InlineData("0:1:0", "not-a-slot", SlotEventKind.ReservationBooked, "r", "is not a slot key")]
    [InlineData("0:1:0", "hub-a@2030-05-06T10:00Z", (SlotEventKind)42, "r", "kind 42 is unknown")]
    [InlineData("0:1:0", "hub-a@2030-05-06T10:00Z", SlotEventKind.SlotConfigured, "", "SLOT_CONFIGURED without a config")]
    [InlineData("0:1:0", "hub-a@2030-05-06T10:00Z", SlotEventKind.ReservationReleased, "", "without a reservation id")]
    public void An_unusable_event_is_skipped_with_its_reason_and_counted(string id, string slot, SlotEventKind kind, string reservation, string reason)
    {
        var replayed = new ReplayedSlots("", Always);
        var problem = replayed.Apply(new SlotEvent { EventId = id, Slot = slot, Kind = kind, ReservationId = reservation, FleetCounter = "vans", FleetUnits = 1 });
        Assert.Contains(reason, problem, StringComparison.Ordinal);
        Assert.Equal(1, replayed.Skipped);
        Assert.Equal(problem, Assert.Single(replayed.Problems));
        Assert.Equal(0, replayed.Applied);
    }

    [Fact]
    public void Another_hubs_events_are_left_out()
    {
        var day = EngineEvents.Day();
        var replayed = new ReplayedSlots("hub-b", Always);
        foreach (var e in EngineEvents.Events(day)) replayed.Apply(e);
        Assert.Empty(replayed.Snapshots());
        Assert.Empty(replayed.Utilisation().Days);
        var hubA = new ReplayedSlots("hub-a", Always);
        foreach (var e in EngineEvents.Events(day)) hubA.Apply(e);
        Assert.Single(hubA.Utilisation().Days);
    }

    private static SlotEvent Parse(Action<CodedOutputStream> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new CodedOutputStream(buffer, leaveOpen: true)) write(w);
        return SlotEvent.Parser.ParseFrom(buffer.ToArray());
    }

    private static void Text(CodedOutputStream w, int field, string value)
    {
        w.WriteTag(field, WireFormat.WireType.LengthDelimited);
        w.WriteString(value);
    }

    private static void Number(CodedOutputStream w, int field, long value)
    {
        w.WriteTag(field, WireFormat.WireType.Varint);
        w.WriteInt64(value);
    }
}
