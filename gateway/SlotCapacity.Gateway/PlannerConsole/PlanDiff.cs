using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// A plan's dry run: what applying it would change, slot by slot, against the slots as the
/// availability view shows them now, and which slots would be over-committed (more used than the new
/// capacity: bookings are kept, new ones refused). Nothing is sent.
/// </summary>
public static class PlanDiff
{
    /// <param name="Source">Where the slot was read, e.g. "plan.csv line 7".</param>
    /// <param name="Change">"new", "changed" or "unchanged".</param>
    public sealed record SlotDiff(string Slot, string Source, string Change, IReadOnlyList<string> Changes, IReadOnlyList<string> OverCommitted);

    public sealed record Preview(IReadOnlyList<SlotDiff> Slots, int New, int Changed, int Unchanged, int OverCommitted, IReadOnlyList<string> Problems);

    /// <summary>The plan's problems (each naming where in the file), or its diff when it has none.</summary>
    public static Preview Compute(ApplyPlanRequest plan, IReadOnlyList<string> sources, Func<string, AvailabilitySnapshot?> current, DateTimeOffset now)
    {
        var problems = new List<string>();
        if (plan.Slots.Count == 0) problems.Add("the plan has no slot");
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        var diffs = new List<SlotDiff>();
        for (var i = 0; i < plan.Slots.Count; i++)
        {
            var source = i < sources.Count ? sources[i] : $"slots[{i}]";
            var check = RequestValidation.Configure(plan.Slots[i], now, out var key);
            if (check.Any)
            {
                problems.Add($"{source}: {check}");
                continue;
            }
            var slot = key.ToString();
            if (!seen.TryAdd(slot, source))
            {
                problems.Add($"{source}: slot {slot} is already in the plan at {seen[slot]}");
                continue;
            }
            diffs.Add(Slot(slot, source, plan.Slots[i].Config, current(slot)));
        }
        return problems.Count > 0
            ? new Preview([], 0, 0, 0, 0, problems)
            : new Preview(diffs, diffs.Count(d => d.Change == "new"), diffs.Count(d => d.Change == "changed"),
                diffs.Count(d => d.Change == "unchanged"), diffs.Count(d => d.OverCommitted.Count > 0), []);
    }

    private static SlotDiff Slot(string slot, string source, SlotConfig config, AvailabilitySnapshot? now)
    {
        var changes = new List<string>();
        var over = new List<string>();
        if (now is null)
        {
            changes.Add($"new slot: {(config.Open ? "open" : "closed")}, fleet {string.Join(", ", config.Fleet.Select(f => $"{f.Name} {f.CapacityOrders}"))}");
            return new SlotDiff(slot, source, "new", changes, over);
        }
        if (now.Open != config.Open) changes.Add(config.Open ? "opens" : "closes");
        if (now.CutoffUnixMs != config.CutoffUnixMs) changes.Add($"cut-off {Time(now.CutoffUnixMs)} -> {Time(config.CutoffUnixMs)}");
        foreach (var fleet in config.Fleet)
        {
            var was = now.Fleet.FirstOrDefault(f => f.Name == fleet.Name);
            if (was is null) changes.Add($"fleet {fleet.Name}: added, {fleet.CapacityOrders} orders");
            else
            {
                if (was.CapacityOrders != fleet.CapacityOrders) changes.Add($"fleet {fleet.Name}: {was.CapacityOrders} -> {fleet.CapacityOrders} orders");
                if (!was.Zones.SequenceEqual(fleet.Zones)) changes.Add($"fleet {fleet.Name}: zones {List(was.Zones)} -> {List(fleet.Zones)}");
                if (!was.Carries.SequenceEqual(fleet.Carries)) changes.Add($"fleet {fleet.Name}: carries {List(was.Carries)} -> {List(fleet.Carries)}");
                if (was.UsedOrders > fleet.CapacityOrders) over.Add($"fleet {fleet.Name}: {was.UsedOrders} used > {fleet.CapacityOrders}");
            }
        }
        foreach (var was in now.Fleet.Where(f => config.Fleet.All(c => c.Name != f.Name)))
        {
            changes.Add($"fleet {was.Name}: removed");
            if (was.UsedOrders > 0) over.Add($"fleet {was.Name}: removed with {was.UsedOrders} orders on it");
        }
        foreach (var shared in config.Shared)
        {
            var was = now.Shared.FirstOrDefault(s => s.Name == shared.Name);
            if (was is null) changes.Add($"shared {shared.Name}: added, {shared.Capacity} {shared.Measure}");
            else
            {
                if (was.Capacity != shared.Capacity) changes.Add($"shared {shared.Name}: {was.Capacity} -> {shared.Capacity} {shared.Measure}");
                if (was.Measure != shared.Measure) changes.Add($"shared {shared.Name}: measure {was.Measure} -> {shared.Measure}");
                if (was.Used > shared.Capacity) over.Add($"shared {shared.Name}: {was.Used} used > {shared.Capacity}");
            }
        }
        foreach (var was in now.Shared.Where(s => config.Shared.All(c => c.Name != s.Name))) changes.Add($"shared {was.Name}: removed");
        foreach (var rule in config.ZoneRules)
        {
            var was = now.Zones.FirstOrDefault(z => z.Zone == rule.Zone);
            var before = was is null ? "none" : Rule(was.Closed, was.HasMaxOrders ? was.MaxOrders : null);
            var after = Rule(rule.Closed, rule.HasMaxOrders ? rule.MaxOrders : null);
            if (before != after) changes.Add($"zone {rule.Zone}: {before} -> {after}");
            if (was is not null && rule.HasMaxOrders && was.UsedOrders > rule.MaxOrders) over.Add($"zone {rule.Zone}: {was.UsedOrders} used > max {rule.MaxOrders}");
        }
        foreach (var was in now.Zones.Where(z => (z.Closed || z.HasMaxOrders) && config.ZoneRules.All(r => r.Zone != z.Zone)))
            changes.Add($"zone {was.Zone}: {Rule(was.Closed, was.HasMaxOrders ? was.MaxOrders : null)} -> none");
        return new SlotDiff(slot, source, changes.Count == 0 ? "unchanged" : "changed", changes, over);
    }

    private static string Rule(bool closed, long? max) => closed ? "closed" : max is { } m ? $"max {m}" : "none";

    private static string List(IEnumerable<string> items) => items.Any() ? string.Join("+", items) : "any";

    private static string Time(long unixMs) => unixMs == 0 ? "none" : DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToString("yyyy-MM-dd HH:mm'Z'");
}
