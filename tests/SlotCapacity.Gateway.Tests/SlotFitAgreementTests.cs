using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// The gateway's advisory fit (from an availability snapshot) and the engine's decision (from the
/// slot state) must agree, for any slot state and order, on whether the order fits and, if not,
/// why: random configurations, reconfigurations (counters removed while they carry bookings),
/// releases, open and close, and times across the cut-off and the end of the window.
/// </summary>
public sealed class SlotFitAgreementTests
{
    private static readonly SlotKey Key = SlotKey.Create("HUB1", new DateTimeOffset(2030, 5, 6, 10, 0, 0, TimeSpan.Zero));
    private static readonly long End = Key.End.ToUnixTimeMilliseconds();
    private static readonly string[] Zones = ["z1", "z2", "z3", "z4"];
    private static readonly string[] Capabilities = ["bulky", "chilled"];
    private static readonly string[] Measures = ["items", "totes"];

    [Fact]
    public void Slot_fit_and_the_engine_agree_on_fit_and_reason()
    {
        var seen = new Dictionary<RejectReason, int>();
        var compared = 0;
        for (var seed = 0; seed < 300; seed++)
        {
            var random = new Random(seed);
            var slot = new MemorySlot();
            var now = End - 3 * 3600_000L;
            var configured = slot.Send(Command(c => c.Configure = new ConfigureSlot { Config = RandomConfig(random, now) }), now);
            Assert.True(configured.Reply.Accepted, configured.Reply.Detail);
            var snapshot = configured.Snapshot!;
            var booked = new List<string>();
            for (var step = 0; step < 60; step++)
            {
                now += random.Next(0, 300_000);
                SlotCommand command;
                var roll = random.Next(100);
                if (roll < 70)
                {
                    var zone = Zones[random.Next(Zones.Length)];
                    var needs = RandomNeeds(random);
                    var fit = SlotFit.Evaluate(snapshot, zone, needs, DateTimeOffset.FromUnixTimeMilliseconds(now));
                    var id = $"r{seed}-{step}";
                    var decision = slot.Send(Command(c => c.Reserve = new Reserve { ReservationId = id, OrderId = "o-" + id, Zone = zone, Needs = needs }), now);
                    var reply = decision.Reply;
                    var context = $"seed {seed} step {step}: engine {reply.Accepted} {reply.Reason} ({reply.Detail}), fit {fit.CanTake} {fit.Reason}";
                    Assert.True(reply.Accepted == fit.CanTake, context);
                    if (!reply.Accepted) Assert.True(reply.Reason == fit.Reason, context);
                    else booked.Add(id);
                    compared++;
                    seen[reply.Reason] = seen.GetValueOrDefault(reply.Reason) + 1;
                    snapshot = decision.Snapshot ?? snapshot;
                    continue;
                }
                if (roll < 85 && booked.Count > 0)
                {
                    var id = booked[random.Next(booked.Count)];
                    booked.Remove(id);
                    command = Command(c => c.Release = new Release { ReservationId = id });
                }
                else if (roll < 93)
                {
                    command = Command(c => c.Configure = new ConfigureSlot { Config = RandomConfig(random, now) });
                }
                else
                {
                    var open = random.Next(3) > 0;
                    command = Command(c => c.SetOpen = new SetSlotOpen { Open = open });
                }
                snapshot = slot.Send(command, now).Snapshot ?? snapshot;
            }
        }
        // Every outcome was reached, so the agreement was tested on each.
        RejectReason[] outcomes = [RejectReason.Unspecified, RejectReason.SlotClosed, RejectReason.PastCutoff, RejectReason.ZoneRestricted,
            RejectReason.ZoneFull, RejectReason.NoEligibleFleet, RejectReason.SlotFull];
        Assert.All(outcomes, r => Assert.True(seen.GetValueOrDefault(r) > 0, $"{r} never happened in {compared} reserves"));
    }

    private static SlotConfig RandomConfig(Random random, long now)
    {
        var config = new SlotConfig
        {
            Open = random.Next(5) > 0,
            CutoffUnixMs = random.Next(3) == 0 ? 0 : now + random.Next(0, 4 * 3600_000),
        };
        var fleetCount = random.Next(1, 4);
        for (var i = 0; i < fleetCount; i++)
        {
            // Names from a small set, so a reconfiguration often removes a counter that carries bookings.
            var name = $"f{random.Next(4)}";
            if (config.Fleet.Any(f => f.Name == name)) continue;
            var fleet = new FleetCounterConfig { Name = name, CapacityOrders = random.Next(0, 5) };
            fleet.Zones.AddRange(Zones.Where(_ => random.Next(3) == 0));
            fleet.Carries.AddRange(Capabilities.Where(_ => random.Next(2) == 0));
            config.Fleet.Add(fleet);
        }
        foreach (var measure in Measures.Where(_ => random.Next(2) == 0))
            config.Shared.Add(new SharedCounterConfig { Name = "s-" + measure, Measure = measure, Capacity = random.Next(0, 20) });
        foreach (var zone in Zones.Where(_ => random.Next(3) == 0))
        {
            var rule = new ZoneRule { Zone = zone, Closed = random.Next(4) == 0 };
            if (random.Next(2) == 0) rule.MaxOrders = random.Next(0, 4);
            config.ZoneRules.Add(rule);
        }
        return config;
    }

    private static OrderNeeds RandomNeeds(Random random)
    {
        var needs = new OrderNeeds();
        foreach (var measure in Measures.Where(_ => random.Next(2) == 0)) needs.Quantities[measure] = random.Next(0, 8);
        needs.Requires.AddRange(Capabilities.Where(_ => random.Next(4) == 0));
        return needs;
    }

    private static SlotCommand Command(Action<SlotCommand> body)
    {
        var command = new SlotCommand { CommandId = Guid.NewGuid().ToString("N"), Slot = Key.ToString(), ReplyPartition = 0 };
        body(command);
        return command;
    }

    /// <summary>One slot's stored state and records in memory, written as the processor writes them (no holds here).</summary>
    private sealed class MemorySlot : ISlotReader
    {
        private readonly Dictionary<string, ReservationRecord> _records = [];
        private SlotState? _state;
        private long _offset;

        public Decision Send(SlotCommand command, long at)
        {
            var decision = SlotDecisions.Decide(_state?.Clone(), this, command, at, 0, _offset++);
            foreach (var record in decision.Reservations) _records[record.ReservationId] = record.Clone();
            if (decision.State is not null) _state = decision.State;
            return decision;
        }

        public ReservationRecord? Reservation(string reservationId) => _records.GetValueOrDefault(reservationId);
        public IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs) => [];
        public IEnumerable<ExpiredHold> ExpiredFrom(long offset) => [];
    }
}
