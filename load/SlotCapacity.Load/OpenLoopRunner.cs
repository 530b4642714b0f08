using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Grpc.Core;
using HdrHistogram;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load;

/// <param name="BatchWindowMs">the dispatcher wakes at most once per window and starts every call due by then</param>
public sealed record RunnerOptions(int MaxInFlight = 20_000, double DrainSeconds = 15, ClientPolicy? Client = null, double BatchWindowMs = 1)
{
    public static readonly RunnerOptions Default = new();
}

/// <summary>
/// What the caller was told about a reservation, as far as it matters for what should still hold
/// capacity at the end. A reservation that was refused has no fate recorded.
/// </summary>
public enum CallerFate
{
    /// <summary>Booked at once, or held and then confirmed: must hold capacity at the end.</summary>
    Live,
    /// <summary>Held, its confirm or release not done yet.</summary>
    Held,
    Released,
    /// <summary>Held and left alone: the target must free it when it expires.</summary>
    LeftToExpire,
    /// <summary>The confirm was refused (e.g. the hold had already expired): not live.</summary>
    ConfirmRefused,
    /// <summary>A confirm or release without a definite answer: either way is correct.</summary>
    Uncertain,
    /// <summary>Whether the reservation holds is unknown to the caller: the reserve got no definite
    /// answer after its retries, or ended refused after an unanswered attempt, and the release that
    /// followed (on targets with releases) got no answer either.</summary>
    NoAnswer,
}

/// <summary>One stretch of a run at one rate: a warm-up or a measured step.</summary>
public sealed record PhaseResult(
    string Label,
    double Multiplier,
    double ReservesPerSecondTarget,
    double ReadsPerSecondTarget,
    double Seconds,
    long Scheduled,
    bool Measured,
    OperationTally Reserve,
    OperationTally Read,
    OperationTally Confirm,
    OperationTally Release,
    LatencySummary DispatchLag)
{
    public double ReservesPerSecondAchieved => Seconds <= 0 ? 0 : Reserve.Count / Seconds;
    public double ReadsPerSecondAchieved => Seconds <= 0 ? 0 : Read.Count / Seconds;
}

public sealed record TimelineOp(long Count, double P50, double P99, double Max, long Accepted, long Failures);

/// <summary>One second of a run as the live table showed it.</summary>
public sealed record TimelinePoint(double Seconds, string Phase, double Multiplier, TimelineOp Reserve, TimelineOp Read, long InFlight);

/// <summary>
/// Open-loop load: operation i of a phase is due at start + i / rate, whatever happened to the
/// ones before it, and its latency is measured from that due time. A target that stalls therefore
/// shows the stall in every operation that queued behind it (no coordinated omission). Bounded:
/// a phase sends exactly rate x duration operations, caps calls in flight, and waits a bounded
/// time for the last answers. A call that fails in transport is sent again under the client
/// policy (same request, next endpoint); its latency still runs from its first due time.
/// </summary>
public sealed partial class OpenLoopRunner
{
    private readonly ITarget _target;
    private readonly Workload _workload;
    private readonly ConcurrentQueue<AcceptedReservation> _accepted;
    private readonly TextWriter _console;
    private readonly RunnerOptions _options;
    private readonly ClientPolicy _client;
    private readonly long _runStart = Stopwatch.GetTimestamp();
    private long _inFlight;

    public List<TimelinePoint> Timeline { get; } = [];

    /// <summary>What the caller was told about each reservation that took, or may have taken, capacity.</summary>
    public ConcurrentDictionary<string, CallerFate> Fates { get; } = new(StringComparer.Ordinal);

    public OpenLoopRunner(ITarget target, Workload workload, ConcurrentQueue<AcceptedReservation> accepted,
        TextWriter console, RunnerOptions? options = null)
    {
        _target = target;
        _workload = workload;
        _accepted = accepted;
        _console = console;
        _options = options ?? RunnerOptions.Default;
        _client = _options.Client ?? ClientPolicy.Default;
    }

    public long InFlight => Interlocked.Read(ref _inFlight);

