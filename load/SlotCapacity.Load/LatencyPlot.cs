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
        return files;
    }
}
