namespace SlotCapacity.Load;

public enum OperationKind { Reserve, Read }

/// <summary>What an order needs: picking items and totes, and capabilities the vehicle must have.</summary>
public sealed record Needs(long Items, long Totes, IReadOnlyList<string> Requires);

public sealed record ReserveOperation(string ReservationId, string OrderId, PlannedSlot Slot, string Zone, Needs Needs);

/// <summary>An availability read: which slots of a hub, in a window, can take this order.</summary>
public sealed record ReadOperation(string Hub, DateTimeOffset From, DateTimeOffset To, string Zone, Needs Needs);

/// <summary>
/// Generates the operations of a run, deterministically from a seed: slots drawn by popularity,
/// zones and order sizes drawn from fixed distributions. Single-threaded (the dispatcher calls it).
/// </summary>
public sealed class Workload
{
    private readonly SlotPlan _plan;
    private readonly Random _random;
    private readonly double[] _cumulative;
    private readonly string _idPrefix;
    private long _sequence;

    public Workload(SlotPlan plan, int seed, string idPrefix)
    {
        _plan = plan;
        _random = new Random(seed);
        _idPrefix = idPrefix;
        _cumulative = new double[plan.Slots.Count];
        double sum = 0;
        for (var i = 0; i < plan.Slots.Count; i++)
        {
            sum += plan.Slots[i].Popularity;
            _cumulative[i] = sum;
        }
    }

    public SlotPlan Plan => _plan;

    public ReserveOperation NextReserve()
    {
        var slot = PickSlot();
        var n = Interlocked.Increment(ref _sequence);
        return new ReserveOperation($"{_idPrefix}-r{n}", $"{_idPrefix}-o{n}", slot, PickZone(), PickNeeds());
    }

    public ReadOperation NextRead()
    {
        var slot = PickSlot();
        // Checkout shows the customer a day of slots for their hub.
        var day = new DateTimeOffset(slot.Key.Start.UtcDateTime.Date, TimeSpan.Zero);
        return new ReadOperation(slot.Key.Hub, day, day.AddDays(1), PickZone(), PickNeeds());
    }

    private PlannedSlot PickSlot()
    {
        var x = _random.NextDouble() * _cumulative[^1];
        var i = Array.BinarySearch(_cumulative, x);
        if (i < 0) i = ~i;
        return _plan.Slots[Math.Min(i, _plan.Slots.Count - 1)];
    }

    // Central zones are denser.
    private static readonly double[] ZoneWeights = [0.25, 0.22, 0.18, 0.15, 0.12, 0.08];

    private string PickZone()
    {
        var x = _random.NextDouble();
        for (var i = 0; i < ZoneWeights.Length; i++)
        {
            x -= ZoneWeights[i];
            if (x <= 0) return SlotPlan.Zones[i];
        }
        return SlotPlan.Zones[^1];
    }

    private static readonly string[] NoRequirements = [];
    private static readonly string[] Chilled = ["chilled"];
    private static readonly string[] Bulky = ["bulky"];

    private Needs PickNeeds()
    {
        var items = 10 + _random.Next(0, 71);
        var totes = (items + 14) / 15;
        var r = _random.NextDouble();
        var requires = r < 0.08 ? Bulky : r < 0.6 ? Chilled : NoRequirements;
        return new Needs(items, totes, requires);
    }
}
