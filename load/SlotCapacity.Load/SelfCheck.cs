using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SlotCapacity.Kafka;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load;

/// <summary>One rate of the self-check: how late the harness started its calls, and what it cost.</summary>
public sealed record SelfCheckStep(
    double Multiplier,
    double OfferedCallsPerSecond,
    double AnsweredCallsPerSecond,
    LatencySummary LatenessMs,
    LatencySummary ReserveMs,
    LatencySummary ReadMs,
    long Errors,
    CpuReport Cpu,
    bool WithinLateness,
    IReadOnlyDictionary<string, long> ErrorsByKind,
    IReadOnlyDictionary<string, long> RetriedBecause);

public sealed record SelfCheckReport(
    string Schema,
    DateTimeOffset StartedUtc,
    MachineInfo Machine,
    string Channels,
    double StepSeconds,
    double LatenessLimitMs,
    IReadOnlyList<SelfCheckStep> Steps,
    double? HighestMultiplierWithinLateness)
{
    public const string SchemaName = "slot-capacity-load-self-check/1";
}

/// <summary>
/// Drives the trivial echo server (a child process, so that its CPU is not the harness's) through
/// the system target's own client code at rising multiples of nominal, and finds the highest rate
/// at which the harness starts its calls less than 5 ms late at p99. The answer is the harness's ceiling on this machine: a
/// run against a target above that rate measures the harness, not the target.
/// </summary>
public sealed class SelfCheck(IReadOnlyList<double> multipliers, TimeSpan step, ChannelShape channels, TextWriter console)
{
    public static readonly IReadOnlyList<double> DefaultMultipliers = [1, 5, 10, 20, 30, 40];
    public const double LatenessLimitMs = 5;

