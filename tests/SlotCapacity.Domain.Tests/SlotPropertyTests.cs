using CsCheck;
using SlotCapacity.Contracts;
using Xunit;
using static SlotCapacity.Domain.Tests.SlotHarness;

namespace SlotCapacity.Domain.Tests;

/// <summary>
/// Random command sequences on one slot, checked against a deliberately simple model of the rules
/// (usage recomputed from the reservations every time): same replies, never oversold, and
/// idempotent under duplicates and re-delivery.
/// </summary>
public sealed class SlotPropertyTests
{
    private const long PickingCapacity = 12;
    private const long SouthMaxOrders = 3;

    /// <summary>One step: a command kind, its arguments, and how much time passes before it.</summary>
    private sealed record Step(int Kind, int Id, int Zone, int Items, bool Bulky, int HoldMs, int CapacityA, int AdvanceMs, int Earlier);

    private static readonly Gen<Step> GenStep =
        Gen.Select(Gen.Int[0, 8], Gen.Int[0, 7], Gen.Int[0, 2], Gen.Int[0, 6], Gen.Bool, Gen.Int[0, 3000],
                Gen.Select(Gen.Int[0, 4], Gen.Int[0, 1500], Gen.Int[0, 1000]))
            .Select((kind, id, zone, items, bulky, hold, more) =>
                new Step(kind, id, zone, items, bulky, hold, more.Item1, more.Item2, more.Item3));

    private static readonly string[] Zones = ["north", "south", "east"];

