using System.Collections.Concurrent;
using HdrHistogram;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load;

public sealed record ScenarioOptions(
    TimeSpan Duration,
    TimeSpan Warmup,
    TimeSpan Step,
    int Seed = 1,
    int Hubs = 24,
    int Days = 3,
    double MaxMultiplier = 100,
    StepLimits? Limits = null,
    RunnerOptions? Runner = null,
    double DesignReserveP99Ms = 50,
    double DesignReadP99Ms = 5);

/// <summary>
/// Runs one scenario against each target in turn (same plan shape, same seed, same arrival
/// process), audits each, and writes the scenario's results directory.
/// </summary>
public sealed class ScenarioRunner(Scenario scenario, ScenarioOptions options, TextWriter console)
{
    private readonly StepLimits _limits = options.Limits ?? StepLimits.Default;

    public IReadOnlyList<double> Multipliers =>
        scenario.Multipliers.Where(m => m <= options.MaxMultiplier).DefaultIfEmpty(scenario.Multipliers[0]).ToList();

    private TimeSpan StepLength => scenario.Ramped ? options.Step : options.Duration;

    public async Task<ScenarioReport> RunAsync(IReadOnlyList<Func<ITarget>> targets, string resultsDir, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var machine = MachineInfo.Current();
        var dir = Path.Combine(resultsDir, scenario.Name);
        var histogramDir = Path.Combine(dir, "histograms");
        if (Directory.Exists(histogramDir)) Directory.Delete(histogramDir, recursive: true);
        Directory.CreateDirectory(histogramDir);
        var reports = new List<TargetReport>();
        foreach (var make in targets)
        {
            ct.ThrowIfCancellationRequested();
            reports.Add(await RunTargetAsync(make, histogramDir, ct));
        }
        var report = new ScenarioReport(ScenarioReport.SchemaName, scenario.Name, scenario.Description, started, DateTimeOffset.UtcNow,
            machine,
            new RunSettings(options.Duration.TotalSeconds, options.Warmup.TotalSeconds, StepLength.TotalSeconds,
                Scenario.NominalReservesPerSecond, Scenario.NominalReadsPerSecond, Multipliers, options.Seed,
                _limits.P99Ms, _limits.ErrorRate, options.DesignReserveP99Ms, options.DesignReadP99Ms),
            reports, ScenarioReport.Compare(reports));
        ReportWriter.Write(report, dir);
        console.WriteLine();
        console.WriteLine($"results: {Path.Combine(dir, "summary.md")}, {Path.Combine(dir, "report.json")}");
        return report;
    }

    private SlotPlan MakePlan(string runId)
    {
        var firstDay = DateTimeOffset.UtcNow.Date.AddDays(3);
        var seconds = options.Warmup.TotalSeconds * Multipliers[0] + Multipliers.Sum() * StepLength.TotalSeconds;
        var expectedReserves = (long)(Scenario.NominalReservesPerSecond * seconds);
        return scenario.HotSlot
            ? SlotPlan.Hot(runId, firstDay, expectedReserves)
            : SlotPlan.Spread(runId, firstDay, options.Hubs, options.Days, expectedReserves);
    }

