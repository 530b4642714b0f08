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
    IReadOnlyList<string> Violations,
    PhantomAudit? Phantoms = null);

/// <summary>
/// Live bookings at the end of a run, after holds expired and abandons were applied, against what
/// the caller was told. A phantom holds capacity though the caller was told it does not (refused,
/// UNAVAILABLE, released, left to expire), or never got an answer; a missing one was told live
/// (booked, or held and confirmed) but holds nothing.
/// </summary>
public sealed record PhantomAudit(
    long LiveByTarget,
    long LiveByCaller,
    long UncertainByCaller,
    long Phantoms,
    long PhantomsAfterNoAnswer,
    long MissingLive,
    int SlotsChecked,
    int SlotsMismatched);

/// <summary>
/// Checks a run against the capacities the harness configured, from two sides that must agree:
/// what the target told the harness (every accept it answered), and what the target recorded
/// (its counters and its record of accepted reservations), and at the end the reservations still
/// holding capacity against what the caller was told (phantom bookings). Capacities come from the
/// plan, never from the target, so a target that lost or rewrote its configuration cannot hide an oversell.
/// </summary>
public static class Audit
{
    private const int MaxListedViolations = 50;

    /// <param name="fates">what the caller was told about each reservation (null: every accept is a booking, still live)</param>
    public static AuditResult Check(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, Readback readback,
        IReadOnlyDictionary<string, CallerFate>? fates = null)
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

        CheckAccepts(plan, StillLive(accepted, fates), Oversell, violations);

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

        var phantoms = readback.LiveReservationSlots is { } live ? CheckLive(plan, accepted, fates, live, violations) : null;

        // First: an incomplete readback (e.g. no Kafka bootstrap) explains the accepts it reports missing.
        violations.InsertRange(0, readback.Problems.Select(p => $"readback incomplete: {p}"));

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
            Violations: listed,
            Phantoms: phantoms);
    }

    /// <summary>The accepts the caller still holds at the end: all of them, unless fates say one was released, expired or refused.</summary>
    public static IReadOnlyCollection<AcceptedReservation> StillLive(IReadOnlyCollection<AcceptedReservation> accepted,
        IReadOnlyDictionary<string, CallerFate>? fates) =>
        fates is null ? accepted : accepted.Where(a => fates.GetValueOrDefault(a.ReservationId, CallerFate.Live) == CallerFate.Live).ToList();

    private static PhantomAudit CheckLive(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted,
        IReadOnlyDictionary<string, CallerFate>? fates, IReadOnlyDictionary<string, string> live, List<string> violations)
    {
        var slotOf = accepted.ToDictionary(a => a.ReservationId, a => a.Slot, StringComparer.Ordinal);
        var callerLive = StillLive(accepted, fates).Select(a => a.ReservationId).ToHashSet(StringComparer.Ordinal);
        var mismatched = new HashSet<string>(StringComparer.Ordinal);
        long phantoms = 0, afterNoAnswer = 0, missing = 0;
        var phantomsByTold = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (id, slot) in live.Where(l => plan.ById.ContainsKey(l.Value)).OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            if (callerLive.Contains(id)) continue;
            var fate = fates?.GetValueOrDefault(id);
            if (fate is CallerFate.Uncertain or CallerFate.Held) continue;
            phantoms++;
            mismatched.Add(slot);
            if (fate == CallerFate.NoAnswer) afterNoAnswer++;
            var told = fate switch
            {
                CallerFate.NoAnswer => "never learned whether it holds it (no definite answer)",
                CallerFate.Released => "released it",
                CallerFate.LeftToExpire => "let its hold expire",
                CallerFate.ConfirmRefused => "was refused the confirm",
                _ => "was told it was not accepted",
            };
            phantomsByTold[told] = phantomsByTold.GetValueOrDefault(told) + 1;
            violations.Add($"phantom booking: reservation {id} holds capacity in slot {slot}, but the caller {told}");
        }
        foreach (var id in callerLive.Order(StringComparer.Ordinal))
        {
            if (live.ContainsKey(id)) continue;
            missing++;
            mismatched.Add(slotOf[id]);
            violations.Add($"lost booking: reservation {id} in slot {slotOf[id]} was answered booked or confirmed but holds no capacity at the end");
        }
        if (phantoms > 0)
            violations.Insert(0, "phantom bookings by what the caller was told: " + string.Join(", ",
                phantomsByTold.OrderByDescending(t => t.Value).Select(t => $"{t.Key}: {t.Value}")));
        var liveInPlan = live.Count(l => plan.ById.ContainsKey(l.Value));
        // No definite answer to the reserve, or to the confirm/release that followed it.
        var uncertain = fates?.Count(f => f.Value is CallerFate.Uncertain or CallerFate.NoAnswer or CallerFate.Held) ?? 0;
        return new PhantomAudit(liveInPlan, callerLive.Count, uncertain, phantoms, afterNoAnswer, missing, plan.Slots.Count, mismatched.Count);
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
