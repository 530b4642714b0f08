using System.Globalization;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Reads a plan (many slots' configurations) from CSV or JSON. CSV: one row per slot,
/// <c>hub,date,start,open,cutoff_minutes,fleet,shared,zone_rules</c>, times UTC:
/// <list type="bullet">
/// <item>fleet: <c>name=capacity[@zone+zone][/carry+carry]</c>, several separated by <c>;</c></item>
/// <item>shared: <c>name:measure=capacity</c> or <c>measure=capacity</c> (name = measure), <c>;</c>-separated</item>
/// <item>zone_rules: <c>zone:closed</c> or <c>zone:max=N</c>, <c>;</c>-separated</item>
/// <item>cutoff_minutes: reservations close this many minutes before the slot starts (0 = none)</item>
/// </list>
/// JSON: an ApplyPlanRequest in protobuf JSON (<c>{"slots":[{"slot":{"hub":..,"start":..},"config":{..}}]}</c>).
/// </summary>
public static class PlanFile
{
    public const string Header = "hub,date,start,open,cutoff_minutes,fleet,shared,zone_rules";

    /// <summary>A plan file problem, naming the file, line and column.</summary>
    public sealed class PlanFileException(string message) : Exception(message);

    public static ApplyPlanRequest Read(string path)
    {
        var text = File.ReadAllText(path);
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? ParseJson(path, text) : ParseCsv(path, text);
    }

    public static ApplyPlanRequest ParseJson(string name, string text) => ParseJson(name, text, out _);

    /// <param name="sources">Where each slot of the plan was read, e.g. "plan.json slots[3]".</param>
    public static ApplyPlanRequest ParseJson(string name, string text, out List<string> sources)
    {
        try
        {
            var plan = JsonParser.Default.Parse<ApplyPlanRequest>(text);
            sources = plan.Slots.Select((_, i) => $"{name} slots[{i}]").ToList();
            return plan;
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or InvalidJsonException or FormatException)
        {
            throw new PlanFileException($"{name}: not an ApplyPlanRequest in protobuf JSON: {e.Message}");
        }
    }

    public static ApplyPlanRequest ParseCsv(string name, string text) => ParseCsv(name, text, out _);

    /// <summary>Reads every row; a file with bad rows is refused with one line per bad row, so a planner
    /// fixes them all at once.</summary>
    /// <param name="sources">Where each slot of the plan was read, e.g. "plan.csv line 7".</param>
    public static ApplyPlanRequest ParseCsv(string name, string text, out List<string> sources)
    {
        var plan = new ApplyPlanRequest();
        var problems = new List<string>();
        sources = [];
        var lineNumber = 0;
        var sawHeader = false;
        foreach (var raw in text.Split('\n'))
        {
            lineNumber++;
            var line = raw.TrimEnd('\r').Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (!sawHeader)
            {
                if (!string.Equals(line.Replace(" ", "", StringComparison.Ordinal), Header, StringComparison.OrdinalIgnoreCase))
                    throw new PlanFileException($"{name} line {lineNumber}: expected the header '{Header}'");
                sawHeader = true;
                continue;
            }
            var cells = line.Split(',');
            if (cells.Length != 8)
            {
                problems.Add($"{name} line {lineNumber}: {cells.Length} columns, expected 8 ({Header})");
                continue;
            }
            var source = $"{name} line {lineNumber}";
            string Where(string column) => $"{source}, column {column}";
            try
            {
                plan.Slots.Add(Row(cells.Select(c => c.Trim()).ToArray(), Where));
                sources.Add(source);
            }
            catch (PlanFileException e)
            {
                problems.Add(e.Message);
            }
        }
        if (!sawHeader) throw new PlanFileException($"{name}: empty plan (no header '{Header}')");
        if (problems.Count > 0) throw new PlanFileException(string.Join("\n", problems));
        return plan;
    }

    private static ConfigureSlotRequest Row(string[] c, Func<string, string> where)
    {
        if (!DateOnly.TryParseExact(c[1], "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
            throw new PlanFileException($"{where("date")}: '{c[1]}' is not yyyy-MM-dd");
        if (!TimeOnly.TryParseExact(c[2], "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
            throw new PlanFileException($"{where("start")}: '{c[2]}' is not HH:mm (UTC)");
        if (!bool.TryParse(c[3], out var open))
            throw new PlanFileException($"{where("open")}: '{c[3]}' is not true or false");
        if (!int.TryParse(c[4], NumberStyles.None, CultureInfo.InvariantCulture, out var cutoffMinutes))
            throw new PlanFileException($"{where("cutoff_minutes")}: '{c[4]}' is not a whole number of minutes");
        var start = new DateTimeOffset(date.ToDateTime(time), TimeSpan.Zero);
        var config = new SlotConfig
        {
            Open = open,
            CutoffUnixMs = cutoffMinutes > 0 ? start.AddMinutes(-cutoffMinutes).ToUnixTimeMilliseconds() : 0,
        };
        foreach (var item in Items(c[5]))
        {
            var (head, carries) = Split(item, '/');
            var (nameAndCapacity, zones) = Split(head, '@');
            var (fleetName, capacity) = Split(nameAndCapacity, '=');
            var fleet = new FleetCounterConfig { Name = fleetName, CapacityOrders = Number(capacity, where("fleet"), item) };
            if (zones is not null) fleet.Zones.AddRange(zones.Split('+', StringSplitOptions.TrimEntries));
            if (carries is not null) fleet.Carries.AddRange(carries.Split('+', StringSplitOptions.TrimEntries));
            config.Fleet.Add(fleet);
        }
        foreach (var item in Items(c[6]))
        {
            var (names, capacity) = Split(item, '=');
            var (sharedName, measure) = Split(names, ':');
            config.Shared.Add(new SharedCounterConfig { Name = sharedName, Measure = measure ?? sharedName, Capacity = Number(capacity, where("shared"), item) });
        }
        foreach (var item in Items(c[7]))
        {
            var (zone, rule) = Split(item, ':');
            var zoneRule = new ZoneRule { Zone = zone };
            if (rule == "closed") zoneRule.Closed = true;
            else if (rule is not null && rule.StartsWith("max=", StringComparison.Ordinal)) zoneRule.MaxOrders = Number(rule[4..], where("zone_rules"), item);
            else throw new PlanFileException($"{where("zone_rules")}: '{item}' is neither zone:closed nor zone:max=N");
            config.ZoneRules.Add(zoneRule);
        }
        return new ConfigureSlotRequest { Slot = new SlotId { Hub = c[0], Start = Timestamp.FromDateTimeOffset(start) }, Config = config };
    }

    private static IEnumerable<string> Items(string cell) => cell.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static (string, string?) Split(string text, char separator)
    {
        var at = text.IndexOf(separator, StringComparison.Ordinal);
        return at < 0 ? (text.Trim(), null) : (text[..at].Trim(), text[(at + 1)..].Trim());
    }

    private static long Number(string? text, string where, string item) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new PlanFileException($"{where}: '{item}' needs a whole number after '=' (or 'max=')");

    /// <summary>A sample plan: 5 hubs x <paramref name="days"/> days x 7 two-hour windows (08:00-22:00 UTC),
    /// vans that carry bulky and chilled orders, cargo bikes for the centre, picking and tote limits, rush-hour zone rules.</summary>
    public static string SampleCsv(DateOnly firstDay, int days)
    {
        string[] hubs = ["LON1", "LON2", "MAN1", "BHX1", "LDS1"];
        var text = new StringBuilder();
        text.AppendLine("# Slot plan: one row per slot, times UTC. See gateway/README.md for the column syntax.");
        text.AppendLine(Header);
        for (var h = 0; h < hubs.Length; h++)
        {
            for (var d = 0; d < days; d++)
            {
                var date = firstDay.AddDays(d);
                var weekend = date.DayOfWeek is DayOfWeek.Saturday or DayOfWeek.Sunday;
                for (var hour = 8; hour <= 20; hour += 2)
                {
                    var rush = hour is 8 or 18;
                    var vans = (weekend ? 30 : 40) - 2 * h;
                    var bikes = rush ? 12 : 20;
                    var fleet = $"vans-north={vans}@north+central+outer/bulky+chilled;vans-south={vans - 5}@south+central+outer/bulky+chilled;bikes-central={bikes}@central/chilled";
                    var shared = $"picking:items={(vans * 2 + bikes) * 40};totes={(vans * 2 + bikes) * 4}";
                    var zones = (rush, hubs[h].StartsWith("LON", StringComparison.Ordinal)) switch
                    {
                        (true, true) => "outer:closed;central:max=15",
                        (true, false) => "outer:max=10",
                        _ => "",
                    };
                    var open = !(date.DayOfWeek == DayOfWeek.Sunday && hour == 20);
                    text.AppendLine(CultureInfo.InvariantCulture, $"{hubs[h]},{date:yyyy-MM-dd},{hour:00}:00,{(open ? "true" : "false")},720,{fleet},{shared},{zones}");
                }
            }
        }
        return text.ToString();
    }
}
