using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

public class ValidationTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);

    private static ReserveRequest ValidReserve() => new()
    {
        ReservationId = "r-1",
        OrderId = "o-1",
        Slot = new SlotId { Hub = "LON1", Start = Timestamp.FromDateTimeOffset(Start) },
        Zone = "north",
        Needs = new OrderNeeds { Quantities = { ["items"] = 12 }, Requires = { "chilled" } },
        HoldSeconds = 600,
    };

    [Fact]
    public void Valid_reserve_has_no_problem_and_gives_the_canonical_slot_key()
    {
        var problems = RequestValidation.Reserve(ValidReserve(), out var slot);
        Assert.False(problems.Any, problems.ToString());
        Assert.Equal("LON1@2026-12-01T08:00Z", slot.ToString());
    }

    [Fact]
    public void Every_bad_field_of_a_reserve_is_named()
    {
        var request = ValidReserve();
        request.ReservationId = "";
        request.OrderId = "has space";
        request.Slot.Start = Timestamp.FromDateTimeOffset(Start.AddMinutes(30));
        request.Zone = "";
        request.Needs.Quantities["items"] = -1;
        request.HoldSeconds = -5;

        var problems = RequestValidation.Reserve(request, out _);

        Assert.Contains("reservation_id: is empty", problems.All);
        Assert.Contains("order_id: contains whitespace or control characters", problems.All);
        Assert.Contains(problems.All, p => p.StartsWith("slot.start: ", StringComparison.Ordinal) && p.Contains("not on the hour", StringComparison.Ordinal));
        Assert.Contains("zone: is empty", problems.All);
        Assert.Contains("needs.quantities[items]: -1 is negative", problems.All);
        Assert.Contains(problems.All, p => p.StartsWith("hold_seconds: -5", StringComparison.Ordinal));
        Assert.Equal(6, problems.All.Count);
    }

    [Fact]
    public void Missing_slot_parts_and_bad_hubs_are_named()
    {
        var noSlot = ValidReserve();
        noSlot.Slot = null;
        Assert.Contains("slot: is missing", RequestValidation.Reserve(noSlot, out _).All);

        var noStart = ValidReserve();
        noStart.Slot.Start = null;
        Assert.Contains("slot.start: is missing", RequestValidation.Reserve(noStart, out _).All);

        var badHub = ValidReserve();
        badHub.Slot.Hub = "a@b";
        Assert.Contains("slot.hub: hub must not contain '@'", RequestValidation.Reserve(badHub, out _).All);

        var outOfRange = ValidReserve();
        outOfRange.Slot.Start = new Timestamp { Seconds = long.MaxValue };
        Assert.Contains("slot.start: is not a valid timestamp", RequestValidation.Reserve(outOfRange, out _).All);
    }

    [Fact]
    public void Problems_become_one_invalid_argument_status_listing_each_field()
    {
        var request = ValidReserve();
        request.ReservationId = "";
        request.Zone = "";
        var e = Assert.Throws<RpcException>(() => RequestValidation.Reserve(request, out _).ThrowIfAny());
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("reservation_id: is empty; zone: is empty", e.Status.Detail);
    }

    [Fact]
    public void Availability_range_must_be_ordered_and_bounded()
    {
        var backwards = new AvailabilityRequest { Hub = "LON1", From = Timestamp.FromDateTimeOffset(Start), To = Timestamp.FromDateTimeOffset(Start.AddHours(-2)) };
        Assert.Contains(RequestValidation.Availability(backwards, out _, out _).All, p => p.StartsWith("to: ", StringComparison.Ordinal) && p.Contains("not after from", StringComparison.Ordinal));

        var tooLong = new AvailabilityRequest { Hub = "LON1", From = Timestamp.FromDateTimeOffset(Start), To = Timestamp.FromDateTimeOffset(Start.AddDays(100)) };
        Assert.Contains("to: range is longer than 62 days", RequestValidation.Availability(tooLong, out _, out _).All);

        var missing = new AvailabilityRequest { Hub = "" };
        Assert.Equal(["hub: is empty", "from: is missing", "to: is missing"], RequestValidation.Availability(missing, out _, out _).All);
    }

    [Fact]
    public void Slot_configuration_problems_name_the_counter()
    {
        var request = new ConfigureSlotRequest
        {
            Slot = new SlotId { Hub = "LON1", Start = Timestamp.FromDateTimeOffset(Start) },
            Config = new SlotConfig
            {
                Open = true,
                Fleet =
                {
                    new FleetCounterConfig { Name = "vans", CapacityOrders = 10 },
                    new FleetCounterConfig { Name = "vans", CapacityOrders = -1 },
                },
                Shared = { new SharedCounterConfig { Name = "picking", Measure = "", Capacity = 100 } },
                ZoneRules = { new ZoneRule { Zone = "outer", MaxOrders = -2 } },
            },
        };
        var problems = RequestValidation.Configure(request, out _);
        Assert.Equal(
            [
                "config.fleet: name 'vans' appears more than once",
                "config.fleet[1].capacity_orders: -1 is negative",
                "config.shared[0].measure: is empty",
                "config.zone_rules[0].max_orders: -2 is negative",
            ],
            problems.All);

        request.Config = null;
        Assert.Equal(["config: is missing"], RequestValidation.Configure(request, out _).All);
    }
}
