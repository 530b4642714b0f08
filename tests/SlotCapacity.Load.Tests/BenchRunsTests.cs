using System.Text.Json;
using SlotCapacity.Load;

namespace SlotCapacity.Load.Tests;

public sealed class BenchRunsTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "bench-runs-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    private static StepReport Step(double reserveP99Ms, bool held)
    {
        var tally = new OperationTally();
        for (var i = 0; i < 100; i++) tally.Record((long)(reserveP99Ms * 1000), accepted: true, reject: null, error: null);
        var op = OperationReport.From(tally, 10);
        return new StepReport("10x", 10, 500, 5000, 10, 5500, op, op, new LatencySummary(0, 0, 0, 0, 0, 0), held,
            held ? null : "reserve p99 > 100 ms", false, new Dictionary<string, string>());
    }

    private void WriteRun(int run, double usPerReserve, double reserveP99Ms, bool held, double idleCores, bool auditPassed = true)
    {
        var step = Step(reserveP99Ms, held);
        var system = new TargetReport("system", "127.0.0.1", "", 1, 1, 1, [step], held ? step : null,
            new AuditResult(auditPassed, "test", 1, 1, auditPassed ? 0 : 1, 1, 0, 0, []), [], null,
            new IdleCost(3, idleCores, 0.01, []),
            new CostSplit(10, usPerReserve, usPerReserve / 10, 50, 5, []));
        var report = new ScenarioReport(ScenarioReport.SchemaName, "tenx", "test", DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch.AddMinutes(1),
            new MachineInfo(2, 24_000, "cpu", "linux", ".NET", "abc1234", "0.5 / 0.5 / 0.5"),
            new RunSettings(30, 5, 10, 50, 500, [10], 1, 100, 0.001, 50, 5), [system], []);
        var scenarioDir = Path.Combine(dir, $"run-{run}", "tenx");
        Directory.CreateDirectory(scenarioDir);
        File.WriteAllText(Path.Combine(scenarioDir, "report.json"), JsonSerializer.Serialize(report, ScenarioReport.Json));
    }

    [Fact]
    public void Each_runs_figures_stand_side_by_side_with_their_median_and_the_marks_count_the_runs_that_met_them()
    {
        WriteRun(1, 2_000, 90, held: true, idleCores: 0.045);
        WriteRun(2, 3_000, 400, held: false, idleCores: 0.06);
        WriteRun(3, 2_500, 150, held: false, idleCores: 0.07, auditPassed: false);

        var readme = File.ReadAllText(BenchRuns.Write(dir));

        Assert.Contains("| tenx | system | yes · no · no | 90.0 · 400 · 150 | 150 |", readme);
        Assert.Contains("| tenx | system | 2000 · 3000 · 2500 | 2500 | 200 · 300 · 250 | 250 | 0.045 · 0.060 · 0.070 |", readme);
        Assert.Contains("**1 of 3 failed or not audited**", readme);
        Assert.Contains("| `tenx` held (reserve and read p99 < 100 ms, errors < 0.1 %) | yes · no · no | 1 of 3 |", readme);
        Assert.Contains("CPU per reserve ≤ 300 µs (`tenx`) | 2000 · 3000 · 2500 | 0 of 3 |", readme);
        Assert.Contains("| 0.045 (0.045-0.045) · 0.060 (0.060-0.060) · 0.070 (0.070-0.070) | 1 of 3 |", readme);
        Assert.True(new FileInfo(Path.Combine(dir, "cpu-per-reserve.png")).Length > 1_000);
    }

    [Fact]
    public void A_directory_without_runs_is_named_in_the_error()
    {
        Directory.CreateDirectory(dir);
        var e = Assert.Throws<ArgumentException>(() => BenchRuns.Write(dir));
        Assert.Contains(dir, e.Message);
        Assert.Contains("no run-N directory", e.Message);
    }

    [Fact]
    public void A_missing_directory_is_named_in_the_error()
    {
        var e = Assert.Throws<ArgumentException>(() => BenchRuns.Write(dir));
        Assert.Contains($"--out {dir}: no such directory", e.Message);
    }

    [Fact]
    public void The_results_index_points_at_the_bench_set_once_there_is_one()
    {
        WriteRun(1, 2_000, 90, held: true, idleCores: 0.045);
        Directory.Move(Path.Combine(dir, "run-1", "tenx"), Path.Combine(dir, "tenx"));
        Assert.DoesNotContain("bench/README.md", ReportWriter.Index(dir));

        Directory.CreateDirectory(Path.Combine(dir, "bench"));
        File.WriteAllText(Path.Combine(dir, "bench", "README.md"), "# runs");
        var index = ReportWriter.Index(dir);
        Assert.Contains("**The reference figures are [`bench/README.md`](bench/README.md)**", index);
        Assert.Contains("| [tenx](tenx/summary.md) | system | 10x |", index);
    }
}
