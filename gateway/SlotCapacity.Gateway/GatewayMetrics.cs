using System.Diagnostics.Metrics;

namespace SlotCapacity.Gateway;

/// <summary>The gateway's OpenTelemetry instruments (meter "SlotCapacity.Gateway", scraped at /metrics).</summary>
public sealed class GatewayMetrics : IDisposable
{
    public const string MeterName = "SlotCapacity.Gateway";
    private readonly Meter meter;
    private readonly Counter<long> calls;
    private readonly Counter<long> rejects;
    private readonly Counter<long> deadlineMisses;
    private readonly Counter<long> droppedReplies;
    private readonly Counter<long> shed;
    private readonly Histogram<double> latency;
    private readonly Counter<long> abandons;
    private readonly Counter<long> abandonRetries;
    private readonly Counter<long> abandonFailures;
    private readonly Counter<long> orphanedAccepts;

    public GatewayMetrics(IMeterFactory? factory = null)
    {
        meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        calls = meter.CreateCounter<long>("gateway.calls", "{call}", "gRPC calls answered, by method and outcome");
        rejects = meter.CreateCounter<long>("gateway.rejects", "{call}", "Calls answered not accepted, by reason");
        deadlineMisses = meter.CreateCounter<long>("gateway.deadline_misses", "{call}", "Writes answered UNAVAILABLE because no reply came in time");
        droppedReplies = meter.CreateCounter<long>("gateway.replies.dropped", "{reply}", "Replies no call waits for, by kind (late, duplicate, unknown, malformed)");
        shed = meter.CreateCounter<long>("gateway.shed", "{call}", "Calls refused RESOURCE_EXHAUSTED because too many were in flight");
        abandons = meter.CreateCounter<long>("gateway.abandons", "{command}", "Abandons written for reservations whose caller will not see an accept, by cause (deadline, caller_gone, not_delivered)");
        abandonRetries = meter.CreateCounter<long>("gateway.abandon.retries", "{attempt}", "Abandon writes attempted again after a failed one");
        abandonFailures = meter.CreateCounter<long>("gateway.abandon.failures", "{command}", "Abandons given up after every attempt failed (a late accept then holds capacity)");
        orphanedAccepts = meter.CreateCounter<long>("gateway.orphaned_accepts", "{reply}", "Accepted Reserves answered to an earlier incarnation of this gateway (its caller saw no answer)");
        latency = meter.CreateHistogram<double>("gateway.call.duration", "ms", "Time from call start to answer", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 5000] });
    }

    /// <summary>Registers gauges read at scrape time.</summary>
    public void ObserveGauges(Func<long> inFlight, Func<long> viewLagRecords, Func<long> viewLagMs, Func<long> replyPartitions)
    {
        meter.CreateObservableGauge("gateway.in_flight", inFlight, "{call}", "Writes waiting for a reply");
        meter.CreateObservableGauge("gateway.view.lag.records", viewLagRecords, "{record}", "Availability records not yet applied to the view");
        meter.CreateObservableGauge("gateway.view.lag.time", viewLagMs, "ms", "How old the availability view is while it lags (0 when caught up)");
        meter.CreateObservableGauge("gateway.reply_partitions", replyPartitions, "{partition}", "Reply partitions this instance owns and reads");
    }

    public void Answered(string method, string outcome, double elapsedMs)
    {
        calls.Add(1, new("method", method), new("outcome", outcome));
        latency.Record(elapsedMs, new KeyValuePair<string, object?>("method", method));
    }

    public void Rejected(string reason) => rejects.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void Rejected(Contracts.RejectReason reason) =>
        Rejected((int)reason >= 0 && (int)reason < ReasonNames.Length ? ReasonNames[(int)reason] : ((int)reason).ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Reasons as DESIGN.md and the protos name them (SLOT_FULL, ZONE_RESTRICTED, ...), by enum value.</summary>
    private static readonly string[] ReasonNames = ReasonNamesByValue();

    private static string[] ReasonNamesByValue()
    {
        var reasons = Contracts.CommonReflection.Descriptor.FindTypeByName<Google.Protobuf.Reflection.EnumDescriptor>("RejectReason");
        return Enumerable.Range(0, reasons.Values.Max(v => v.Number) + 1)
            .Select(n => reasons.FindValueByNumber(n)?.Name.Replace("REJECT_REASON_", "", StringComparison.Ordinal) ?? n.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .ToArray();
    }
    public void DeadlineMissed(string method) => deadlineMisses.Add(1, new KeyValuePair<string, object?>("method", method));
    public void ReplyDropped(string kind) => droppedReplies.Add(1, new KeyValuePair<string, object?>("kind", kind));
    public void Abandoned(AbandonCause cause) => abandons.Add(1, new KeyValuePair<string, object?>("cause", cause switch
    {
        AbandonCause.Deadline => "deadline",
        AbandonCause.CallerGone => "caller_gone",
        AbandonCause.WriteUncertain => "write_uncertain",
        _ => "not_delivered",
    }));
    public void AbandonRetried() => abandonRetries.Add(1);
    public void AbandonFailed() => abandonFailures.Add(1);
    public void OrphanedAccept() => orphanedAccepts.Add(1);
    public void Shed(string method) => shed.Add(1, new KeyValuePair<string, object?>("method", method));

    /// <summary>This instance's meter (tests listen to exactly it).</summary>
    internal Meter Meter => meter;

    public void Dispose() => meter.Dispose();
}