    private static SlotConfig ConfigWith(long capacityA)
    {
        var config = Config(Fleet("a", capacityA, zones: ["north"]), Fleet("b", 2, zones: ["north", "south"], carries: ["bulky"]),
            Fleet("c", 2, zones: ["south"]));
        config.Shared.Add(new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = PickingCapacity });
        config.ZoneRules.Add(new ZoneRule { Zone = "south", MaxOrders = SouthMaxOrders });
        return config;
    }

    // How many samples did crash, or store the previous version, at one of their steps.
    private int _crashes;
    private int _previousVersions;

    private SlotHarness Run(List<Step> steps, Action<SlotHarness, SlotCommand, Decision, Model>? check = null,
        int crashAt = -1, int keep = 0, int previousVersionAt = -1)
    {
        var slot = new SlotHarness();
        var model = new Model();
        slot.Send(Configure(ConfigWith(3)));
        model.Capacity["a"] = 3;
        for (var index = 0; index < steps.Count; index++)
        {
            var step = steps[index];
            slot.Now += step.AdvanceMs;
            var command = step.Kind switch
            {
                0 or 1 => Reserve($"r{step.Id}", Zones[step.Zone], step.Items, step.HoldMs == 0 || step.Bulky ? 0 : slot.Now + step.HoldMs,
                    step.Bulky ? ["bulky"] : []),
                2 => Confirm($"r{step.Id}"),
                3 => Release($"r{step.Id}"),
                4 => Abandon($"r{step.Id}"),
                5 => ExpireHolds(),
                6 => Configure(ConfigWith(step.CapacityA)),
                _ => slot.Log[step.Earlier % slot.Log.Count].Command,
            };
            if (index == crashAt)
            {
                slot.CrashAfterPartialWrite(command, keep);
                Interlocked.Increment(ref _crashes);
            }
            if (index == previousVersionAt)
            {
                slot.ToPreviousVersion();
                Interlocked.Increment(ref _previousVersions);
            }
            var expected = model.Decide(command, slot.Now);
            var decision = slot.Send(command);
            var reply = decision.Reply;
            Assert.Equal(expected.Accepted, reply.Accepted);
            Assert.Equal(expected.Reason, reply.Reason);
            Assert.Equal(expected.Status, reply.Status);
            if (command.BodyCase == SlotCommand.BodyOneofCase.Reserve && reply.Accepted)
                Assert.Equal(expected.Counter, reply.FleetCounter);
            check?.Invoke(slot, command, decision, model);
        }
        return slot;
    }

    [Fact]
    public void Replies_match_the_model_and_no_counter_is_ever_oversold()
    {
        GenStep.List[1, 80].Sample(steps => Run(steps, (slot, command, decision, model) =>
        {
            var state = slot.State!;
            foreach (var counter in new[] { "a", "b", "c" })
                Assert.Equal(model.Used(counter), slot.Used(counter));
            Assert.Equal(model.Items(), slot.SharedUsed("picking"));
            Assert.True(slot.SharedUsed("picking") <= PickingCapacity);
            Assert.True(model.ZoneUsed("south") <= SouthMaxOrders || decision.Events.Count == 0);
            if (command.BodyCase == SlotCommand.BodyOneofCase.Reserve && decision.Events.Any(e => e.Kind is SlotEventKind.ReservationBooked or SlotEventKind.ReservationHeld))
            {
                var counter = decision.Reply.FleetCounter;
                Assert.True(slot.Used(counter) <= model.Capacity[counter], $"{counter} oversold");
            }
            Assert.Equal(slot.Records.Values.Where(r => r.Status == ReservationStatus.Held).Select(r => r.HoldExpiresUnixMs).DefaultIfEmpty(0).Min(),
                state.NextHoldExpiryUnixMs);
            // The hold index holds exactly the held reservations, each at its expiry.
            Assert.Equal(slot.Records.Values.Where(r => r.Status == ReservationStatus.Held).Select(r => (r.HoldExpiresUnixMs, r.ReservationId))
                .Order(), slot.Holds.Order());
            Assert.Empty(state.LegacyHeld);
            Assert.Empty(state.LegacyRecentlyExpired);
        }), iter: 400);
    }

    [Fact]
    public void A_crash_between_writing_reservations_and_the_slot_state_is_repaired_when_the_command_comes_again()
    {
        // The crash is at one of the sample's own steps, so every sample crashes once.
        var samples = from steps in GenStep.List[1, 60] from crashAt in Gen.Int[0, steps.Count - 1] from keep in Gen.Int[0, 3]
                      select (steps, crashAt, keep);
        samples.Sample((steps, crashAt, keep) =>
            Run(steps, (slot, _, _, model) =>
            {
                foreach (var counter in new[] { "a", "b", "c" })
                    Assert.Equal(model.Used(counter), slot.Used(counter));
                Assert.Equal(model.Items(), slot.SharedUsed("picking"));
                // No hold is lost from the index (entries left by the crash may remain until due).
                foreach (var held in slot.Records.Values.Where(r => r.Status == ReservationStatus.Held))
                    Assert.Contains((held.HoldExpiresUnixMs, held.ReservationId), slot.Holds);
            }, crashAt, keep), iter: 300);
        Assert.True(_crashes >= 300, $"only {_crashes} of 300 samples crashed");
    }

    [Fact]
    public void A_slot_stored_by_the_previous_version_at_any_point_decides_the_same_and_moves_its_holds_to_the_index()
    {
        var samples = from steps in GenStep.List[1, 60] from at in Gen.Int[0, steps.Count - 1] select (steps, at);
        samples.Sample((steps, at) =>
        {
            var slot = Run(steps, (slot, _, _, model) =>
            {
                foreach (var counter in new[] { "a", "b", "c" })
                    Assert.Equal(model.Used(counter), slot.Used(counter));
                Assert.Empty(slot.State!.LegacyHeld);
            }, previousVersionAt: at);
            Assert.Equal(slot.Records.Values.Where(r => r.Status == ReservationStatus.Held).Select(r => (r.HoldExpiresUnixMs, r.ReservationId))
                .Order(), slot.Holds.Order());
            // Every command re-delivered, before or after the move, repeats its events.
            foreach (var (command, timestamp, offset, original) in slot.Log)
                Assert.Equal(original.Events.Where(e => e.Kind != SlotEventKind.SlotConfigured),
                    slot.Redeliver(command, timestamp, offset).Events.Where(e => e.Kind != SlotEventKind.SlotConfigured));
        }, iter: 300);
        Assert.True(_previousVersions >= 300, $"only {_previousVersions} of 300 samples stored the previous version");
    }

    [Fact]
    public void Redelivery_from_any_point_changes_nothing_and_repeats_every_effect_exactly()
    {
        Gen.Select(GenStep.List[1, 60], Gen.Int[0, 1000]).Sample((steps, from) =>
        {
            var slot = Run(steps);
            var final = slot.State!.Clone();
            foreach (var (command, timestamp, offset, original) in slot.Log.Skip(from % slot.Log.Count))
            {
                var replay = slot.Redeliver(command, timestamp, offset);
                Assert.Null(replay.State);
                Assert.Empty(replay.Reservations);
                Assert.Same(IndexChanges.None, replay.Index);
                Assert.True(replay.Reply.Replayed);
                Assert.Equal(final, slot.State);
                Assert.Equal(original.Events.Where(e => e.Kind != SlotEventKind.SlotConfigured),
                    replay.Events.Where(e => e.Kind != SlotEventKind.SlotConfigured));
                if (original.Events.Any(e => e.Kind != SlotEventKind.HoldExpired && e.Kind != SlotEventKind.SlotConfigured))
                {
                    Assert.True(replay.Reply.Accepted);
                    Assert.Equal(original.Reply.Status, replay.Reply.Status);
                    Assert.Equal(original.Reply.FleetCounter, replay.Reply.FleetCounter);
                }
            }
        }, iter: 300);
    }

    /// <summary>The rules written plainly: usage is always recomputed from the reservations.</summary>
    private sealed class Model
    {
        private sealed class Res
        {
            public required string Id;
            public string Order = "", Zone = "", Counter = "";
            public long Items, Hold;
            public bool Bulky, Reserved;
            public ReservationStatus Status;
        }

        public readonly Dictionary<string, long> Capacity = new() { ["a"] = 3, ["b"] = 2, ["c"] = 2 };
        private readonly Dictionary<string, Res> _reservations = [];

        private IEnumerable<Res> Live => _reservations.Values.Where(r => r.Status is ReservationStatus.Held or ReservationStatus.Booked);
        public long Used(string counter) => Live.Count(r => r.Counter == counter);
        public long Items() => Live.Sum(r => r.Items);
        public long ZoneUsed(string zone) => Live.Count(r => r.Zone == zone);

        public (bool Accepted, RejectReason Reason, ReservationStatus Status, string Counter) Decide(SlotCommand command, long now)
        {
            foreach (var r in Live.Where(r => r.Status == ReservationStatus.Held && r.Hold <= now).ToList())
                r.Status = ReservationStatus.Expired;
            (bool, RejectReason, ReservationStatus, string) Reject(RejectReason reason, ReservationStatus status = ReservationStatus.Rejected) =>
                (false, reason, status, "");
            switch (command.BodyCase)
            {
                case SlotCommand.BodyOneofCase.Reserve:
                {
                    var reserve = command.Reserve;
                    var items = reserve.Needs.Quantities["items"];
                    var bulky = reserve.Needs.Requires.Contains("bulky");
                    if (reserve.HoldExpiresUnixMs > 0 && reserve.HoldExpiresUnixMs <= now) return Reject(RejectReason.Invalid);
                    if (_reservations.TryGetValue(reserve.ReservationId, out var known))
                    {
                        if (!known.Reserved) return Reject(RejectReason.Unavailable, ReservationStatus.Abandoned);
                        if (known.Order != reserve.OrderId || known.Zone != reserve.Zone || known.Items != items || known.Bulky != bulky
                            || (known.Hold > 0) != (reserve.HoldExpiresUnixMs > 0))
                            return Reject(RejectReason.Invalid);
                        if (known.Status is ReservationStatus.Held or ReservationStatus.Booked)
                            return (true, RejectReason.Unspecified, known.Status, known.Counter);
                        return known.Status == ReservationStatus.Abandoned
                            ? Reject(RejectReason.Unavailable, ReservationStatus.Abandoned)
                            : Reject(RejectReason.Invalid, known.Status);
                    }
                    if (reserve.Zone == "south" && ZoneUsed("south") >= SouthMaxOrders) return Reject(RejectReason.ZoneFull);
                    var eligible = new List<string>();
                    if (reserve.Zone == "north" && !bulky) eligible.Add("a");
                    if (reserve.Zone is "north" or "south") eligible.Add("b");
                    if (reserve.Zone == "south" && !bulky) eligible.Add("c");
                    if (eligible.Count == 0) return Reject(RejectReason.NoEligibleFleet);
                    if (items > 0 && Items() + items > PickingCapacity) return Reject(RejectReason.SlotFull);
                    var chosen = eligible.Where(c => Capacity[c] - Used(c) > 0)
                        .OrderByDescending(c => Capacity[c] - Used(c)).ThenBy(c => c, StringComparer.Ordinal).FirstOrDefault();
                    if (chosen is null) return Reject(RejectReason.SlotFull);
                    var status = reserve.HoldExpiresUnixMs > 0 ? ReservationStatus.Held : ReservationStatus.Booked;
                    _reservations[reserve.ReservationId] = new Res
                    {
                        Id = reserve.ReservationId, Order = reserve.OrderId, Zone = reserve.Zone, Items = items, Bulky = bulky,
                        Hold = reserve.HoldExpiresUnixMs, Counter = chosen, Reserved = true, Status = status,
                    };
                    return (true, RejectReason.Unspecified, status, chosen);
                }
                case SlotCommand.BodyOneofCase.Confirm:
                {
                    if (!_reservations.TryGetValue(command.Confirm.ReservationId, out var r) || !r.Reserved)
                        return Reject(RejectReason.UnknownReservation);
                    if (r.Status == ReservationStatus.Held) r.Status = ReservationStatus.Booked;
                    return r.Status == ReservationStatus.Booked ? (true, RejectReason.Unspecified, ReservationStatus.Booked, r.Counter) : Reject(RejectReason.Invalid, r.Status);
                }
                case SlotCommand.BodyOneofCase.Release:
                {
                    if (!_reservations.TryGetValue(command.Release.ReservationId, out var r) || !r.Reserved)
                        return Reject(RejectReason.UnknownReservation);
                    if (r.Status is ReservationStatus.Held or ReservationStatus.Booked) r.Status = ReservationStatus.Released;
                    return (true, RejectReason.Unspecified, r.Status, r.Counter);
                }
                case SlotCommand.BodyOneofCase.Abandon:
                {
                    var id = command.Abandon.ReservationId;
                    if (!_reservations.TryGetValue(id, out var r))
                    {
                        _reservations[id] = new Res { Id = id, Status = ReservationStatus.Abandoned };
                        return (true, RejectReason.Unspecified, ReservationStatus.Abandoned, "");
                    }
                    if (r.Status is ReservationStatus.Held or ReservationStatus.Booked) r.Status = ReservationStatus.Abandoned;
                    return (true, RejectReason.Unspecified, r.Status, r.Counter);
                }
                case SlotCommand.BodyOneofCase.Configure:
                    Capacity["a"] = command.Configure.Config.Fleet.Single(f => f.Name == "a").CapacityOrders;
                    return (true, RejectReason.Unspecified, ReservationStatus.Unspecified, "");
                default:
                    return (true, RejectReason.Unspecified, ReservationStatus.Unspecified, "");
            }
        }
    }
}
