using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway.Tests;

public class ValidationTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 1, 8, 0, 0, TimeSpan.Zero);

    private static List<string> Texts(RequestValidation.Problems problems) => [.. problems.All.Select(p => p.ToString())];

    private static ConfigureSlotRequest ValidConfigure() => new()
    {
        Slot = new SlotId { Hub = "LON1", Start = Timestamp.FromDateTimeOffset(Start) },
        Config = new SlotConfig { Open = true, Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = 10 } } },
    };

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

        Assert.Contains("reservation_id: is empty", Texts(problems));
        Assert.Contains("order_id: contains whitespace or control characters", Texts(problems));
        Assert.Contains(Texts(problems), p => p.StartsWith("slot.start: ", StringComparison.Ordinal) && p.Contains("not on the hour", StringComparison.Ordinal));
        Assert.Contains("zone: is empty", Texts(problems));
        Assert.Contains("needs.quantities[items]: -1 is negative", Texts(problems));
        Assert.Contains(Texts(problems), p => p.StartsWith("hold_seconds: -5", StringComparison.Ordinal));
        Assert.Equal(6, problems.All.Count);
    }

    [Fact]
    public void Missing_slot_parts_and_bad_hubs_are_named()
    {
        var noSlot = ValidReserve();
        noSlot.Slot = null;
        Assert.Contains("slot: is missing", Texts(RequestValidation.Reserve(noSlot, out _)));

        var noStart = ValidReserve();
        noStart.Slot.Start = null;
        Assert.Contains("slot.start: is missing", Texts(RequestValidation.Reserve(noStart, out _)));

        var badHub = ValidReserve();
        badHub.Slot.Hub = "a@b";
        var hubProblem = Assert.Single(RequestValidation.Reserve(badHub, out _).All);
        Assert.Equal(("slot.hub", "'a@b' has a character outside A-Z a-z 0-9 . _ -"), (hubProblem.Field, hubProblem.Problem));

        var outOfRange = ValidReserve();
        outOfRange.Slot.Start = new Timestamp { Seconds = long.MaxValue };
        Assert.Contains("slot.start: is not a valid timestamp", Texts(RequestValidation.Reserve(outOfRange, out _)));
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
        Assert.Contains(Texts(RequestValidation.Availability(backwards, out _, out _)), p => p.StartsWith("to: ", StringComparison.Ordinal) && p.Contains("not after from", StringComparison.Ordinal));

        var tooLong = new AvailabilityRequest { Hub = "LON1", From = Timestamp.FromDateTimeOffset(Start), To = Timestamp.FromDateTimeOffset(Start.AddDays(100)) };
        Assert.Contains("to: range is longer than 62 days", Texts(RequestValidation.Availability(tooLong, out _, out _)));

        var missing = new AvailabilityRequest { Hub = "" };
        Assert.Equal(["hub: is empty", "from: is missing", "to: is missing"], Texts(RequestValidation.Availability(missing, out _, out _)));
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
        var problems = RequestValidation.Configure(request, Start.AddDays(-1), out _);
        Assert.Equal(
            [
                "config.fleet: name 'vans' appears more than once",
                "config.fleet[1].capacity_orders: -1 is negative",
                "config.shared[0].measure: is empty",
                "config.zone_rules[0].max_orders: -2 is negative",
            ],
            Texts(problems));

        request.Config = null;
        Assert.Equal(["config: is missing"], Texts(RequestValidation.Configure(request, Start.AddDays(-1), out _)));
    }

    [Fact]
    public void The_gateway_applies_the_engines_configuration_rules_with_the_field_as_data()
    {
        Assert.False(RequestValidation.Configure(ValidConfigure(), Start.AddDays(-1), out _).Any);

        var noOpen = ValidConfigure();
        noOpen.Config.ClearOpen();
        Assert.Equal("config.open", Assert.Single(RequestValidation.Configure(noOpen, Start.AddDays(-1), out _).All).Field);

        var noFleet = ValidConfigure();
        noFleet.Config.Fleet.Clear();
        Assert.Equal(["config.fleet: has no fleet counter"], Texts(RequestValidation.Configure(noFleet, Start.AddDays(-1), out _)));

        var ended = Assert.Single(RequestValidation.Configure(ValidConfigure(), Start.AddHours(2), out _).All);
        Assert.Equal(("slot", "the slot's window ended at 2026-12-01T10:00:00.000Z; an ended slot cannot be configured"), (ended.Field, ended.Problem));

        var badSlotAndConfig = ValidConfigure();
        badSlotAndConfig.Slot.Hub = "LON 1";
        badSlotAndConfig.Config.Fleet[0].CapacityOrders = -1;
        Assert.Equal(["slot.hub", "config.fleet[0].capacity_orders"],
            RequestValidation.Configure(badSlotAndConfig, Start.AddDays(-1), out _).All.Select(p => p.Field));

        var badZone = ValidConfigure();
        badZone.Config.Fleet[0].Zones.Add("north\nwest");
        Assert.Equal("config.fleet[0].zones[0]", Assert.Single(RequestValidation.Configure(badZone, Start.AddDays(-1), out _).All).Field);
    }

    [Fact]
    public void Reserve_names_and_sizes_are_bounded_as_in_the_engine()
    {
        var request = ValidReserve();
        request.Zone = "north|1";
        for (var i = 0; i < 20_000; i++) request.Needs.Quantities["m" + i] = 1;
        Assert.Equal(
            ["zone: 'north|1' has a character outside A-Z a-z 0-9 . _ -", $"needs.quantities: has 20001 measures, more than {SlotValidation.MaxQuantities}"],
            Texts(RequestValidation.Reserve(request, out _)));
    }
}
