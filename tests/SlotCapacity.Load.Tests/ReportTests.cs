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
