using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load;

public sealed record AuditResult(
    bool Passed,
    string Source,
    long AcceptedByHarness,
    long RecordedByTarget,
    long MissingAccepted,
    int CountersChecked,
    int OversoldCounters,
    long OversoldUnits,
    IReadOnlyList<string> Violations);

/// <summary>
/// Checks a run against the capacities the harness configured, from two sides that must agree:
/// what the target told the harness (every accept it answered), and what the target recorded
/// (its counters and its record of accepted reservations). Capacities come from the plan, never
/// from the target, so a target that lost or rewrote its configuration cannot hide an oversell.
/// </summary>
public static class Audit
{
    private const int MaxListedViolations = 50;

    public static AuditResult Check(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, Readback readback)
    {
        var violations = new List<string>();
        var oversold = new Dictionary<(string Slot, CounterKind Kind, string Name), long>();

        void Oversell(string slot, CounterKind kind, string name, long used, long capacity, string seenBy)
        {
            var key = (slot, kind, name);
            var over = used - capacity;
            if (!oversold.TryGetValue(key, out var previous) || previous < over) oversold[key] = over;
            violations.Add($"oversell ({seenBy}): slot {slot} {kind.ToString().ToLowerInvariant()} counter '{name}' used {used} > capacity {capacity}");
        }

        CheckAccepts(plan, accepted, Oversell, violations);

        // Side 2: what the target recorded.
        var countersChecked = 0;
        foreach (var reading in readback.Counters)
        {
            if (!plan.ById.TryGetValue(reading.Slot, out var slot)) continue;
            var capacity = Capacity(slot, reading.Kind, reading.Name);
            if (capacity is null) continue;
            countersChecked++;
            var used = Math.Max(reading.Used, reading.Peak);
            if (used > capacity.Value) Oversell(slot.Id, reading.Kind, reading.Name, used, capacity.Value, readback.Source);
        }

        long missing = 0;
        foreach (var a in accepted)
        {
            if (readback.RecordedReservationIds.Contains(a.ReservationId)) continue;
            missing++;
            violations.Add($"lost: reservation {a.ReservationId} in slot {a.Slot} was answered accepted but is not in {readback.Source}");
        }

        violations.AddRange(readback.Problems.Select(p => $"readback incomplete: {p}"));

        var listed = violations.Count > MaxListedViolations
            ? [.. violations.Take(MaxListedViolations), $"... and {violations.Count - MaxListedViolations} more"]
            : violations;
        return new AuditResult(
            Passed: violations.Count == 0,
            Source: readback.Source,
            AcceptedByHarness: accepted.Count,
            RecordedByTarget: readback.RecordedReservationIds.Count,
            MissingAccepted: missing,
            CountersChecked: countersChecked,
            OversoldCounters: oversold.Count,
            OversoldUnits: oversold.Values.Sum(),
            Violations: listed);
    }

    /// <summary>Oversells visible from the accepts alone (no readback): used after every step of a ramp.</summary>
    public static IReadOnlyList<string> OversellsInAccepts(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted)
    {
        var violations = new List<string>();
        CheckAccepts(plan, accepted,
            (slot, kind, name, used, capacity, seenBy) => violations.Add(
                $"oversell ({seenBy}): slot {slot} {kind.ToString().ToLowerInvariant()} counter '{name}' used {used} > capacity {capacity}"),
            violations);
        return violations;
    }

    private delegate void OversellSink(string slot, CounterKind kind, string name, long used, long capacity, string seenBy);

    private static void CheckAccepts(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, OversellSink oversell, List<string> violations)
    {
        foreach (var group in accepted.GroupBy(a => a.Slot))
        {
            if (!plan.ById.TryGetValue(group.Key, out var slot))
            {
                violations.Add($"accepted reservation in slot {group.Key}, which the plan does not have");
                continue;
            }
            var config = slot.Config;
            var orders = group.Count();
            if (orders > slot.FleetCapacity)
                oversell(slot.Id, CounterKind.Fleet, "(all fleet)", orders, slot.FleetCapacity, "harness accepts");
            foreach (var fleet in config.Fleet)
            {
                var n = group.LongCount(a => a.FleetCounter == fleet.Name);
                if (n > fleet.CapacityOrders) oversell(slot.Id, CounterKind.Fleet, fleet.Name, n, fleet.CapacityOrders, "harness accepts");
            }
            foreach (var shared in config.Shared)
            {
                var units = group.Sum(a => Units(a, shared.Measure));
                if (units > shared.Capacity) oversell(slot.Id, CounterKind.Shared, shared.Name, units, shared.Capacity, "harness accepts");
            }
            foreach (var rule in config.ZoneRules)
            {
                var n = group.LongCount(a => a.Zone == rule.Zone);
                if (rule.Closed && n > 0)
                    oversell(slot.Id, CounterKind.Zone, rule.Zone, n, 0, "harness accepts, zone closed");
                else if (rule.HasMaxOrders && n > rule.MaxOrders)
                    oversell(slot.Id, CounterKind.Zone, rule.Zone, n, rule.MaxOrders, "harness accepts");
            }
        }
    }

    public static long Units(AcceptedReservation a, string measure) => measure switch
    {
        "items" => a.Items,
        "totes" => a.Totes,
        _ => 0,
    };

    private static long? Capacity(PlannedSlot slot, CounterKind kind, string name) => kind switch
    {
        CounterKind.Fleet => slot.Config.Fleet.FirstOrDefault(f => f.Name == name)?.CapacityOrders,
        CounterKind.Shared => slot.Config.Shared.FirstOrDefault(s => s.Name == name)?.Capacity,
        CounterKind.Zone => slot.Config.ZoneRules.FirstOrDefault(z => z.Zone == name) is { } rule
            ? rule.Closed ? 0 : rule.HasMaxOrders ? rule.MaxOrders : null
            : null,
        _ => null,
    };
}
