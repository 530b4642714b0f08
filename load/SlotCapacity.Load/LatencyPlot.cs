namespace SlotCapacity.Load;

/// <summary>p99 latency per second, one line per target, one PNG per operation (ScottPlot).</summary>
public static class LatencyPlot
{
    public static IReadOnlyList<string> Write(ScenarioReport report, string dir)
    {
        var files = new List<string>();
        foreach (var kind in new[] { OperationKind.Reserve, OperationKind.Read })
        {
            var name = kind == OperationKind.Reserve ? "latency-reserve.png" : "latency-read.png";
            var plot = new ScottPlot.Plot();
            var any = false;
            double top = 1;
            foreach (var t in report.Targets.Where(t => t.Timeline.Count > 0))
            {
                var points = t.Timeline.Select(p => (X: p.Seconds, Op: kind == OperationKind.Reserve ? p.Reserve : p.Read))
                    .Where(p => p.Op.Count > 0).ToList();
                if (points.Count == 0) continue;
                var line = plot.Add.ScatterLine(points.Select(p => p.X).ToArray(), points.Select(p => p.Op.P99).ToArray());
                line.LegendText = $"{t.Target} p99";
                line.LineWidth = 2;
                top = Math.Max(top, points.Max(p => p.Op.P99));
                any = true;
            }
            if (!any) continue;
            plot.Title($"{report.Scenario}: {(kind == OperationKind.Reserve ? "reserve" : "availability read")} p99 per second (from intended send time)");
            plot.XLabel("seconds since the target's warm-up started");
            plot.YLabel("p99 latency (ms)");
            plot.Axes.AutoScaleX();
            plot.Axes.AutoScaleX();
            plot.Axes.SetLimitsY(0, top * 1.1);
            plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
            plot.SavePng(Path.Combine(dir, name), 1200, 600);
            files.Add(name);
        }
        if (report.Settings.Multipliers.Count > 1 && WriteRamp(report, Path.Combine(dir, "latency-vs-rate.png")))
            files.Add("latency-vs-rate.png");
        return files;
    }

    /// <summary>Reserve p99 of each step against the offered reserve rate: where each target bends.</summary>
    private static bool WriteRamp(ScenarioReport report, string path)
    {
        var plot = new ScottPlot.Plot();
        var any = false;
        double top = report.Settings.P99LimitMs * 1.5;
        foreach (var t in report.Targets.Where(t => t.Steps.Count > 0))
        {
            var xs = t.Steps.Select(s => s.ReservesPerSecondTarget).ToArray();
            var ys = t.Steps.Select(s => s.Reserve.LatencyMs.P99).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = $"{t.Target} reserve p99";
            line.LineWidth = 2;
            line.MarkerSize = 7;
            top = Math.Max(top, ys.Max());
            any = true;
        }
        if (!any) return false;
        var limit = plot.Add.HorizontalLine(report.Settings.P99LimitMs);
        limit.LegendText = $"limit {report.Settings.P99LimitMs:0} ms";
        limit.LinePattern = ScottPlot.LinePattern.Dashed;
        plot.Title($"{report.Scenario}: reserve p99 per step against the offered rate (reads at 10x that rate)");
        plot.XLabel("offered reservation attempts per second");
        plot.YLabel("p99 latency (ms)");
        plot.Axes.SetLimitsY(0, Math.Min(top * 1.1, 6_000));
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1200, 600);
        return true;
    }
}
