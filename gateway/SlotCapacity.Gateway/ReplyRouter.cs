using System.Collections.Concurrent;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Matches replies to the calls waiting for them by correlation id. A reply nobody waits for is
/// dropped with a debug log, classified as late (its call already answered UNAVAILABLE at the
/// deadline), duplicate (its call already had a reply: a re-delivered command) or unknown.
/// </summary>
public sealed class ReplyRouter(ILogger<ReplyRouter> logger, GatewayMetrics metrics)
{
    private enum Ending { Answered, MissedDeadline }

    /// <summary>How many finished correlation ids are remembered to classify stray replies.</summary>
    private const int RememberedEndings = 65_536;

    private readonly ConcurrentDictionary<string, TaskCompletionSource<SlotReply>> waiting = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Ending> endings = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> endingOrder = new();
    private readonly Lock endingLock = new();

    private long droppedLate, droppedDuplicate, droppedUnknown;

    /// <summary>This process's part of every correlation id it hands out (see <see cref="CorrelationId"/>).</summary>
    public string Incarnation { get; } = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));

    /// <summary>Replies dropped since start: (late, duplicate, unknown).</summary>
    public (long Late, long Duplicate, long Unknown) Dropped =>
        (Interlocked.Read(ref droppedLate), Interlocked.Read(ref droppedDuplicate), Interlocked.Read(ref droppedUnknown));

    /// <summary>A registered call: what <see cref="WaitAsync"/> waits on.</summary>
    public sealed class Pending(string correlationId, TaskCompletionSource<SlotReply> waiter)
    {
        public string CorrelationId { get; } = correlationId;
        internal TaskCompletionSource<SlotReply> Waiter { get; } = waiter;
    }

    /// <summary>Registers a call before its command is written, so even an instant reply finds it.</summary>
    public Pending Register(string correlationId)
    {
        var waiter = new TaskCompletionSource<SlotReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!waiting.TryAdd(correlationId, waiter))
            throw new InvalidOperationException($"correlation id {correlationId} is already waiting");
        return new Pending(correlationId, waiter);
    }

    /// <summary>Waits for the reply until <paramref name="timeout"/> or <paramref name="ct"/>; null when none came.
    /// After null, a reply that still arrives is dropped as late.</summary>
    public async Task<SlotReply?> WaitAsync(Pending pending, TimeSpan timeout, CancellationToken ct)
    {
        var (correlationId, waiter) = (pending.CorrelationId, pending.Waiter);
        try
        {
            var reply = timeout > TimeSpan.Zero ? await waiter.Task.WaitAsync(timeout, ct).ConfigureAwait(false) : null;
            if (reply is not null) return reply;
        }
        catch (TimeoutException) { }
        catch (OperationCanceledException) { }
        // The reply may have raced the timer: Deliver removes the waiter before completing it.
        lock (endingLock)
        {
            if (waiting.TryRemove(correlationId, out _))
            {
                Remember(correlationId, Ending.MissedDeadline);
                return null;
            }
        }
        return await waiter.Task.ConfigureAwait(false);
    }

    /// <summary>Forgets a call whose command could not be written (no reply can come).</summary>
    public void Cancel(string correlationId) => waiting.TryRemove(correlationId, out _);

    /// <summary>
    /// Ends the wait of a call whose command the producer reports not written: its
    /// <see cref="WaitAsync"/> throws <see cref="CommandNotWrittenException"/> at once instead of
    /// running into the deadline. A call already answered or ended is left alone.
    /// </summary>
    public void NotWritten(string correlationId, string reason, bool possiblyWritten)
    {
        if (waiting.TryRemove(correlationId, out var waiter))
            waiter.TrySetException(new CommandNotWrittenException(reason, possiblyWritten));
    }

    /// <summary>Hands a reply to its waiting call; returns false when nobody waits (dropped).</summary>
    public bool Deliver(SlotReply reply)
    {
        string kind;
        // A call's end and its record are one step: a reply racing the deadline read as neither
        // waiting nor ended, "unknown", between the two.
        lock (endingLock)
        {
            if (waiting.TryRemove(reply.CorrelationId, out var waiter))
            {
                Remember(reply.CorrelationId, Ending.Answered);
                waiter.TrySetResult(reply);
                return true;
            }
            kind = endings.TryGetValue(reply.CorrelationId, out var ending)
                ? ending == Ending.Answered ? "duplicate" : "late"
                : "unknown";
        }
        if (kind == "duplicate") Interlocked.Increment(ref droppedDuplicate);
        else if (kind == "late") Interlocked.Increment(ref droppedLate);
        else Interlocked.Increment(ref droppedUnknown);
        metrics.ReplyDropped(kind);
        logger.LogDebug("Dropped {Kind} reply {CorrelationId} for reservation {ReservationId} on slot {Slot} (command {CommandPartition}:{CommandOffset}, accepted {Accepted})",
            kind, reply.CorrelationId, reply.ReservationId, reply.Slot, reply.CommandPartition, reply.CommandOffset, reply.Accepted);
        return false;
    }

    private void Remember(string correlationId, Ending ending)
    {
        endings[correlationId] = ending;
        endingOrder.Enqueue(correlationId);
        while (endingOrder.Count > RememberedEndings && endingOrder.TryDequeue(out var oldest))
            endings.TryRemove(oldest, out _);
    }
}

/// <summary>The producer reported a command not written; <see cref="PossiblyWritten"/> when it may
/// still have reached the broker (a timeout after sending), so it may be applied.</summary>
public sealed class CommandNotWrittenException(string reason, bool possiblyWritten) : Exception(reason)
{
    public bool PossiblyWritten { get; } = possiblyWritten;
}
