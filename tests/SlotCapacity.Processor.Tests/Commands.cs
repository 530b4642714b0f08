using SlotCapacity.Contracts;

namespace SlotCapacity.Processor.Tests;

/// <summary>Builders for the commands the tests send.</summary>
internal static class Commands
{
    public static readonly DateTimeOffset SlotStart = new(2030, 5, 6, 10, 0, 0, TimeSpan.Zero);
    public static string Slot(string hub = "hub-a") => SlotKey.Create(hub, SlotStart).ToString();

    public static SlotConfig Config(long vans = 37, long items = 100_000) => new()
    {
        Open = true,
        Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = vans, Carries = { "bulky" } } },
        Shared = { new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = items } },
    };

    public static SlotCommand Configure(string slot, SlotConfig config, int? replyPartition = 0) =>
        Envelope(slot, $"configure-{Guid.NewGuid():N}", replyPartition, c => c.Configure = new ConfigureSlot { Config = config });

    public static SlotCommand Reserve(string slot, string reservationId, int? replyPartition = 0, long holdExpiresUnixMs = 0, long items = 3) =>
        Envelope(slot, $"reserve-{reservationId}", replyPartition, c => c.Reserve = new Reserve
        {
            ReservationId = reservationId,
            OrderId = "order-" + reservationId,
            Zone = "north",
            Needs = new OrderNeeds { Quantities = { ["items"] = items } },
            HoldExpiresUnixMs = holdExpiresUnixMs,
        });

    public static SlotCommand Envelope(string slot, string commandId, int? replyPartition, Action<SlotCommand> body)
    {
        var command = new SlotCommand { CommandId = commandId, Slot = slot, CorrelationId = "corr-" + commandId };
        if (replyPartition is { } p) command.ReplyPartition = p;
        body(command);
        return command;
    }
}
