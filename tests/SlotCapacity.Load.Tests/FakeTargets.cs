using System.Collections.Concurrent;
using System.Diagnostics;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

/// <summary>
/// An in-memory target that answers at once. With <c>enforceCapacity</c> false it accepts every
/// reservation on the first fleet counter (an overselling system), and its readback reports the
/// counters it actually incremented.
/// </summary>
internal sealed class InstantTarget(bool enforceCapacity) : ITarget
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(string, CounterKind, string), long> _used = [];
    private readonly HashSet<string> _ids = [];

    public ConcurrentQueue<long> CallTimestamps { get; } = new();
    public string Name => enforceCapacity ? "instant" : "overselling";
    public string Endpoint => "in-process";
    public string Notes => "test double";

    public Task PrepareAsync(SlotPlan plan, CancellationToken ct) => Task.CompletedTask;

    public Task<ReserveOutcome> ReserveAsync(ReserveOperation op, CancellationToken ct)
    {
        CallTimestamps.Enqueue(Stopwatch.GetTimestamp());
        lock (_lock)
        {
            var slot = op.Slot.Id;
            var fleet = op.Slot.Config.Fleet
                .FirstOrDefault(f => !enforceCapacity || _used.GetValueOrDefault((slot, CounterKind.Fleet, f.Name)) < f.CapacityOrders);
            if (fleet is null) return Task.FromResult(ReserveOutcome.Reject("SLOT_FULL"));
            _used[(slot, CounterKind.Fleet, fleet.Name)] = _used.GetValueOrDefault((slot, CounterKind.Fleet, fleet.Name)) + 1;
            _ids.Add(op.ReservationId);
            return Task.FromResult(ReserveOutcome.Accept(fleet.Name));
        }
    }

    public Task<ReadOutcome> ReadAsync(ReadOperation op, CancellationToken ct)
    {
        CallTimestamps.Enqueue(Stopwatch.GetTimestamp());
        return Task.FromResult(new ReadOutcome(7, 7));
    }

    public Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct)
    {
        lock (_lock)
        {
            var counters = _used.Select(kv => new CounterReading(kv.Key.Item1, kv.Key.Item2, kv.Key.Item3, kv.Value, kv.Value)).ToList();
            return Task.FromResult(new Readback("fake", counters, new HashSet<string>(_ids), []));
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
