using Google.Protobuf;
using SlotCapacity.Contracts;
using SlotCapacity.Domain.Tests;

namespace SlotCapacity.History.Tests;

/// <summary>A slot's life through the engine's own decisions, and its events as they would be on the topic.</summary>
internal static class EngineEvents
{
    public const long T0 = SlotHarness.T0;

    /// <summary>Configure, book, hold, confirm, release, a hold that expires, an abandoned reservation,
    /// a capacity lowered below the bookings, a close: every event kind.</summary>
    public static SlotHarness Day()
    {
        var slot = new SlotHarness();
        var config = SlotHarness.Config(SlotHarness.Fleet("vans", 3, ["north"]), SlotHarness.Fleet("bikes", 2, ["north", "south"], ["chilled"]));
        config.Shared.Add(new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 100 });
        config.ZoneRules.Add(new ZoneRule { Zone = "south", MaxOrders = 5 });
        Send(slot, SlotHarness.Configure(config), 0);
        Send(slot, SlotHarness.Reserve("booked-1", items: 10), 1_000);
        Send(slot, SlotHarness.Reserve("held-1", items: 5, hold: T0 + 600_000), 2_000);
        Send(slot, SlotHarness.Reserve("held-2", zone: "south", items: 7, hold: T0 + 60_000, requires: ["chilled"]), 3_000);
        Send(slot, SlotHarness.Confirm("held-1"), 4_000);
        Send(slot, SlotHarness.Reserve("booked-2", items: 3), 5_000);
        Send(slot, SlotHarness.Release("booked-2"), 6_000);
        Send(slot, SlotHarness.Abandon("booked-1"), 7_000);
        Send(slot, SlotHarness.Abandon("never-arrived"), 8_000);
        Send(slot, SlotHarness.Reserve("held-3", items: 4, hold: T0 + 900_000), 9_000);
        // held-2's hold is due: freed by the next command.
        Send(slot, SlotHarness.ExpireHolds(), 70_000);
        Send(slot, SlotHarness.Reserve("booked-3", items: 2), 71_000);
        var lowered = config.Clone();
        lowered.Fleet[0].CapacityOrders = 1;
        Send(slot, SlotHarness.Configure(lowered), 72_000);
        Send(slot, SlotHarness.SetOpen(false), 73_000);
        return slot;
    }

    private static void Send(SlotHarness slot, SlotCommand command, long after)
    {
        var decision = slot.Send(command, T0 + after);
        Assert.True(decision.Reply.Accepted, $"{command.BodyCase}: {decision.Reply.Reason} {decision.Reply.Detail}");
    }

    public static List<SlotEvent> Events(SlotHarness slot) => slot.Log.SelectMany(l => l.Decision.Events).ToList();

    /// <summary>The engine's snapshot after the command at <paramref name="index"/> of the log (the last one by default).</summary>
    public static AvailabilitySnapshot SnapshotAfter(SlotHarness slot, int? index = null) =>
        slot.Log.Take((index ?? slot.Log.Count - 1) + 1).Select(l => l.Decision.Snapshot).Last(s => s is not null)!;

    /// <summary>A snapshot without where it came from (offset, timestamp): what a replay must reproduce.</summary>
    public static AvailabilitySnapshot Content(AvailabilitySnapshot snapshot)
    {
        var copy = snapshot.Clone();
        copy.AsOfUnixMs = 0;
        copy.Version = 0;
        return copy;
    }

    /// <summary>The same events for another slot on another partition (ids from that partition).</summary>
    public static List<SlotEvent> Moved(IEnumerable<SlotEvent> events, string slot, int partition) =>
        events.Select(e =>
        {
            var moved = e.Clone();
            moved.Slot = slot;
            moved.EventId = partition + e.EventId[e.EventId.IndexOf(':', StringComparison.Ordinal)..];
            return moved;
        }).ToList();

    public static byte[] Bytes(IMessage message) => message.ToByteArray();
}
