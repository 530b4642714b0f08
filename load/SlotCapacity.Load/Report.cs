using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SlotCapacity.Load;

/// <summary>The machine a run was measured on.</summary>
/// <param name="LoadAverage">/proc/loadavg (1, 5, 15 min) when the scenario started: the tail of the
/// previous scenario and any other work competing for the cores the run measures on.</param>
public sealed record MachineInfo(int Cores, long MemoryMib, string CpuModel, string Os, string Dotnet, string? GitCommit, string LoadAverage)
{
    public static MachineInfo Current()
    {
        long memoryMib = 0;
        string cpu = "unknown", load = "unknown";
        try
        {
            var mem = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            if (mem is not null) memoryMib = long.Parse(mem.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
            var model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (model is not null) cpu = model[(model.IndexOf(':') + 1)..].Trim();
            load = string.Join(" / ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            // Not Linux: cores and OS are still known.
        }
        return new MachineInfo(Environment.ProcessorCount, memoryMib, cpu,
            System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription, ReadGitCommit(), load);
    }

    private static string? ReadGitCommit()
    {
        try
        {
            var psi = new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi);
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit(5000);
            return p.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}

public sealed record RunSettings(
    double DurationSeconds,
    double WarmupSeconds,
    double StepSeconds,
    double NominalReservesPerSecond,
    double NominalReadsPerSecond,
    IReadOnlyList<double> Multipliers,
    int Seed,
    double P99LimitMs,
    double ErrorRateLimit,
    double DesignReserveP99Ms,
    double DesignReadP99Ms,
    CheckoutShape? Checkout = null,
    double CostSeconds = 0);

public sealed record OperationReport(
    long Count,
    long Accepted,
    IReadOnlyDictionary<string, long> Rejected,
    IReadOnlyDictionary<string, long> Errors,
    double ErrorRate,
    double PerSecond,
    LatencySummary LatencyMs,
    long Retried = 0,
    long Lost = 0,
    IReadOnlyDictionary<string, long>? RetriedBecause = null)
{
    public static OperationReport From(OperationTally t, double seconds) => new(
        t.Count, t.Accepted, new SortedDictionary<string, long>(t.Rejects), new SortedDictionary<string, long>(t.Errors),
        Math.Round(t.ErrorRate, 6), seconds > 0 ? Math.Round(t.Count / seconds, 1) : 0, Round(t.Summary()), t.Retried, t.Lost,
        new SortedDictionary<string, long>(t.Retries));

    private static LatencySummary Round(LatencySummary s) => new(
        Math.Round(s.P50, 3), Math.Round(s.P90, 3), Math.Round(s.P99, 3), Math.Round(s.P999, 3), Math.Round(s.Max, 3), Math.Round(s.Mean, 3));
}

public sealed record StepReport(
    string Label,
    double Multiplier,
    double ReservesPerSecondTarget,
    double ReadsPerSecondTarget,
    double Seconds,
    long Scheduled,
    OperationReport Reserve,
    OperationReport Read,
    LatencySummary DispatchLagMs,
    bool Held,
    string? FailedBecause,
    bool MeetsDesignLatency,
    IReadOnlyDictionary<string, string> HistogramFiles,
    CpuReport? Cpu = null,
    OperationReport? Confirm = null,
    OperationReport? Release = null);

public sealed record TargetReport(
    string Target,
    string Endpoint,
    string Notes,
    int Slots,
    int Hubs,
    long SlotCapacityOrders,
    IReadOnlyList<StepReport> Steps,
    StepReport? HighestHeld,
    AuditResult? Audit,
    IReadOnlyList<TimelinePoint> Timeline,
    string? Error,
    IdleCost? Idle = null,
    CostSplit? Cost = null,
    string? NotRun = null)
{
    /// <summary>Passed its audit, or was not run because the scenario does not apply to it.</summary>
    public bool Passed => NotRun is not null || (Error is null && Audit is { Passed: true });
}

/// <summary>This system divided by a peer, on the step both ran at their highest held rate (or the only step).</summary>
public sealed record Comparison(
    string Peer,
    string Step,
    double? HeldReservesPerSecondRatio,
    double? ReserveP99Ratio,
    double? ReadP99Ratio,
    double? ReserveP50Ratio);

public sealed record ScenarioReport(
    string Schema,
    string Scenario,
    string Description,
    DateTimeOffset StartedUtc,
    DateTimeOffset FinishedUtc,
    MachineInfo Machine,
    RunSettings Settings,
    IReadOnlyList<TargetReport> Targets,
    IReadOnlyList<Comparison> Comparisons)
{
    public const string SchemaName = "slot-capacity-load-report/1";
    public bool Passed => Targets.All(t => t.Passed);

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static List<Comparison> Compare(IReadOnlyList<TargetReport> targets)
    {
        var system = targets.FirstOrDefault(t => t.Target == "system" && t.Error is null);
        var comparisons = new List<Comparison>();
        if (system is null) return comparisons;
        var s = system.HighestHeld ?? (system.Steps.Count > 0 ? system.Steps[^1] : null);
        if (s is null) return comparisons;
        foreach (var peer in targets.Where(t => t.Target != "system" && t.Error is null))
        {
            var p = peer.HighestHeld ?? (peer.Steps.Count > 0 ? peer.Steps[^1] : null);
            if (p is null) continue;
            comparisons.Add(new Comparison(peer.Target, $"system {s.Label} vs {peer.Target} {p.Label}",
                Ratio(system.HighestHeld?.Reserve.PerSecond, peer.HighestHeld?.Reserve.PerSecond),
                Ratio(s.Reserve.LatencyMs.P99, p.Reserve.LatencyMs.P99),
                Ratio(s.Read.LatencyMs.P99, p.Read.LatencyMs.P99),
                Ratio(s.Reserve.LatencyMs.P50, p.Reserve.LatencyMs.P50)));
        }
        return comparisons;
    }

    private static double? Ratio(double? a, double? b) =>
        a is null || b is null || b.Value <= 0 ? null : Math.Round(a.Value / b.Value, 3);
}