    public async Task<SelfCheckReport> RunAsync(CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var ports = new[] { LocalProcess.FreeLoopbackPort(), LocalProcess.FreeLoopbackPort() };
        using var server = StartChild(ports);
        try
        {
            foreach (var port in ports)
                await LocalProcess.WaitForPortAsync(port, TimeSpan.FromSeconds(30), () => "the echo server did not start", ct);
            var gateways = ports.Select(p => new Uri($"http://127.0.0.1:{p}")).ToList();
            var serverProcess = new WatchedProcess("echo-server", server.Id);
            await using var target = new SystemTarget(gateways, null, new TopicNames(""), channels,
                () => new SystemProcesses.Found([serverProcess], "child process"),
                // The echo server checks nothing, but the harness pays for presenting a token as it does against the system.
                new SystemTarget.GatewayTokens("self-check-token", "self-check-token"));
            var plan = SlotPlan.Spread("self", DateTimeOffset.UtcNow.Date.AddDays(3), 24, 3, 10_000);
            await target.PrepareAsync(plan, ct);
            var meter = new CpuMeter(target.Processes);
            var runner = new OpenLoopRunner(target, new Workload(plan, 1, "self"), new ConcurrentQueue<AcceptedReservation>(), console);
            // Long and fast enough for the JIT's tiering to settle (5 s was not, on a busy machine:
            // the first step's CPU came out twice its steady state), so the first step does not pay for it.
            const double warmup = 5;
            await runner.RunPhaseAsync("warm-up", warmup, Scenario.NominalReservesPerSecond * warmup,
                Scenario.NominalReadsPerSecond * warmup, TimeSpan.FromSeconds(10), measured: false, ct);
            var steps = new List<SelfCheckStep>();
            foreach (var m in multipliers)
            {
                var before = meter.Sample();
                var phase = await runner.RunPhaseAsync($"{m}x", m, Scenario.NominalReservesPerSecond * m,
                    Scenario.NominalReadsPerSecond * m, step, measured: true, ct);
                var calls = phase.Reserve.Count + phase.Read.Count;
                var cpu = CpuReport.Between(before, meter.Sample(), calls);
                var errors = phase.Reserve.Failures + phase.Read.Failures;
                var within = phase.DispatchLag.P99 < LatenessLimitMs && errors == 0;
                steps.Add(new SelfCheckStep(m, phase.ReservesPerSecondTarget + phase.ReadsPerSecondTarget,
                    Math.Round((calls - errors) / phase.Seconds, 1), phase.DispatchLag, phase.Reserve.Summary(), phase.Read.Summary(),
                    errors, cpu, within, Merge(phase.Reserve.Errors, phase.Read.Errors), Merge(phase.Reserve.Retries, phase.Read.Retries)));
                console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  self-check {m}x: lateness p99 {phase.DispatchLag.P99:0.00} ms, harness {cpu.Harness.Cores:0.000} cores ({cpu.HarnessUsPerCall:0.0} µs per call), server {cpu.TargetCores:0.000} cores, {errors} errors {Names(steps[^1].ErrorsByKind)}, {phase.Reserve.Retried + phase.Read.Retried} retried {Names(steps[^1].RetriedBecause)}"));
                // Every rate is run (a shared machine's one bad step should not hide the curve) until it is hopeless.
                if (errors > 0 || phase.DispatchLag.P99 > 20 * LatenessLimitMs) break;
            }
            var held = steps.Where(s => s.WithinLateness).Select(s => (double?)s.Multiplier).Max();
            return new SelfCheckReport(SelfCheckReport.SchemaName, started, MachineInfo.Current(), channels.ToString(),
                step.TotalSeconds, LatenessLimitMs, steps, held);
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
                await server.WaitForExitAsync(CancellationToken.None);
            }
        }
    }

    private static string Names(IReadOnlyDictionary<string, long> counts) =>
        counts.Count == 0 ? "" : "(" + string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value}")) + ")";

    private static SortedDictionary<string, long> Merge(params IEnumerable<KeyValuePair<string, long>>[] tallies)
    {
        var merged = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, v) in tallies.SelectMany(t => t)) merged[k] = merged.GetValueOrDefault(k) + v;
        return merged;
    }

    /// <summary>This same program's `echo-server` verb, as a child process.</summary>
    private static Process StartChild(int[] ports)
    {
        var host = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(host) { UseShellExecute = false, RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(SelfCheck).Assembly.Location);
        foreach (var a in new[] { "echo-server", "--ports", string.Join(',', ports) }) psi.ArgumentList.Add(a);
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the echo server");
    }

    private static string F(double v) => v.ToString(v >= 100 ? "0" : v >= 10 ? "0.0" : "0.00", CultureInfo.InvariantCulture);

    public static void Write(SelfCheckReport report, string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "report.json"), JsonSerializer.Serialize(report, ScenarioReport.Json) + "\n");
        var plots = Plot(report, dir);
        var sb = new StringBuilder();
        var m = report.Machine;
        sb.AppendLine("# Harness self-check");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Run {report.StartedUtc:yyyy-MM-dd HH:mm} UTC, commit `{m.GitCommit ?? "unknown"}`, {m.Cores} cores ({m.CpuModel}), {m.Dotnet}; load average at the start {m.LoadAverage}.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"The harness drives a trivial gRPC server (same Checkout proto, answers at once, a child process on loopback, two ports standing for the two gateways) through the system target's own client code ({report.Channels}), open loop, {report.StepSeconds:0} s per rate, nominal mix (1 reserve : 10 reads).");
        sb.AppendLine("Lateness = how late a call started on its pool thread against its intended send time. 'harness' is this process's CPU (utime + stime from /proc), 'server' the echo server's.");
        sb.AppendLine();
        sb.AppendLine(report.HighestMultiplierWithinLateness is { } h
            ? string.Create(CultureInfo.InvariantCulture, $"**Highest rate with p99 lateness < {report.LatenessLimitMs:0} ms and no error: {h}x nominal ({h * (Scenario.NominalReservesPerSecond + Scenario.NominalReadsPerSecond):0} calls/s).**")
            : $"**No rate held p99 lateness < {report.LatenessLimitMs:0} ms.**");
        sb.AppendLine();
        sb.AppendLine("| rate | offered calls/s | answered calls/s | lateness p50 | p99 | max | harness cores | harness µs per call | server cores | reserve p99 | read p99 | errors | within |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var s in report.Steps)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {s.Multiplier}x | {s.OfferedCallsPerSecond:0} | {s.AnsweredCallsPerSecond:0} | {F(s.LatenessMs.P50)} | {F(s.LatenessMs.P99)} | {F(s.LatenessMs.Max)} | {s.Cpu.Harness.Cores:0.000} | {s.Cpu.HarnessUsPerCall:0.0} | {s.Cpu.TargetCores:0.000} | {F(s.ReserveMs.P99)} | {F(s.ReadMs.P99)} | {s.Errors} {Names(s.ErrorsByKind)} | {(s.WithinLateness ? "yes" : "no")} |");
        sb.AppendLine();
        foreach (var p in plots) sb.AppendLine(CultureInfo.InvariantCulture, $"![{Path.GetFileNameWithoutExtension(p)}]({p})");
        File.WriteAllText(Path.Combine(dir, "summary.md"), sb.ToString());
    }

    private static List<string> Plot(SelfCheckReport report, string dir)
    {
        var files = new List<string>();
        if (report.Steps.Count == 0) return files;
        var xs = report.Steps.Select(s => s.OfferedCallsPerSecond).ToArray();
        foreach (var (name, title, label, ys, limit) in new[]
                 {
                     ("self-check-cpu.png", "harness CPU against the offered rate", "harness cores", report.Steps.Select(s => s.Cpu.Harness.Cores).ToArray(), 0.3),
                     ("self-check-lateness.png", "p99 lateness of the harness's sends against the offered rate", "p99 lateness (ms)", report.Steps.Select(s => s.LatenessMs.P99).ToArray(), report.LatenessLimitMs),
                 })
        {
            var plot = new ScottPlot.Plot();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = 7;
            var bound = plot.Add.HorizontalLine(limit);
            bound.LegendText = string.Create(CultureInfo.InvariantCulture, $"goal {limit}");
            bound.LinePattern = ScottPlot.LinePattern.Dashed;
            plot.Title($"self-check: {title}");
            plot.XLabel("offered calls per second (1 reserve : 10 reads)");
            plot.YLabel(label);
            plot.Axes.SetLimitsY(0, Math.Max(limit, ys.Max()) * 1.2);
            plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
            plot.SavePng(Path.Combine(dir, name), 1000, 500);
            files.Add(name);
        }
        return files;
    }
}
