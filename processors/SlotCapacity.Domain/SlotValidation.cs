using System.Globalization;
using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

/// <summary>What is wrong with one field of a command or request; <see cref="Field"/> is its path
/// in the request ("config.fleet[0].name"), so a caller can map it without parsing the text.</summary>
public sealed record FieldProblem(string Field, string Problem)
{
    public override string ToString() => $"{Field}: {Problem}";

    /// <summary>The problems in one line, "field: problem; field: problem".</summary>
    public static string Join(IEnumerable<FieldProblem> problems) => string.Join("; ", problems);
}

/// <summary>
/// The rules a slot configuration and an order must meet, in one place: the gateway checks its
/// requests with them before anything is written, and the engine checks every command with them
/// again (a command may come from any producer). Pure: the time is a parameter (the engine's is
/// the command's timestamp).
/// <list type="bullet">
/// <item>Names (hub, zone, fleet and shared counter, measure, capability): 1 to
/// <see cref="MaxNameLength"/> characters from <see cref="NameCharacters"/>.</item>
/// <item>Ids (reservation, order): 1 to <see cref="MaxIdLength"/> characters, no whitespace or control characters.</item>
/// <item>Sizes are bounded: see the Max constants.</item>
/// </list>
/// </summary>
public static class SlotValidation
{
    public const int MaxNameLength = 64;
    public const int MaxIdLength = 128;
    /// <summary>The characters a name may use, besides ASCII letters and digits.</summary>
    public const string NameCharacters = "A-Z a-z 0-9 . _ -";
    public const int MaxFleetCounters = 64;
    public const int MaxSharedCounters = 16;
    public const int MaxZoneRules = 512;
    /// <summary>Zones one fleet counter lists.</summary>
    public const int MaxZonesPerCounter = 512;
    /// <summary>Capabilities a fleet counter carries, or an order requires.</summary>
    public const int MaxCapabilities = 16;
    /// <summary>Measures one order draws on (keys of <c>quantities</c>).</summary>
    public const int MaxQuantities = 16;
    /// <summary>Units of one measure in one order.</summary>
    public const long MaxUnits = 1_000_000_000;
    /// <summary>Capacity of a counter; with <see cref="MaxUnits"/>, no sum of used and wanted overflows.</summary>
    public const long MaxCapacity = 1_000_000_000_000;

    /// <summary>Null when <paramref name="value"/> is a valid name, else what is wrong.</summary>
    public static string? NameProblem(string? value)
    {
        if (string.IsNullOrEmpty(value)) return "is empty";
        if (value.Length > MaxNameLength) return $"is longer than {MaxNameLength} characters";
        foreach (var c in value)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
                return $"'{Printable(value)}' has a character outside {NameCharacters}";
        return null;
    }

    /// <summary>Null when <paramref name="value"/> is a valid id, else what is wrong.</summary>
    public static string? IdProblem(string? value)
    {
        if (string.IsNullOrEmpty(value)) return "is empty";
        if (value.Length > MaxIdLength) return $"is longer than {MaxIdLength} characters";
        if (value.Any(char.IsWhiteSpace) || value.Any(char.IsControl)) return "contains whitespace or control characters";
        return null;
    }

    /// <summary>
    /// A ConfigureSlot's config for <paramref name="slot"/> (null when the request's slot is itself
    /// invalid: the config is still checked) at <paramref name="nowUnixMs"/>. The <c>open</c> field
    /// is required: a config without it used to be applied closed, and every reservation then
    /// answered SLOT_CLOSED.
    /// </summary>
    public static List<FieldProblem> Config(SlotKey? slot, SlotConfig? config, long nowUnixMs, string field = "config")
    {
        var problems = new List<FieldProblem>();
        if (slot is { } key)
        {
            Name(problems, "slot.hub", key.Hub);
            if (key.End.ToUnixTimeMilliseconds() <= nowUnixMs)
                problems.Add(new("slot", $"the slot's window ended at {Iso(key.End.ToUnixTimeMilliseconds())}; an ended slot cannot be configured"));
        }
        if (config is null)
        {
            problems.Add(new(field, "is missing"));
            return problems;
        }
        if (!config.HasOpen)
            problems.Add(new(field + ".open", "is not set: set true to take reservations, or false to configure the slot closed"));

        if (config.Fleet.Count == 0) problems.Add(new(field + ".fleet", "has no fleet counter"));
        Count(problems, field + ".fleet", config.Fleet.Count, MaxFleetCounters, "fleet counters");
        Unique(problems, field + ".fleet", config.Fleet.Select(f => f.Name));
        for (var i = 0; i < config.Fleet.Count && i < MaxFleetCounters; i++)
        {
            var fleet = config.Fleet[i];
            var at = $"{field}.fleet[{i}]";
            Name(problems, at + ".name", fleet.Name);
            Capacity(problems, at + ".capacity_orders", fleet.CapacityOrders);
            Names(problems, at + ".zones", fleet.Zones, MaxZonesPerCounter, "zones");
            Names(problems, at + ".carries", fleet.Carries, MaxCapabilities, "capabilities");
        }
        Count(problems, field + ".shared", config.Shared.Count, MaxSharedCounters, "shared counters");
        Unique(problems, field + ".shared", config.Shared.Select(s => s.Name));
        for (var i = 0; i < config.Shared.Count && i < MaxSharedCounters; i++)
        {
            var shared = config.Shared[i];
            var at = $"{field}.shared[{i}]";
            Name(problems, at + ".name", shared.Name);
            Name(problems, at + ".measure", shared.Measure);
            Capacity(problems, at + ".capacity", shared.Capacity);
        }
        Count(problems, field + ".zone_rules", config.ZoneRules.Count, MaxZoneRules, "zone rules");
        Unique(problems, field + ".zone_rules", config.ZoneRules.Select(z => z.Zone));
        for (var i = 0; i < config.ZoneRules.Count && i < MaxZoneRules; i++)
        {
            var rule = config.ZoneRules[i];
            var at = $"{field}.zone_rules[{i}]";
            Name(problems, at + ".zone", rule.Zone);
            if (rule.HasMaxOrders) Capacity(problems, at + ".max_orders", rule.MaxOrders);
        }
        if (config.CutoffUnixMs < 0) problems.Add(new(field + ".cutoff_unix_ms", $"{config.CutoffUnixMs} is negative (0 = no cut-off)"));
        return problems;
    }

