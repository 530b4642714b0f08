using HdrHistogram;

namespace SlotCapacity.Load;

/// <summary>
/// Counts and latencies of one operation kind over some stretch of a run. Latencies are kept in
/// microseconds in an HDR histogram (3 significant digits, up to 10 minutes).
/// </summary>
public sealed class OperationTally
{
    public const long HighestTrackableMicros = 600_000_000;

    public LongHistogram Latency { get; } = new(HighestTrackableMicros, 3);
    public long Count { get; private set; }
    public long Accepted { get; private set; }
    public SortedDictionary<string, long> Rejects { get; } = new(StringComparer.Ordinal);
    public SortedDictionary<string, long> Errors { get; } = new(StringComparer.Ordinal);

    /// <summary>Calls sent more than once (a transport failure, then the same request again), by the first failure.</summary>
    public SortedDictionary<string, long> Retries { get; } = new(StringComparer.Ordinal);
    public long Retried => Retries.Values.Sum();

    /// <summary>Calls with no definite answer after their retries (the outcome is unknown to the caller).</summary>
    public long Lost { get; private set; }

    /// <summary>Calls that did not get a decision: transport errors, timeouts, UNAVAILABLE.</summary>
    public long Failures => Errors.Values.Sum();
    public long RejectCount => Rejects.Values.Sum();

    public void Record(long latencyMicros, bool accepted, string? reject, string? error, string? retriedBecause = null, bool lost = false)
    {
        Latency.RecordValue(Math.Clamp(latencyMicros, 0, HighestTrackableMicros));
        Count++;
        if (accepted) Accepted++;
        if (retriedBecause is not null) Retries[retriedBecause] = Retries.GetValueOrDefault(retriedBecause) + 1;
        if (lost) Lost++;
        if (reject is not null) Rejects[reject] = Rejects.GetValueOrDefault(reject) + 1;
        if (error is not null) Errors[error] = Errors.GetValueOrDefault(error) + 1;
    }

    /// <summary>A call that never answered, even after the drain: an error with no latency to record.</summary>
    public void RecordUnanswered()
    {
        Count++;
        Lost++;
        Errors["no answer"] = Errors.GetValueOrDefault("no answer") + 1;
    }

    public void Add(OperationTally other)
    {
        Latency.Add(other.Latency);
        Count += other.Count;
        Accepted += other.Accepted;
        foreach (var (k, v) in other.Retries) Retries[k] = Retries.GetValueOrDefault(k) + v;
        Lost += other.Lost;
        foreach (var (k, v) in other.Rejects) Rejects[k] = Rejects.GetValueOrDefault(k) + v;
        foreach (var (k, v) in other.Errors) Errors[k] = Errors.GetValueOrDefault(k) + v;
    }

    public double PercentileMs(double percentile) =>
        Latency.TotalCount == 0 ? 0 : Latency.GetValueAtPercentile(percentile) / 1000.0;

    public double MaxMs => Latency.TotalCount == 0 ? 0 : Latency.GetMaxValue() / 1000.0;
    public double MeanMs => Latency.TotalCount == 0 ? 0 : Latency.GetMean() / 1000.0;
    public double ErrorRate => Count == 0 ? 0 : (double)Failures / Count;

    public LatencySummary Summary() => new(
        PercentileMs(50), PercentileMs(90), PercentileMs(99), PercentileMs(99.9), MaxMs, MeanMs);
}

/// <summary>Latency percentiles in milliseconds.</summary>
public sealed record LatencySummary(double P50, double P90, double P99, double P999, double Max, double Mean);

/// <summary>
/// The recording side of a run, shared by the completion callbacks (any thread): totals of the
/// measured stretch, and an interval tally per operation that the live table swaps out each second.
/// </summary>
public sealed class RunRecorder
{
    private static readonly int Kinds = Enum.GetValues<OperationKind>().Length;
    private readonly Lock _lock = new();
    private readonly OperationTally[] _total = Fresh();
    private OperationTally[] _interval = Fresh();
    private readonly OperationTally _lateness = new();
    private readonly Lock _latenessLock = new();
    private volatile bool _measuring;
    private long _inFlight;

    private static OperationTally[] Fresh() => Enumerable.Range(0, Kinds).Select(_ => new OperationTally()).ToArray();

    /// <summary>Calls of this phase (follow-ups included) started and not finished yet.</summary>
    public long InFlight => Interlocked.Read(ref _inFlight);

    public void Started() => Interlocked.Increment(ref _inFlight);

    public void Finished() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Off during warm-up: completions still show live but stay out of the totals.</summary>
    public bool Measuring { get => _measuring; set => _measuring = value; }

    public void Record(OperationKind kind, long latencyMicros, bool accepted, string? reject, string? error, string? retriedBecause = null, bool lost = false)
    {
        lock (_lock)
        {
            _interval[(int)kind].Record(latencyMicros, accepted, reject, error, retriedBecause, lost);
            if (_measuring) _total[(int)kind].Record(latencyMicros, accepted, reject, error, retriedBecause, lost);
        }
    }

    /// <summary>How late a call started, on its pool thread, against its intended send time: the harness's own delay.</summary>
    public void RecordLateness(long micros)
    {
        lock (_latenessLock) _lateness.Record(micros, accepted: false, reject: null, error: null);
    }

    public LatencySummary Lateness()
    {
        lock (_latenessLock) return _lateness.Summary();
    }

    /// <summary>Takes the interval tallies recorded since the previous call.</summary>
    public OperationTally[] SwapInterval()
    {
        var fresh = Fresh();
        lock (_lock)
        {
            var taken = _interval;
            _interval = fresh;
            return taken;
        }
    }

    public OperationTally Total(OperationKind kind)
    {
        lock (_lock)
        {
            var copy = new OperationTally();
            copy.Add(_total[(int)kind]);
            return copy;
        }
    }
}