    private async Task<TargetReport> RunTargetAsync(Func<ITarget> make, string histogramDir, CancellationToken ct)
    {
        var runId = Guid.NewGuid().ToString("N")[..8];
        var plan = MakePlan(runId);
        ITarget? target = null;
        var steps = new List<StepReport>();
        OpenLoopRunner? runner = null;
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        try
        {
            target = make();
            console.WriteLine($"\n### {scenario.Name} on {target.Name}: preparing {plan.Slots.Count} slots (run id {runId})");
            await target.PrepareAsync(plan, ct);
            console.WriteLine($"### {target.Name} at {target.Endpoint}: {target.Notes}");
            var workload = new Workload(plan, options.Seed, $"load-{runId}");
            runner = new OpenLoopRunner(target, workload, accepted, console, options.Runner);
            var multipliers = Multipliers;
            if (options.Warmup > TimeSpan.Zero)
            {
                await runner.RunPhaseAsync("warm-up", multipliers[0], Scenario.NominalReservesPerSecond * multipliers[0],
                    Scenario.NominalReadsPerSecond * multipliers[0], options.Warmup, measured: false, ct);
            }
            foreach (var m in multipliers)
            {
                var label = $"{m}x";
                var phase = await runner.RunPhaseAsync(label, m, Scenario.NominalReservesPerSecond * m,
                    Scenario.NominalReadsPerSecond * m, StepLength, measured: true, ct);
                var oversells = Audit.OversellsInAccepts(plan, accepted.ToArray());
                var step = Judge(phase, oversells.Count, WriteHistograms(histogramDir, target.Name, label, phase));
                steps.Add(step);
                console.WriteLine(step.Held
                    ? $"  step {label}: held"
                    : $"  step {label}: NOT held ({step.FailedBecause})");
                if (scenario.Ramped && !step.Held) break;
            }
            console.WriteLine($"### {target.Name}: audit (reading back what it recorded) ...");
            var acceptedList = accepted.ToArray();
            var readback = await target.ReadBackAsync(plan, acceptedList, ct);
            var audit = Audit.Check(plan, acceptedList, readback);
            console.WriteLine(audit.Passed
                ? $"### {target.Name}: audit passed: {audit.AcceptedByHarness} accepts, all recorded, no counter above capacity"
                : $"### {target.Name}: AUDIT FAILED: {audit.Violations.Count} violations, first: {audit.Violations[0]}");
            return new TargetReport(target.Name, target.Endpoint, target.Notes, plan.Slots.Count, plan.Hubs.Count,
                plan.Slots.Sum(s => s.FleetCapacity), steps, steps.LastOrDefault(s => s.Held), audit, runner.Timeline, null);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            var name = target?.Name ?? "target";
            console.WriteLine($"### {name}: FAILED: {e.Message}");
            return new TargetReport(name, target?.Endpoint ?? "", target?.Notes ?? "", plan.Slots.Count, plan.Hubs.Count,
                plan.Slots.Sum(s => s.FleetCapacity), steps, steps.LastOrDefault(s => s.Held), null,
                runner?.Timeline ?? [], $"{e.GetType().Name}: {e.Message}");
        }
        finally
        {
            if (target is not null) await target.DisposeAsync();
        }
    }

    private const double HarnessLagWarningMs = 10;

    private StepReport Judge(PhaseResult phase, int oversells, IReadOnlyDictionary<string, string> histograms)
    {
        var reserve = OperationReport.From(phase.Reserve, phase.Seconds);
        var read = OperationReport.From(phase.Read, phase.Seconds);
        var count = phase.Reserve.Count + phase.Read.Count;
        var errorRate = count == 0 ? 0 : (double)(phase.Reserve.Failures + phase.Read.Failures) / count;
        var reasons = new List<string>();
        if (reserve.LatencyMs.P99 > _limits.P99Ms) reasons.Add($"reserve p99 {reserve.LatencyMs.P99:0.0} ms > {_limits.P99Ms:0} ms");
        if (read.LatencyMs.P99 > _limits.P99Ms) reasons.Add($"read p99 {read.LatencyMs.P99:0.0} ms > {_limits.P99Ms:0} ms");
        if (errorRate > _limits.ErrorRate) reasons.Add($"errors {errorRate:P2} > {_limits.ErrorRate:P1}");
        if (oversells > 0) reasons.Add($"{oversells} oversold counters");
        // The generator shares the cores with what it measures: say so when it was itself late.
        if (reasons.Count > 0 && phase.DispatchLag.P99 > HarnessLagWarningMs)
            reasons.Add($"load generator itself {phase.DispatchLag.P99:0} ms late at p99, so part of this limit is the harness's");
        var designLatency = reasons.Count == 0
            && reserve.LatencyMs.P99 < options.DesignReserveP99Ms
            && (phase.Read.Count == 0 || read.LatencyMs.P99 < options.DesignReadP99Ms);
        return new StepReport(phase.Label, phase.Multiplier, phase.ReservesPerSecondTarget, phase.ReadsPerSecondTarget,
            phase.Seconds, phase.Scheduled, reserve, read, phase.DispatchLag, reasons.Count == 0,
            reasons.Count == 0 ? null : string.Join("; ", reasons), designLatency, histograms);
    }

    private static Dictionary<string, string> WriteHistograms(string dir, string target, string label, PhaseResult phase)
    {
        var files = new Dictionary<string, string>();
        foreach (var (op, tally) in new[] { ("reserve", phase.Reserve), ("read", phase.Read) })
        {
            var name = $"{target}-{label}-{op}.hgrm";
            using var writer = new StreamWriter(Path.Combine(dir, name));
            // Recorded in microseconds; the file is in milliseconds like the rest of the report.
            tally.Latency.OutputPercentileDistribution(writer, percentileTicksPerHalfDistance: 5, outputValueUnitScalingRatio: 1000.0);
            files[op] = $"histograms/{name}";
        }
        return files;
    }
}