    public async Task<PhaseResult> RunPhaseAsync(string label, double multiplier, double reservesPerSecond,
        double readsPerSecond, TimeSpan duration, bool measured, CancellationToken ct)
    {
        EnsureThreadPoolHeadroom();
        var recorder = new RunRecorder { Measuring = measured };
        var rate = reservesPerSecond + readsPerSecond;
        var scheduled = (long)Math.Round(rate * duration.TotalSeconds);
        var dispatchDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var phaseStart = Stopwatch.GetTimestamp();

        var dispatcher = new Thread(() =>
        {
            try
            {
                Dispatch(recorder, scheduled, rate, reservesPerSecond, phaseStart, ct);
                dispatchDone.SetResult();
            }
            catch (Exception e)
            {
                dispatchDone.SetException(e);
            }
        })
        { IsBackground = true, Name = "load-dispatcher", Priority = ThreadPriority.AboveNormal };
        dispatcher.Start();

        PrintHeader(label, rate);
        var drainDeadline = TimeSpan.FromSeconds(duration.TotalSeconds + _options.DrainSeconds);
        var nextTick = TimeSpan.FromSeconds(1);
        while (!ct.IsCancellationRequested)
        {
            var elapsed = Stopwatch.GetElapsedTime(phaseStart);
            if ((dispatchDone.Task.IsCompleted && recorder.InFlight == 0) || elapsed > drainDeadline) break;
            if (elapsed >= nextTick)
            {
                Tick(recorder, label, multiplier, duration, phaseStart, force: true);
                nextTick += TimeSpan.FromSeconds(1);
                continue;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(50, (nextTick - elapsed).TotalMilliseconds + 1)), CancellationToken.None);
        }
        await dispatchDone.Task;
        // This phase's own calls: one still hanging from an earlier phase was counted there.
        var leftover = recorder.InFlight;
        if (leftover > 0)
            _console.WriteLine($"  ! {leftover} calls still unanswered {_options.DrainSeconds:0} s after the phase ended; counted as errors");
        Tick(recorder, label, multiplier, duration, phaseStart, force: false);

