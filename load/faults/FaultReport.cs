using System.Globalization;
using System.Text;

namespace SlotCapacity.Faults;

/// <summary>What one experiment showed: answers, retries, losses, the audit, the recovery time, and a timeline.</summary>
internal sealed record FaultReport(
    string Experiment, string Description, int Rate, int Seconds, double? FaultAt,
    int Calls, int Accepted, int Rejected, int Lost, int Retried, long Booked, long Capacity, int Oversold,
    double RecoverySeconds, IReadOnlyList<(int Second, int Ok, int Failed)> Timeline, IReadOnlyDictionary<string, int> Answers, Releases Releases,
    double ClientLagSeconds)
{
    /// <summary>Beyond this the client's own lateness is part of the result, and the report says so.</summary>
    private const double TolerableClientLagSeconds = 1;

    /// <summary>Orders the engine holds beyond what callers were told was accepted (negative: accepts it does not hold).</summary>
    public long Phantom => Booked - Accepted;

    public static FaultReport From(Experiment experiment, Options options, IReadOnlyList<Call> calls, Bookings booked, double? faultAt, Releases releases,
        TimeSpan clientLag)
    {
        var failedAttempts = calls.SelectMany(c => c.FailedAttempts).Order().ToList();
        // Recovery: from the fault to the last attempt that got no definite answer.
        var afterFault = failedAttempts.Where(t => faultAt is null || t >= faultAt).ToList();
        var recovery = afterFault.Count == 0 || faultAt is null ? 0 : afterFault[^1] - faultAt.Value;
        var timeline = Enumerable.Range(0, options.Seconds + 10).Select(s => (
            Second: s,
            Ok: calls.Count(c => !c.Lost && (int)c.EndedAt == s),
            Failed: failedAttempts.Count(t => (int)t == s))).ToList();
        return new FaultReport(experiment.Name, experiment.Description, options.Rate, options.Seconds, faultAt,
            calls.Count, calls.Count(c => c.Accepted), calls.Count(c => !c.Accepted && !c.Lost), calls.Count(c => c.Lost),
            calls.Count(c => c.Attempts > 1 || c.Lost), booked.Used, booked.Capacity, booked.OverCommittedSlots, recovery, timeline,
            calls.GroupBy(c => c.Answer).ToDictionary(g => g.Key, g => g.Count()), releases, clientLag.TotalSeconds);
    }

    public const string TableHeader =
        "| experiment | rate/s | calls | definite answers | accepted | retried | lost | phantom bookings | oversold slots | recovery (s) | client lag (s) |\n"
        + "|---|---|---|---|---|---|---|---|---|---|---|";

    public string TableRow => string.Create(CultureInfo.InvariantCulture,
        $"| {Experiment} | {Rate} | {Calls} | {Calls - Lost} | {Accepted} | {Retried} | {Lost} | {Phantom} | {Oversold} | {RecoverySeconds:F1} | {ClientLagSeconds:F1} |");

    public void Print(TextWriter output)
    {
        output.WriteLine();
        output.WriteLine(TableHeader);
        output.WriteLine(TableRow);
        output.WriteLine($"answers: {string.Join(", ", Answers.OrderByDescending(a => a.Value).Select(a => $"{a.Value} {a.Key}"))}; "
                         + $"engine holds {Booked} orders of {Capacity} capacity");
        if (Releases.Sent > 0) output.WriteLine(Releases.Text);
        if (ClientLagWarning is { } warning) output.WriteLine(warning);
    }

    /// <summary>Said when the client fell behind its own schedule: calls it started late (or could not
    /// finish) are then as much the client's and the machine's as the system's.</summary>
    public string? ClientLagWarning => ClientLagSeconds <= TolerableClientLagSeconds ? null : string.Create(CultureInfo.InvariantCulture,
        $"warning: this client started calls up to {ClientLagSeconds:F1} s behind its schedule (the machine or the client itself was saturated): part of what this run lost is the client's, not the system's");

    public void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        var name = $"{Experiment}-{Rate}";
        var text = new StringBuilder()
            .AppendLine(CultureInfo.InvariantCulture, $"# {Experiment} at {Rate} reserves/s")
            .AppendLine()
            .AppendLine(CultureInfo.InvariantCulture, $"{Description}, at t={FaultAt:F0} s of a {Seconds} s run. ")
            .AppendLine(CultureInfo.InvariantCulture, $"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.")
            .AppendLine()
            .AppendLine(TableHeader)
            .AppendLine(TableRow)
            .AppendLine()
            .AppendLine(CultureInfo.InvariantCulture, $"Answers: {string.Join(", ", Answers.OrderByDescending(a => a.Value).Select(a => $"{a.Value} {a.Key}"))}.")
            .AppendLine();
        if (Releases.Sent > 0) text.AppendLine(Releases.Text).AppendLine();
        if (ClientLagWarning is { } warning) text.AppendLine(warning).AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"![timeline]({name}.png)");
        File.WriteAllText(Path.Combine(directory, name + ".md"), text.ToString());
        File.WriteAllLines(Path.Combine(directory, name + ".csv"),
            ["second,definite_answers,attempts_without_answer", .. Timeline.Select(t => $"{t.Second},{t.Ok},{t.Failed}")]);
        Plot(Path.Combine(directory, name + ".png"));
    }

    private void Plot(string path)
    {
        var plot = new ScottPlot.Plot();
        var xs = Timeline.Select(t => (double)t.Second).ToArray();
        var ok = plot.Add.ScatterLine(xs, Timeline.Select(t => (double)t.Ok).ToArray());
        ok.LegendText = "calls answered (definite) per second";
        ok.LineWidth = 2;
        var failed = plot.Add.ScatterLine(xs, Timeline.Select(t => (double)t.Failed).ToArray());
        failed.LegendText = "attempts without an answer per second";
        failed.LineWidth = 2;
        if (FaultAt is { } at)
        {
            var line = plot.Add.VerticalLine(at);
            line.LegendText = "fault";
            line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plot.Title($"{Experiment} at {Rate} reserves/s: recovery {RecoverySeconds:F1} s, {Lost} lost, {Phantom} phantom, {Oversold} oversold");
        plot.XLabel("seconds since the run started");
        plot.YLabel("per second");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        plot.SavePng(path, 1200, 500);
    }
}

/// <summary>Releases of ids with an unanswered attempt (the client contract): sent within the calls, of those
/// not answered within their call, answered when retried from the outbox afterwards, and never answered.</summary>
internal sealed record Releases(int Sent, int UnansweredInCall, int AnsweredLater, int Never)
{
    public string Text => string.Create(CultureInfo.InvariantCulture,
        $"Releases after an unanswered attempt: {Sent} sent; {UnansweredInCall} got no answer within their call, "
        + $"of which {AnsweredLater} were answered when retried afterwards and {Never} never were.");
}
