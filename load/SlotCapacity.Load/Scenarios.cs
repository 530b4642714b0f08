namespace SlotCapacity.Load;

/// <summary>
/// One named production scenario. Rates are multiples of nominal (50 reservation attempts/s and
/// 500 availability reads/s). A ramped scenario runs its multipliers as steps, in order, and stops
/// at the first step that breaks a limit (p99, error rate, oversell).
/// </summary>
public sealed record Scenario(
    string Name,
    string Description,
    bool HotSlot,
    IReadOnlyList<double> Multipliers,
    bool Ramped,
    bool Checkout = false)
{
    public const double NominalReservesPerSecond = 50;
    public const double NominalReadsPerSecond = 500;

    public static readonly IReadOnlyList<double> RampMultipliers =
        [1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 100];

    public static readonly IReadOnlyList<Scenario> All =
    [
        new("nominal", "today's traffic: many hubs and slots, mostly availability reads", false, [1], false),
        new("tenx", "the same shape at 10x nominal: the success criterion", false, [10], false),
        new("breaking-point", "the same shape ramped until p99 > 100 ms, errors > 0.1% or oversell", false, RampMultipliers, true),
        new("hot-slot", "every customer targets one slot, at 1x nominal", true, [1], false),
        new("hot-slot-breaking-point", "one slot, ramped until p99 > 100 ms, errors > 0.1% or oversell", true, RampMultipliers, true),
        new("checkout", "checkout's real shape at 1x: every reserve a hold, most confirmed a few seconds later, some released, some left to expire", false, [1], false, Checkout: true),
        new("checkout-hot-slot", "the checkout shape at 1x with every customer on one slot", true, [1], false, Checkout: true),
    ];

    public static Scenario Find(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException(
            $"unknown scenario '{name}': choose one of {string.Join(", ", All.Select(s => s.Name))}");
}

/// <summary>When a step of a run counts as held.</summary>
public sealed record StepLimits(double P99Ms = 100, double ErrorRate = 0.001)
{
    public static readonly StepLimits Default = new();
}
