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
    double DesignReadP99Ms = 5,
    double IdleSeconds = 3,
    double CostSeconds = 10,
    CheckoutShape? Checkout = null)
{
    /// <summary>The hold/confirm/release mix of the checkout scenarios.</summary>
    public CheckoutShape CheckoutShape => Checkout ?? CheckoutShape.Default;
}

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

    /// <summary>Fixed-rate scenarios end with a reserves-only and a reads-only phase that split the CPU per kind of call.</summary>
    private bool CostPhases => !scenario.Ramped && options.CostSeconds > 0;

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
                _limits.P99Ms, _limits.ErrorRate, options.DesignReserveP99Ms, options.DesignReadP99Ms,
                scenario.Checkout ? options.CheckoutShape : null, CostPhases ? options.CostSeconds : 0),
            reports, ScenarioReport.Compare(reports));
        ReportWriter.Write(report, dir);
        console.WriteLine();
        console.WriteLine($"results: {Path.Combine(dir, "summary.md")}, {Path.Combine(dir, "report.json")}");
        return report;
    }

    /// <summary>
    /// The warm-up climbs to the first step's rate: a quarter of it, half, then all, each for the
    /// warm-up's length. Started cold at the full rate, a system's JIT tiering and thread pools were
    /// still growing while the first measured seconds ran (`tenx`: reserve p99 1-4 s in its first 10
    /// s measured, 50-200 ms afterwards), so the run measured a cold start rather than the rate.
    /// </summary>
    public static readonly double[] WarmupClimb = [0.25, 0.5, 1.0];

    private SlotPlan MakePlan(string runId)
    {
        var firstDay = DateTimeOffset.UtcNow.Date.AddDays(3);
        var seconds = options.Warmup.TotalSeconds * WarmupClimb.Sum() * Multipliers[0] + Multipliers.Sum() * StepLength.TotalSeconds
            + (CostPhases ? options.CostSeconds * Multipliers[^1] : 0);
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
        IdleCost? idle = null;
        CostSplit? cost = null;
        var accepted = new ConcurrentQueue<AcceptedReservation>();
        try
        {
            target = make();
            if (scenario.Checkout && target is not IHoldingTarget)
            {
                var why = "does not model holds (confirm, release, expiry): the checkout scenarios run against the system only";
                console.WriteLine($"\n### {scenario.Name} on {target.Name}: not run, {why}");
                return new TargetReport(target.Name, target.Endpoint, target.Notes, plan.Slots.Count, plan.Hubs.Count,
                    plan.Slots.Sum(s => s.FleetCapacity), [], null, null, [], null, NotRun: why);
            }
            console.WriteLine($"\n### {scenario.Name} on {target.Name}: preparing {plan.Slots.Count} slots (run id {runId})");
            await target.PrepareAsync(plan, ct);
            console.WriteLine($"### {target.Name} at {target.Endpoint}: {target.Notes}");
            var meter = new CpuMeter(target.Processes);
            if (options.IdleSeconds > 0)
            {
                idle = await meter.IdleAsync(TimeSpan.FromSeconds(options.IdleSeconds), ct);
                console.WriteLine($"### {target.Name}: idle {idle.TargetCores:0.000} cores over {idle.Seconds:0.0} s, the quietest stretch, from {idle.QuietestFromSeconds:0.0} s after preparing " +
                                  $"({string.Join(", ", idle.Processes.Select(p => $"{p.Name} {p.Cores:0.000}"))}); harness {idle.HarnessCores:0.000}");
            }
            var workload = new Workload(plan, options.Seed, $"load-{runId}", scenario.Checkout ? options.CheckoutShape : null);
            runner = new OpenLoopRunner(target, workload, accepted, console, options.Runner);
            var multipliers = Multipliers;
            if (options.Warmup > TimeSpan.Zero)
            {
                foreach (var fraction in WarmupClimb)
                {
                    var m = multipliers[0] * fraction;
                    await runner.RunPhaseAsync($"warm-up {m:0.##}x", m, Scenario.NominalReservesPerSecond * m,
                        Scenario.NominalReadsPerSecond * m, options.Warmup, measured: false, ct);
                }
            }
            foreach (var m in multipliers)
            {
                var label = $"{m}x";
                var before = meter.Sample();
                var phase = await runner.RunPhaseAsync(label, m, Scenario.NominalReservesPerSecond * m,
                    Scenario.NominalReadsPerSecond * m, StepLength, measured: true, ct);
                var cpu = CpuReport.Between(before, meter.Sample(), phase.Reserve.Count + phase.Read.Count + phase.Confirm.Count + phase.Release.Count);
                var oversells = Audit.OversellsInAccepts(plan, Audit.StillLive(accepted.ToArray(), runner.Fates));
                var step = Judge(phase, oversells.Count, WriteHistograms(histogramDir, target.Name, label, phase), cpu);
                steps.Add(step);
                console.WriteLine(step.Held
                    ? $"  step {label}: held; CPU {cpu.TargetCores:0.00} cores in the target ({cpu.TargetUsPerCall:0} µs per call), harness {cpu.Harness.Cores:0.00} ({cpu.HarnessUsPerCall:0} µs per call)"
                    : $"  step {label}: NOT held ({step.FailedBecause})");
                if (scenario.Ramped && !step.Held) break;
            }
            if (CostPhases)
                cost = await SplitCostAsync(runner, meter, multipliers[^1], idle?.TargetCores, ct);
            await SettleAsync(target, runner, ct);
            console.WriteLine($"### {target.Name}: audit (reading back what it recorded) ...");
            var audit = await AuditAsync(target, plan, accepted, runner, ct);
            console.WriteLine(audit.Passed
                ? $"### {target.Name}: audit passed: {audit.AcceptedByHarness} accepts, all recorded, no counter above capacity" +
                  (audit.Phantoms is { } p ? $"; {p.LiveByTarget} live at the end, {p.LiveByCaller} the caller holds, {p.UncertainByCaller} uncertain: no phantom booking" : "")
                : $"### {target.Name}: AUDIT FAILED: {audit.Violations.Count} violations, first: {audit.Violations[0]}");
            return new TargetReport(target.Name, target.Endpoint, target.Notes, plan.Slots.Count, plan.Hubs.Count,
                plan.Slots.Sum(s => s.FleetCapacity), steps, steps.LastOrDefault(s => s.Held), audit, runner.Timeline, null, idle, cost);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            var name = target?.Name ?? "target";
            console.WriteLine($"### {name}: FAILED: {e.Message}");
            return new TargetReport(name, target?.Endpoint ?? "", target?.Notes ?? "", plan.Slots.Count, plan.Hubs.Count,
                plan.Slots.Sum(s => s.FleetCapacity), steps, steps.LastOrDefault(s => s.Held), null,
                runner?.Timeline ?? [], $"{e.GetType().Name}: {e.Message}", idle, cost);
        }
        finally
        {
            if (target is not null) await target.DisposeAsync();
        }
    }

    /// <summary>
    /// Reserves alone, then reads alone, at the rates of the last step: the CPU of each phase over
    /// its calls is the cost of one reserve (its confirm/release included in the checkout scenarios)
    /// and of one read. Idle CPU is included, as it is in production.
    /// </summary>
    private async Task<CostSplit> SplitCostAsync(OpenLoopRunner runner, CpuMeter meter, double m, double? idleCores, CancellationToken ct)
    {
        var length = TimeSpan.FromSeconds(options.CostSeconds);
        var before = meter.Sample();
        var reserves = await runner.RunPhaseAsync("cost: reserves only", m, Scenario.NominalReservesPerSecond * m, 0, length, measured: true, ct);
        var middle = meter.Sample();
        var reads = await runner.RunPhaseAsync("cost: reads only", m, 0, Scenario.NominalReadsPerSecond * m, length, measured: true, ct);
        var reserveCalls = reserves.Reserve.Count;
        var split = CpuMeter.Split(CpuReport.Between(before, middle, reserveCalls), reserveCalls,
            CpuReport.Between(middle, meter.Sample(), reads.Read.Count), reads.Read.Count, idleCores);
        console.WriteLine($"  CPU per call: {split.TargetUsPerReserve:0} µs per reserve, {split.TargetUsPerRead:0} µs per read in the target " +
                          $"({split.TargetUsPerReserveAboveIdle:0} / {split.TargetUsPerReadAboveIdle:0} above idle); harness {split.HarnessUsPerReserve:0} / {split.HarnessUsPerRead:0} µs");
        return split;
    }

    /// <summary>
    /// Before the audit, holds left to expire must have expired (their expiry plus the engine's
    /// 1 s expiry tick and a margin), bounded by the hold length.
    /// </summary>
    private async Task SettleAsync(ITarget target, OpenLoopRunner runner, CancellationToken ct)
    {
        if (!scenario.Checkout || !runner.Fates.Values.Any(f => f == CallerFate.LeftToExpire)) return;
        var wait = TimeSpan.FromSeconds(options.CheckoutShape.HoldSeconds + 3);
        console.WriteLine($"### {target.Name}: waiting {wait.TotalSeconds:0} s for the holds left alone to expire before the audit");
        await Task.Delay(wait, ct);
    }

    /// <summary>
    /// Reads back and audits; while live bookings and the caller's view still differ (an abandon or
    /// an expiry not applied yet), reads again a bounded number of times.
    /// </summary>
    private async Task<AuditResult> AuditAsync(ITarget target, SlotPlan plan, ConcurrentQueue<AcceptedReservation> accepted,
        OpenLoopRunner runner, CancellationToken ct)
    {
        const int rounds = 3;
        var acceptedList = accepted.ToArray();
        var fates = new Dictionary<string, CallerFate>(runner.Fates, StringComparer.Ordinal);
        for (var round = 1; ; round++)
        {
            var readback = await target.ReadBackAsync(plan, acceptedList, ct);
            var audit = Audit.Check(plan, acceptedList, readback, fates);
            if (audit.Phantoms is not { Phantoms: > 0 } and not { MissingLive: > 0 } || round == rounds) return audit;
            console.WriteLine($"### {target.Name}: {audit.Phantoms.Phantoms} phantom and {audit.Phantoms.MissingLive} missing bookings on read {round}; reading again in 3 s");
            await Task.Delay(TimeSpan.FromSeconds(3), ct);
        }
    }

    private const double HarnessLagWarningMs = 10;

    private StepReport Judge(PhaseResult phase, int oversells, IReadOnlyDictionary<string, string> histograms, CpuReport? cpu = null)
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
            reasons.Count == 0 ? null : string.Join("; ", reasons), designLatency, histograms, cpu,
            phase.Confirm.Count > 0 ? OperationReport.From(phase.Confirm, phase.Seconds) : null,
            phase.Release.Count > 0 ? OperationReport.From(phase.Release, phase.Seconds) : null);
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
