using System.Text.Json;
using SlotCapacity.Load;

namespace SlotCapacity.Load.Tests;

public class ReportTests
{
    private static OperationTally OneToThousandMs()
    {
        var tally = new OperationTally();
        for (var ms = 1; ms <= 1000; ms++) tally.Record(ms * 1000L, accepted: ms % 2 == 0, reject: ms % 2 == 0 ? null : "SLOT_FULL", error: null);
        return tally;
    }

    [Theory]
    [InlineData(50, 500)]
    [InlineData(90, 900)]
    [InlineData(99, 990)]
    [InlineData(99.9, 999)]
    public void Percentiles_of_a_known_input_match_within_hdr_precision(double percentile, double expectedMs)
    {
        var tally = OneToThousandMs();
        // HDR with 3 significant digits: values are exact to 0.1%.
        Assert.InRange(tally.PercentileMs(percentile), expectedMs * 0.999, expectedMs * 1.001);
    }

    [Fact]
    public void The_operation_report_carries_the_same_numbers_and_counts()
    {
        var report = OperationReport.From(OneToThousandMs(), seconds: 10);
        Assert.Equal(1000, report.Count);
        Assert.Equal(500, report.Accepted);
        Assert.Equal(500, report.Rejected["SLOT_FULL"]);
        Assert.Equal(100, report.PerSecond);
        Assert.InRange(report.LatencyMs.P50, 499.5, 500.5);
        Assert.InRange(report.LatencyMs.P99, 989, 991);
        Assert.InRange(report.LatencyMs.P999, 998, 1000);
        Assert.InRange(report.LatencyMs.Max, 999, 1001);
        Assert.InRange(report.LatencyMs.Mean, 500, 501);
    }

    [Fact]
    public void Json_field_names_are_stable_snake_case()
    {
        var step = new StepReport("1x", 1, 50, 500, 10, 5500, OperationReport.From(OneToThousandMs(), 10), OperationReport.From(new OperationTally(), 10),
            new LatencySummary(0, 0, 0, 0, 0, 0), true, null, false, new Dictionary<string, string>());
        var json = JsonSerializer.Serialize(step, ScenarioReport.Json);
        using var doc = JsonDocument.Parse(json);
        var reserve = doc.RootElement.GetProperty("reserve");
        Assert.Equal(1000, reserve.GetProperty("count").GetInt64());
        Assert.InRange(reserve.GetProperty("latency_ms").GetProperty("p99").GetDouble(), 989, 991);
        Assert.True(reserve.GetProperty("latency_ms").TryGetProperty("p999", out _));
        Assert.Equal(500, reserve.GetProperty("rejected").GetProperty("SLOT_FULL").GetInt64());
        Assert.True(doc.RootElement.TryGetProperty("reserves_per_second_target", out _));
        Assert.True(doc.RootElement.TryGetProperty("held", out _));
        Assert.True(reserve.TryGetProperty("retried", out _));
        Assert.True(reserve.TryGetProperty("lost", out _));
    }

    [Fact]
    public void Cpu_and_phantom_fields_are_in_the_report_json()
    {
        var cpu = CpuReport.Between(new CpuSample(0, new Dictionary<string, double?> { ["gateway-1"] = 0, [CpuReport.HarnessName] = 0 }),
            new CpuSample(System.Diagnostics.Stopwatch.Frequency, new Dictionary<string, double?> { ["gateway-1"] = 0.5, [CpuReport.HarnessName] = 0.1 }), 1_000);
        var step = new StepReport("1x", 1, 50, 500, 10, 5500, OperationReport.From(OneToThousandMs(), 10), OperationReport.From(new OperationTally(), 10),
            new LatencySummary(0, 0, 0, 0, 0, 0), true, null, false, new Dictionary<string, string>(), cpu);
        var audit = new AuditResult(true, "test", 1, 1, 0, 1, 0, 0, [], new PhantomAudit(1, 1, 0, 0, 0, 0, 1, 0));
        using var stepJson = JsonDocument.Parse(JsonSerializer.Serialize(step, ScenarioReport.Json));
        using var auditJson = JsonDocument.Parse(JsonSerializer.Serialize(audit, ScenarioReport.Json));

        var c = stepJson.RootElement.GetProperty("cpu");
        Assert.Equal(500, c.GetProperty("target_us_per_call").GetDouble());
        Assert.Equal("gateway-1", c.GetProperty("target")[0].GetProperty("name").GetString());
        Assert.Equal(0.1, c.GetProperty("harness").GetProperty("cores").GetDouble());
        Assert.Equal(0, auditJson.RootElement.GetProperty("phantoms").GetProperty("phantoms").GetInt64());
        Assert.Equal(1, auditJson.RootElement.GetProperty("phantoms").GetProperty("live_by_target").GetInt64());
    }

    [Fact]
    public void Histogram_merging_keeps_the_tail()
    {
        var a = OneToThousandMs();
        var b = new OperationTally();
        b.Record(5_000_000, false, null, "grpc DeadlineExceeded");
        a.Add(b);
        Assert.Equal(1001, a.Count);
        Assert.InRange(a.MaxMs, 4995, 5005);
        Assert.Equal(1, a.Failures);
    }
}