    /// <summary>What an order asks of a slot, for a Reserve or an availability question.</summary>
    public static void Order(List<FieldProblem> problems, string zoneField, string zone, string needsField, OrderNeeds? needs)
    {
        ArgumentNullException.ThrowIfNull(problems);
        Name(problems, zoneField, zone);
        Needs(problems, needsField, needs);
    }

    public static void Needs(List<FieldProblem> problems, string field, OrderNeeds? needs)
    {
        ArgumentNullException.ThrowIfNull(problems);
        if (needs is null) return;
        Count(problems, field + ".quantities", needs.Quantities.Count, MaxQuantities, "measures");
        if (needs.Quantities.Count <= MaxQuantities)
            foreach (var (measure, units) in needs.Quantities)
            {
                if (NameProblem(measure) is { } problem) problems.Add(new(field + ".quantities", $"measure {problem}"));
                else if (units < 0) problems.Add(new($"{field}.quantities[{measure}]", $"{units} is negative"));
                else if (units > MaxUnits) problems.Add(new($"{field}.quantities[{measure}]", $"{units} is more than {MaxUnits}"));
            }
        Names(problems, field + ".requires", needs.Requires, MaxCapabilities, "capabilities");
    }

    /// <summary>A Reserve command decided at <paramref name="atUnixMs"/>.</summary>
    public static List<FieldProblem> Reserve(Reserve reserve, long atUnixMs)
    {
        ArgumentNullException.ThrowIfNull(reserve);
        var problems = new List<FieldProblem>();
        Id(problems, "reservation_id", reserve.ReservationId);
        Order(problems, "zone", reserve.Zone, "needs", reserve.Needs);
        if (reserve.HoldExpiresUnixMs < 0) problems.Add(new("hold_expires_unix_ms", "must not be negative"));
        else if (reserve.HoldExpiresUnixMs > 0 && reserve.HoldExpiresUnixMs <= atUnixMs)
            problems.Add(new("hold_expires_unix_ms", $"{Iso(reserve.HoldExpiresUnixMs)} is not after the command time {Iso(atUnixMs)}"));
        return problems;
    }

    public static void Id(List<FieldProblem> problems, string field, string value)
    {
        ArgumentNullException.ThrowIfNull(problems);
        if (IdProblem(value) is { } problem) problems.Add(new(field, problem));
    }

    public static void Name(List<FieldProblem> problems, string field, string value)
    {
        ArgumentNullException.ThrowIfNull(problems);
        if (NameProblem(value) is { } problem) problems.Add(new(field, problem));
    }

    /// <summary>A unix-ms instant as an ISO 8601 UTC time, for the text of a problem or a reject.</summary>
    public static string Iso(long unixMs) =>
        DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static void Names(List<FieldProblem> problems, string field, IList<string> names, int max, string what)
    {
        Count(problems, field, names.Count, max, what);
        for (var i = 0; i < names.Count && i < max; i++) Name(problems, $"{field}[{i}]", names[i]);
    }

    private static void Count(List<FieldProblem> problems, string field, int count, int max, string what)
    {
        if (count > max) problems.Add(new(field, $"has {count} {what}, more than {max}"));
    }

    private static void Capacity(List<FieldProblem> problems, string field, long value)
    {
        if (value < 0) problems.Add(new(field, $"{value} is negative"));
        else if (value > MaxCapacity) problems.Add(new(field, $"{value} is more than {MaxCapacity}"));
    }

    private static void Unique(List<FieldProblem> problems, string field, IEnumerable<string> names)
    {
        foreach (var duplicate in names.Where(n => n.Length > 0).GroupBy(n => n, StringComparer.Ordinal).Where(g => g.Count() > 1))
            problems.Add(new(field, $"name '{Printable(duplicate.Key)}' appears more than once"));
    }

    /// <summary>A name as it may be echoed in a message: control characters escaped, at most 64 characters.</summary>
    private static string Printable(string value)
    {
        var text = string.Concat(value.Take(MaxNameLength).Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
        return value.Length > MaxNameLength ? text + "..." : text;
    }
}