        var reserve = recorder.Total(OperationKind.Reserve);
        var read = recorder.Total(OperationKind.Read);
        if (leftover > 0 && measured)
        {
            // The reserve/read split of unanswered calls is unknown: count them on reserves, the stricter side.
            for (var i = 0; i < leftover; i++) reserve.RecordUnanswered();
        }
        return new PhaseResult(label, multiplier, reservesPerSecond, readsPerSecond, duration.TotalSeconds,
            scheduled, measured, reserve, read, recorder.Total(OperationKind.Confirm), recorder.Total(OperationKind.Release),
            recorder.Lateness());
    }

    /// <summary>
    /// Wakes at most once per <see cref="RunnerOptions.BatchWindowMs"/> and hands every call due
    /// by then to one pool work item, which starts them. At 5,500 calls/s a wake (nanosleep) and a
    /// thread-pool hand-off per call were most of the harness's CPU (kernel time in futex wakes);
    /// a batch started together also shares the HTTP/2 connection's writes. The batch goes to the
    /// pool rather than being started here so that one slow start (a lock, a descheduled thread on
    /// a busy machine) does not hold back the calls due after it. A call is thus started up to one
    /// window after its due time; its latency still runs from the due time, and the delay is in the
    /// harness lag.
    /// </summary>
    private void Dispatch(RunRecorder recorder, long scheduled, double rate, double reservesPerSecond, long phaseStart, CancellationToken ct)
    {
        var ticksPerOp = Stopwatch.Frequency / rate;
        var reserveShare = reservesPerSecond / rate;
        var window = (long)(_options.BatchWindowMs / 1000 * Stopwatch.Frequency);
        long i = 0;
        while (i < scheduled && !ct.IsCancellationRequested)
        {
            WaitUntil(phaseStart + (long)(i * ticksPerOp));
            var woke = Stopwatch.GetTimestamp();
            var batch = new CallBatch();
            for (; i < scheduled; i++)
            {
                var due = phaseStart + (long)(i * ticksPerOp);
                if (due > woke) break;
                // Interleave the two kinds evenly: operation i is a reserve when the running reserve count steps up.
                var isReserve = (long)Math.Floor((i + 1) * reserveShare) > (long)Math.Floor(i * reserveShare);
                var kind = isReserve ? OperationKind.Reserve : OperationKind.Read;
                if (Interlocked.Read(ref _inFlight) >= _options.MaxInFlight)
                {
                    recorder.Record(kind, ToMicros(Stopwatch.GetTimestamp() - due), false, null, "shed: harness in-flight limit");
                    continue;
                }
                Interlocked.Increment(ref _inFlight);
                recorder.Started();
                batch.Add(isReserve
                    ? new Call(this, recorder, due, _workload.NextReserve(), null, ct)
                    : new Call(this, recorder, due, null, _workload.NextRead(), ct));
                // After a stall the backlog is spread over several pool threads, not started by one.
                if (batch.Count == MaxBatch)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(batch, preferLocal: false);
                    batch = new CallBatch();
                }
            }
            if (batch.Count > 0) ThreadPool.UnsafeQueueUserWorkItem(batch, preferLocal: false);
            WaitUntil(woke + window);
        }
    }

    private const int MaxBatch = 32;

    /// <summary>The calls one wake of the dispatcher found due, started together on a pool thread.</summary>
    private sealed class CallBatch : List<Call>, IThreadPoolWorkItem
    {
        public void Execute()
        {
            foreach (var call in this) _ = call.RunAsync();
        }
    }

    private sealed class Call(OpenLoopRunner runner, RunRecorder recorder, long due, ReserveOperation? reserve,
        ReadOperation? read, CancellationToken ct)
    {
        public async Task RunAsync()
        {
            recorder.RecordLateness(ToMicros(Stopwatch.GetTimestamp() - due));
            var kind = reserve is not null ? OperationKind.Reserve : OperationKind.Read;
            bool accepted = false, lost = false;
            string? reject = null, error = null, retried = null;
            try
            {
                var target = runner._target;
                if (reserve is not null)
                {
                    var result = await runner._client.CallAsync(a => target.ReserveAsync(reserve, a, ct), null, ct).ConfigureAwait(false);
                    (retried, lost) = (result.RetriedBecause, result.Lost);
                    if (result.Error is not null) error = ErrorName(result.Error);
                    else if (result.Answer!.Accepted)
                    {
                        accepted = true;
                        runner._accepted.Enqueue(new AcceptedReservation(reserve.ReservationId, reserve.Slot.Id,
                            result.Answer.FleetCounter, reserve.Zone, reserve.Needs.Items, reserve.Needs.Totes));
                        runner.Accepted(recorder, reserve, ct);
                    }
                    else if (result.Answer.IsFailure) error = result.Answer.Reason;
                    else reject = result.Answer.Reason ?? "UNSPECIFIED";
                    // An attempt without an answer may hold the place even when a later one was refused
                    // (e.g. abandoned: that strikes off only its own attempt).
                    if (!accepted && (lost || retried is not null)) runner.ReleaseUnanswered(recorder, reserve, ct);
                }
                else
                {
                    var result = await runner._client.CallAsync(a => target.ReadAsync(read!, a, ct), null, ct).ConfigureAwait(false);
                    (retried, lost) = (result.RetriedBecause, result.Lost);
                    if (result.Error is not null) error = ErrorName(result.Error);
                }
            }
            catch (Exception e)
            {
                error = ErrorName(e);
            }
            finally
            {
                recorder.Record(kind, ToMicros(Stopwatch.GetTimestamp() - due), accepted, reject, error, retried, lost);
                Interlocked.Decrement(ref runner._inFlight);
                recorder.Finished();
            }
        }
    }

    /// <summary>An accepted reserve: booked, or a hold whose confirm or release the customer does a little later.</summary>
    private void Accepted(RunRecorder recorder, ReserveOperation op, CancellationToken ct)
    {
        switch (op.Then?.Action)
        {
            case null:
                Fates[op.ReservationId] = CallerFate.Live;
                break;
            case FollowUp.LetExpire:
                Fates[op.ReservationId] = CallerFate.LeftToExpire;
                break;
            default:
                Fates[op.ReservationId] = CallerFate.Held;
                Interlocked.Increment(ref _inFlight);
                recorder.Started();
                _ = FollowUpAsync(recorder, op, op.Then, ct);
                break;
        }
    }

    /// <summary>
    /// A reserve that ends without an accept after an attempt went unanswered may still hold the
    /// place: the gateway abandons what it sees go unanswered, but not an accept it delivered that
    /// the caller read too late (its own deadline timer fired first, seen under overload), and an
    /// Abandon of a later attempt does not undo an earlier one's accept. Checkout then releases the
    /// reservation rather than leave the customer's place taken (the client contract in
    /// gateway/README.md); a target without releases leaves it at that. Until the release is
    /// answered the caller does not know (no answer).
    /// </summary>
    private void ReleaseUnanswered(RunRecorder recorder, ReserveOperation op, CancellationToken ct)
    {
        Fates[op.ReservationId] = CallerFate.NoAnswer;
        if (_target is not IHoldingTarget) return;
        Interlocked.Increment(ref _inFlight);
        recorder.Started();
        _ = FollowUpAsync(recorder, op, new CheckoutStep(FollowUp.Release, TimeSpan.Zero), ct, afterNoAnswer: true);
    }

    /// <summary>
    /// The customer's confirm or release: retried, with the same reservation id, on a transport
    /// failure and on an UNAVAILABLE answer (both calls are idempotent and never abandoned by the
    /// gateway). Latency runs from the actual send: when it is sent is the customer's business.
    /// </summary>
    private async Task FollowUpAsync(RunRecorder recorder, ReserveOperation op, CheckoutStep step, CancellationToken ct, bool afterNoAnswer = false)
    {
        var kind = step.Action == FollowUp.Confirm ? OperationKind.Confirm : OperationKind.Release;
        try
        {
            await Task.Delay(step.After, ct).ConfigureAwait(false);
            var holding = (IHoldingTarget)_target;
            var sent = Stopwatch.GetTimestamp();
            var result = await _client.CallAsync(
                a => kind == OperationKind.Confirm ? holding.ConfirmAsync(op, a, ct) : holding.ReleaseAsync(op, a, ct),
                answer => answer.Reason == "UNAVAILABLE", ct).ConfigureAwait(false);
            var answer = result.Answer;
            Fates[op.ReservationId] = afterNoAnswer
                // Accepted, or refused (e.g. UNKNOWN_RESERVATION): nothing held when it was applied, as the
                // caller now believes. A release that went unanswered too leaves the reserve as unknown as it was.
                ? answer is { IsFailure: false } ? CallerFate.Released : CallerFate.NoAnswer
                : (kind, answer) switch
                {
                    (_, null) => CallerFate.Uncertain,
                    (OperationKind.Confirm, { Accepted: true }) => CallerFate.Live,
                    (OperationKind.Release, { Accepted: true }) => CallerFate.Released,
                    (_, { IsFailure: true }) => CallerFate.Uncertain,
                    (OperationKind.Confirm, _) => CallerFate.ConfirmRefused,
                    _ => CallerFate.Uncertain,
                };
            string? error = result.Error is not null ? ErrorName(result.Error) : answer is { IsFailure: true } ? answer.Reason : null;
            string? reject = answer is { Accepted: false, IsFailure: false } ? answer.Reason ?? "UNSPECIFIED" : null;
            recorder.Record(kind, ToMicros(Stopwatch.GetTimestamp() - sent), answer?.Accepted == true, reject, error, result.RetriedBecause, result.Lost);
        }
        catch (OperationCanceledException)
        {
            Fates[op.ReservationId] = afterNoAnswer ? CallerFate.NoAnswer : CallerFate.Uncertain;
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
            recorder.Finished();
        }
    }

    /// <summary>
    /// Calls are started on the thread pool; when a burst of answers arrives at once the pool must
    /// not wait for its slow thread injection before starting the calls due next. Only a few
    /// threads: the calls never block, and with 32 (as before) they spent their CPU contending
    /// for the gRPC channel's and the HTTP/2 pool's locks (profiled with dotnet-trace).
    /// </summary>
    private static void EnsureThreadPoolHeadroom()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        var wanted = Math.Max(4, Environment.ProcessorCount * 2);
        if (workers < wanted) ThreadPool.SetMinThreads(wanted, Math.Max(io, wanted));
    }

    public static string ErrorName(Exception e) => e switch
    {
        RpcException rpc => $"grpc {rpc.StatusCode}",
        OperationCanceledException => "cancelled",
        TimeoutException => "timeout", // RedisTimeoutException included
        Npgsql.PostgresException pg => $"postgres {pg.SqlState}",
        Npgsql.NpgsqlException { InnerException: TimeoutException } => "timeout",
        StackExchange.Redis.RedisConnectionException => "redis connection",
        _ => e.GetType().Name,
    };

    private static long ToMicros(long ticks) => ticks * 1_000_000 / Stopwatch.Frequency;

    private void PrintHeader(string label, double rate)
    {
        _console.WriteLine();
        _console.WriteLine($"== {_target.Name} / {label}: {rate:0} ops/s ==");
        _console.WriteLine("   t(s)  res/s  read/s | reserve ms p50    p99   p999    max | read ms p50    p99   p999    max | accepts  rejects                 errors | in-flight  progress");
    }

    private void Tick(RunRecorder recorder, string label, double multiplier, TimeSpan duration, long phaseStart, bool force)
    {
        var interval = recorder.SwapInterval();
        var res = interval[(int)OperationKind.Reserve];
        var read = interval[(int)OperationKind.Read];
        if (!force && res.Count + read.Count == 0) return;
        var runSeconds = Stopwatch.GetElapsedTime(_runStart).TotalSeconds;
        var phaseSeconds = Stopwatch.GetElapsedTime(phaseStart).TotalSeconds;
        Timeline.Add(new TimelinePoint(Math.Round(runSeconds, 2), label, multiplier,
            new TimelineOp(res.Count, res.PercentileMs(50), res.PercentileMs(99), res.MaxMs, res.Accepted, res.Failures),
            new TimelineOp(read.Count, read.PercentileMs(50), read.PercentileMs(99), read.MaxMs, read.Accepted, read.Failures),
            InFlight));
        var rejects = res.Rejects.Count == 0 ? "-" : string.Join(" ", res.Rejects.Select(r => $"{r.Key}:{r.Value}"));
        var progress = Math.Clamp(phaseSeconds / duration.TotalSeconds, 0, 1);
        var bar = new string('#', (int)(progress * 20)).PadRight(20, '.');
        _console.WriteLine(
            $"{phaseSeconds,7:0.0} {res.Count,6} {read.Count,7} | {res.PercentileMs(50),13:0.00} {res.PercentileMs(99),6:0.00} {res.PercentileMs(99.9),6:0.00} {res.MaxMs,6:0.0} " +
            $"| {read.PercentileMs(50),10:0.00} {read.PercentileMs(99),6:0.00} {read.PercentileMs(99.9),6:0.00} {read.MaxMs,6:0.0} " +
            $"| {res.Accepted,7}  {Truncate(rejects, 22),-22} {res.Failures + read.Failures,6} | {InFlight,9}  [{bar}] {progress * 100,3:0}%");
    }

    private static string Truncate(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";

    /// <summary>
    /// Sleeps until the due time with nanosleep on Linux (~60 us late), so the dispatcher neither
    /// burns a core spinning nor adds a millisecond of Thread.Sleep granularity to every latency.
    /// </summary>
    private static void WaitUntil(long due)
    {
        while (true)
        {
            var remaining = due - Stopwatch.GetTimestamp();
            if (remaining <= 0) return;
            var nanos = remaining * 1_000_000_000 / Stopwatch.Frequency;
            if (OperatingSystem.IsLinux())
            {
                var spec = new TimeSpec { Seconds = nanos / 1_000_000_000, Nanoseconds = nanos % 1_000_000_000 };
                _ = NativeMethods.nanosleep(ref spec, IntPtr.Zero);
            }
            else
            {
                Thread.Sleep(TimeSpan.FromTicks(Math.Max(1, remaining * TimeSpan.TicksPerSecond / Stopwatch.Frequency)));
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    private static partial class NativeMethods
    {
        [LibraryImport("libc", SetLastError = false)]
        internal static partial int nanosleep(ref TimeSpec request, IntPtr remaining);
    }
}
