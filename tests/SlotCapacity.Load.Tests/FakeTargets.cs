using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

/// <summary>
/// An in-memory target that answers at once and models holds (expiring by the wall clock),
/// confirms and releases. With <c>enforceCapacity</c> false it accepts every reservation on the
/// first fleet counter (an overselling system); with <c>keepReleased</c> it answers a release
/// accepted but keeps the capacity (a phantom booking). Its readback reports what it actually holds.
/// </summary>
internal sealed class InstantTarget(bool enforceCapacity, bool keepReleased = false) : IHoldingTarget
{
    private sealed class Booking(string slot, string fleet, DateTimeOffset? holdUntil)
    {
        public string Slot { get; } = slot;
        public string Fleet { get; } = fleet;
        public DateTimeOffset? HoldUntil { get; set; } = holdUntil;
        public bool Ended { get; set; }
        public bool Live(DateTimeOffset now) => !Ended && (HoldUntil is null || HoldUntil > now);
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Booking> _bookings = [];

    public ConcurrentQueue<long> CallTimestamps { get; } = new();
    public int Confirms;
    public int Releases;
    public string Name => enforceCapacity ? "instant" : "overselling";
    public string Endpoint => "in-process";
    public string Notes => "test double";
    public IReadOnlyList<WatchedProcess> Processes => [];

    public Task PrepareAsync(SlotPlan plan, CancellationToken ct) => Task.CompletedTask;

    public Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        CallTimestamps.Enqueue(Stopwatch.GetTimestamp());
        lock (_lock)
        {
            var now = DateTimeOffset.UtcNow;
            var slot = op.Slot.Id;
            var fleet = op.Slot.Config.Fleet.FirstOrDefault(f =>
                !enforceCapacity || _bookings.Values.Count(b => b.Slot == slot && b.Fleet == f.Name && b.Live(now)) < f.CapacityOrders);
            if (fleet is null) return Task.FromResult(ReserveOutcome.Reject("SLOT_FULL"));
            _bookings[op.ReservationId] = new Booking(slot, fleet.Name, op.HoldSeconds > 0 ? now.AddSeconds(op.HoldSeconds) : null);
            return Task.FromResult(ReserveOutcome.Accept(fleet.Name));
        }
    }

    public Task<ReserveOutcome> ConfirmAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        Interlocked.Increment(ref Confirms);
        lock (_lock)
        {
            if (!_bookings.TryGetValue(op.ReservationId, out var b) || !b.Live(DateTimeOffset.UtcNow))
                return Task.FromResult(ReserveOutcome.Reject("INVALID"));
            b.HoldUntil = null;
            return Task.FromResult(ReserveOutcome.Accept(b.Fleet));
        }
    }

    public Task<ReserveOutcome> ReleaseAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        Interlocked.Increment(ref Releases);
        lock (_lock)
        {
            if (!_bookings.TryGetValue(op.ReservationId, out var b)) return Task.FromResult(ReserveOutcome.Reject("UNKNOWN_RESERVATION"));
            if (!keepReleased) b.Ended = true;
            return Task.FromResult(ReserveOutcome.Accept(b.Fleet));
        }
    }

    public Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct)
    {
        CallTimestamps.Enqueue(Stopwatch.GetTimestamp());
        return Task.FromResult(new ReadOutcome(7, 7));
    }

    public Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct)
    {
        lock (_lock)
        {
            var now = DateTimeOffset.UtcNow;
            var live = _bookings.Where(b => b.Value.Live(now)).ToDictionary(b => b.Key, b => b.Value.Slot);
            var counters = _bookings.Values.Where(b => b.Live(now)).GroupBy(b => (b.Slot, b.Fleet))
                .Select(g => new CounterReading(g.Key.Slot, CounterKind.Fleet, g.Key.Fleet, g.Count(), g.Count())).ToList();
            return Task.FromResult(new Readback("fake", counters, _bookings.Keys.ToHashSet(), [], live));
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// Fails the first attempt of every call it is told to (a transport failure, as a gateway going
/// away), then answers like <see cref="InstantTarget"/>. Records the attempt numbers it saw.
/// </summary>
internal sealed class FlakyTarget(Func<long, int, Exception?> failure) : ITarget
{
    private readonly InstantTarget _inner = new(enforceCapacity: true);

    public ConcurrentQueue<(long Sequence, int Attempt)> Attempts { get; } = new();
    public string Name => "flaky";
    public string Endpoint => "in-process";
    public string Notes => "test double";
    public IReadOnlyList<WatchedProcess> Processes => [];

    public static Exception Unavailable() => new RpcException(new Status(StatusCode.Unavailable, "connection refused"));

    public Task PrepareAsync(SlotPlan plan, CancellationToken ct) => Task.CompletedTask;

    public Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        Attempts.Enqueue((op.Sequence, attempt));
        return failure(op.Sequence, attempt) is { } e ? Task.FromException<ReserveOutcome>(e) : _inner.ReserveAsync(op, attempt, ct);
    }

    public Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct) => _inner.ReadAsync(op, attempt, ct);

    public Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct) =>
        _inner.ReadBackAsync(plan, accepted, ct);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// Books every reserve like <see cref="InstantTarget"/>, but the caller never sees the answers of
/// the ones it is told to: each of their attempts is applied and then fails DEADLINE_EXCEEDED, as an
/// accept that reached an overloaded client after its own deadline fired; with <c>refuseRetries</c>
/// only the first attempt is, and a retry is answered UNAVAILABLE (abandoned). Releases are answered
/// unless <c>releasesUnanswered</c>.
/// </summary>
internal sealed class LateAnswerTarget(Func<long, bool> answerLate, bool releasesUnanswered = false, bool refuseRetries = false) : IHoldingTarget
{
    private readonly InstantTarget _inner = new(enforceCapacity: true);

    public int Releases => _inner.Releases;
    public string Name => "late-answer";
    public string Endpoint => "in-process";
    public string Notes => "test double";
    public IReadOnlyList<WatchedProcess> Processes => [];

    public Task PrepareAsync(SlotPlan plan, CancellationToken ct) => Task.CompletedTask;

    public async Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        if (refuseRetries && attempt > 0 && answerLate(op.Sequence)) return ReserveOutcome.Reject("UNAVAILABLE");
        var outcome = await _inner.ReserveAsync(op, attempt, ct);
        if (answerLate(op.Sequence)) throw new RpcException(new Status(StatusCode.DeadlineExceeded, "deadline passed before the answer was read"));
        return outcome;
    }

    public Task<ReserveOutcome> ConfirmAsync(ReserveOperation op, int attempt, CancellationToken ct) => _inner.ConfirmAsync(op, attempt, ct);

    public Task<ReserveOutcome> ReleaseAsync(ReserveOperation op, int attempt, CancellationToken ct) =>
        releasesUnanswered
            ? Task.FromException<ReserveOutcome>(new RpcException(new Status(StatusCode.Unavailable, "connection refused")))
            : _inner.ReleaseAsync(op, attempt, ct);

    public Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct) => _inner.ReadAsync(op, attempt, ct);

    public Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct) =>
        _inner.ReadBackAsync(plan, accepted, ct);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
