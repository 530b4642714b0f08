namespace SlotCapacity.Load;

public enum OperationKind { Reserve, Read, Confirm, Release }

/// <summary>What an order needs: picking items and totes, and capabilities the vehicle must have.</summary>
public sealed record Needs(long Items, long Totes, IReadOnlyList<string> Requires);

/// <summary>
/// A reservation attempt. Sequence numbers the calls of a run (the system target spreads them over
/// its gateways with it). HoldSeconds 0 books at once; otherwise Then says what the customer does
/// with the hold.
/// </summary>
public sealed record ReserveOperation(string ReservationId, string OrderId, PlannedSlot Slot, string Zone, Needs Needs,
    long Sequence = 0, int HoldSeconds = 0, CheckoutStep? Then = null);

/// <summary>An availability read: which slots of a hub, in a window, can take this order.</summary>
public sealed record ReadOperation(string Hub, DateTimeOffset From, DateTimeOffset To, string Zone, Needs Needs, long Sequence = 0);

public enum FollowUp { Confirm, Release, LetExpire }

/// <summary>What a customer does with a hold, and how long after the hold was granted.</summary>
public sealed record CheckoutStep(FollowUp Action, TimeSpan After);

/// <summary>
/// The checkout shape: every reserve is a hold; most customers pay and confirm a few seconds
/// later, some cancel (release), some walk away and let the hold expire. Production holds last a
/// few minutes; a run's holds are shorter so that expiry happens, and is audited, within the run.
/// </summary>
public sealed record CheckoutShape(int HoldSeconds = 20, double ConfirmShare = 0.8, double ReleaseShare = 0.1,
    double ConfirmAfterMinSeconds = 2, double ConfirmAfterMaxSeconds = 5,
    double ReleaseAfterMinSeconds = 1, double ReleaseAfterMaxSeconds = 3)
{
    public static readonly CheckoutShape Default = new();
}

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
    private readonly CheckoutShape? _checkout;
    private long _sequence;
    private long _reads;

    /// <param name="checkout">null: every reserve books at once; else the hold/confirm/release mix.</param>
    public Workload(SlotPlan plan, int seed, string idPrefix, CheckoutShape? checkout = null)
    {
        _plan = plan;
        _checkout = checkout;
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
        var zone = PickZone();
        var needs = PickNeeds();
        return _checkout is null
            ? new ReserveOperation($"{_idPrefix}-r{n}", $"{_idPrefix}-o{n}", slot, zone, needs, n)
            : new ReserveOperation($"{_idPrefix}-r{n}", $"{_idPrefix}-o{n}", slot, zone, needs, n, _checkout.HoldSeconds, PickStep(_checkout));
    }

    private CheckoutStep PickStep(CheckoutShape shape)
    {
        var x = _random.NextDouble();
        TimeSpan Between(double min, double max) => TimeSpan.FromSeconds(min + _random.NextDouble() * (max - min));
        if (x < shape.ConfirmShare) return new CheckoutStep(FollowUp.Confirm, Between(shape.ConfirmAfterMinSeconds, shape.ConfirmAfterMaxSeconds));
        if (x < shape.ConfirmShare + shape.ReleaseShare) return new CheckoutStep(FollowUp.Release, Between(shape.ReleaseAfterMinSeconds, shape.ReleaseAfterMaxSeconds));
        return new CheckoutStep(FollowUp.LetExpire, TimeSpan.FromSeconds(shape.HoldSeconds));
    }

    public ReadOperation NextRead()
    {
        var slot = PickSlot();
        // Checkout shows the customer a day of slots for their hub.
        var day = new DateTimeOffset(slot.Key.Start.UtcDateTime.Date, TimeSpan.Zero);
        return new ReadOperation(slot.Key.Hub, day, day.AddDays(1), PickZone(), PickNeeds(), Interlocked.Increment(ref _reads));
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
