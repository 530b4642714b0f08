using System.Diagnostics;
using Confluent.Kafka;
using Google.Protobuf;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>What became of a command sent for a call: its reply, or why there is none.</summary>
public sealed record CommandOutcome(SlotReply? Reply, CommandOutcome.Miss Missed, string Why)
{
    public enum Miss { None, NoReplyPartition, PartitionDark, NotWritten, DeadlineMissed, CallerGone }

    public static CommandOutcome Answered(SlotReply reply) => new(reply, Miss.None, "");
    public static CommandOutcome NotAnswered(Miss missed, string why, bool abandoned = false) => new(null, missed, why) { Abandoned = abandoned };

    /// <summary>No reply came in time and an Abandon was written for the reservation.</summary>
    public bool Abandoned { get; private init; }
}

/// <summary>Why a reservation is abandoned (the cause label of gateway.abandons).</summary>
public enum AbandonCause
{
    /// <summary>No reply by the gateway's deadline.</summary>
    Deadline,
    /// <summary>The caller cancelled, or its own deadline passed, before the reply.</summary>
    CallerGone,
    /// <summary>The accept was answered but the response did not reach the caller (reset, or the
    /// caller's deadline fired while it was being sent).</summary>
    NotDelivered,
    /// <summary>The producer reported the Reserve not written, but it may have reached the broker.</summary>
    WriteUncertain,
}

/// <summary>
/// The write path: names one of this instance's reply partitions in the command, writes it keyed by
/// slot, and waits for the reply until the call's deadline. When a Reserve's caller will not see an
/// accept (no reply in time, the caller gone, the answer not delivered) it writes an Abandon for the
/// reservation on the same key: the idempotent producer keeps the two in order in the slot's partition,
/// so the processor sees the Reserve (if it was written at all) before the Abandon and a late accept is
/// undone. A failed Abandon write is retried with backoff, still behind its Reserve.
/// </summary>
public sealed class CommandDispatcher : IDisposable
{
    private readonly GatewaySettings settings;
    private readonly ReplyRouter router;
    private readonly ReplyListener replies;
    private readonly ILogger<CommandDispatcher> logger;
    private readonly IProducer<string, byte[]> producer;
    private volatile string? fatal;
    private long abandonsInProgress, abandonRetries, abandonsFailed, orphanedAccepts;

    private readonly GatewayMetrics metrics;
    private readonly DarkPartitions dark;
    // A failing-over partition makes an Abandon for every call: one Warning line a second, each one
    // Debug, and gateway.abandons counts them all.
    private readonly LogThrottle abandonLines = new(TimeSpan.FromSeconds(1));

    /// <summary>Set when the producer failed for good; the gateway is then not ready.</summary>
    public string? FatalError => fatal;

    /// <summary>Abandon writes retried, Abandons given up, and accepted Reserves of earlier incarnations seen.</summary>
    public (long Retries, long Failed, long OrphanedAccepts) AbandonCounts =>
        (Interlocked.Read(ref abandonRetries), Interlocked.Read(ref abandonsFailed), Interlocked.Read(ref orphanedAccepts));

    public CommandDispatcher(GatewaySettings settings, ReplyRouter router, ReplyListener replies, GatewayMetrics metrics, ILogger<CommandDispatcher> logger)
    {
        this.settings = settings;
        this.router = router;
        this.replies = replies;
        this.metrics = metrics;
        this.logger = logger;
        dark = new DarkPartitions(settings.DarkPartitionAfter, settings.DarkPartitionProbeEvery);
        var config = new ProducerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            ClientId = $"{settings.Instance}-commands",
            EnableIdempotence = true,
            Acks = Acks.All,
            // A checkout call waits on this record: send at once rather than batch.
            LingerMs = 0.5,
            SocketNagleDisable = true,
        };
        producer = new ProducerBuilder<string, byte[]>(KafkaEndpoint.Secured(config))
            .SetErrorHandler((_, e) =>
            {
                if (!e.IsFatal)
                {
                    logger.LogWarning("Command producer error {Code}: {Reason}", e.Code, e.Reason);
                    return;
                }
                // An idempotent producer that hit a fatal error (e.g. a sequence gap) accepts nothing
                // more: the instance reports not ready so it gets restarted, and calls are answered
                // UNAVAILABLE meanwhile.
                fatal = e.Reason;
                logger.LogCritical("Command producer failed for good ({Code}: {Reason}); this gateway must be restarted", e.Code, e.Reason);
            })
            .SetLogHandler((_, m) => logger.LogDebug("librdkafka {Facility}: {Message}", m.Facility, m.Message))
            .Build();
    }

    /// <summary>
    /// Sends <paramref name="command"/> (body and slot set by the caller) and waits for its reply until
    /// <paramref name="deadline"/> (a Stopwatch timestamp) or until the caller is gone
    /// (<paramref name="callAborted"/>). <paramref name="abandonOnMiss"/> names the reservation to abandon
    /// when the caller will not see the reply.
    /// </summary>
    public async Task<CommandOutcome> SendAsync(SlotCommand command, long deadline, DateTimeOffset deadlineAt,
        string? abandonOnMiss, CancellationToken callAborted)
    {
        if (callAborted.IsCancellationRequested || Stopwatch.GetTimestamp() >= deadline)
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.CallerGone, "the caller cancelled or its deadline passed before the command was written (nothing was written)");
        if (!replies.TryPickPartition(out var replyPartition))
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.NoReplyPartition, "this gateway owns no reply partition yet (starting, or more gateways than reply partitions)");

        if (!dark.MaySend(command.Slot, Stopwatch.GetTimestamp(), out var darkPartition))
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.PartitionDark,
                $"partition {darkPartition} of {settings.Topics.Commands} has answered nothing in time for over {settings.DarkPartitionAfter.TotalSeconds:0.#} s (a processor failing over?): not written, retry shortly");

        var id = CorrelationId.New(router.Incarnation, reserve: abandonOnMiss is not null).ToString();
        command.CommandId = id;
        command.CorrelationId = id;
        command.ReplyPartition = replyPartition;
        command.DeadlineUnixMs = deadlineAt.ToUnixTimeMilliseconds();

        var pending = router.Register(id);
        try
        {
            producer.Produce(settings.Topics.Commands, new Message<string, byte[]> { Key = command.Slot, Value = command.ToByteArray() },
                report => CommandDelivered(report, command, id));
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException)
        {
            // Not written: no reply can come and there is nothing to abandon.
            router.Cancel(id);
            logger.LogWarning("Could not write command {CommandId} for slot {Slot}: {Reason}", id, command.Slot, e.Message);
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.NotWritten, "could not write the command to Kafka: " + e.Message);
        }

        SlotReply? reply;
        try
        {
            reply = await router.WaitAsync(pending, Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline), callAborted).ConfigureAwait(false);
        }
        catch (CommandNotWrittenException e)
        {
            // Ends the call now rather than at the deadline. A write that may have reached the broker
            // could still be applied: a Reserve is then abandoned, behind it on the same key.
            if (abandonOnMiss is not null && e.PossiblyWritten) Abandon(command.Slot, abandonOnMiss, AbandonCause.WriteUncertain, id);
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.NotWritten, "could not write the command to Kafka: " + e.Message,
                abandoned: abandonOnMiss is not null && e.PossiblyWritten);
        }
        // A reply that raced the caller's cancellation would be answered to nobody: an accept in it
        // would hold capacity for a caller told nothing, so it is undone like a miss.
        var callerGone = callAborted.IsCancellationRequested;
        if (reply is not null)
        {
            if (dark.Answered(command.Slot, Stopwatch.GetTimestamp(), out var lit))
                logger.LogInformation("Partition {Partition} of {Topic} answers again", lit, settings.Topics.Commands);
        }
        else if (!callerGone && dark.Missed(command.Slot, Stopwatch.GetTimestamp(), out var partition))
            logger.LogWarning("Partition {Partition} of {Topic} is dark: no command answered in time for over {DarkAfterMs} ms; calls for its slots are answered UNAVAILABLE without writing, but for a probe every {ProbeMs} ms",
                partition, settings.Topics.Commands, settings.DarkPartitionAfter.TotalMilliseconds, settings.DarkPartitionProbeEvery.TotalMilliseconds);
        if (reply is not null && !(callerGone && reply.Accepted && abandonOnMiss is not null)) return CommandOutcome.Answered(reply);

        var cause = callerGone ? AbandonCause.CallerGone : AbandonCause.Deadline;
        if (abandonOnMiss is not null) Abandon(command.Slot, abandonOnMiss, cause, id);
        return callerGone
            ? CommandOutcome.NotAnswered(CommandOutcome.Miss.CallerGone, "the caller cancelled or its deadline passed before the reply", abandoned: abandonOnMiss is not null)
            : CommandOutcome.NotAnswered(CommandOutcome.Miss.DeadlineMissed, "no reply within the deadline", abandoned: abandonOnMiss is not null);
    }

    /// <summary>
    /// Writes an Abandon (no reply wanted) for <paramref name="reservationId"/> on the slot's key, behind
    /// any Reserve of it this instance wrote. A failed write is retried (backoff doubling from
    /// <see cref="GatewaySettings.AbandonRetryBackoff"/>, <see cref="GatewaySettings.AbandonAttempts"/> in all).
    /// </summary>
    private static readonly TimeSpan MaxAbandonRetryWait = TimeSpan.FromSeconds(2);

    public void Abandon(string slot, string reservationId, AbandonCause cause, string missedCommandId)
    {
        var abandon = new SlotCommand
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Slot = slot,
            Abandon = new Abandon { ReservationId = reservationId, ReserveCommandId = missedCommandId },
        };
        metrics.Abandoned(cause);
        if (abandonLines.TryTake(Stopwatch.GetTimestamp(), out var leftOut))
            logger.LogWarning("{Cause} for command {CommandId}: abandoning reservation {ReservationId} on slot {Slot} with command {AbandonCommandId} ({LeftOut} more abandoned since the last such line)",
                CauseText(cause), missedCommandId, reservationId, slot, abandon.CommandId, leftOut);
        else
            logger.LogDebug("{Cause} for command {CommandId}: abandoning reservation {ReservationId} on slot {Slot} with command {AbandonCommandId}",
                CauseText(cause), missedCommandId, reservationId, slot, abandon.CommandId);
        Interlocked.Increment(ref abandonsInProgress);
        WriteAbandon(abandon, attempt: 1);
    }

    private static string CauseText(AbandonCause cause) => cause switch
    {
        AbandonCause.Deadline => "Deadline missed",
        AbandonCause.CallerGone => "Caller gone before the reply",
        AbandonCause.WriteUncertain => "Write reported failed but possibly persisted",
        _ => "Accept not delivered to the caller",
    };

    private void WriteAbandon(SlotCommand abandon, int attempt)
    {
        try
        {
            producer.Produce(settings.Topics.Commands, new Message<string, byte[]> { Key = abandon.Slot, Value = abandon.ToByteArray() },
                report =>
                {
                    if (report.Error.IsError) AbandonNotWritten(abandon, attempt, report.Error.Reason);
                    else Interlocked.Decrement(ref abandonsInProgress);
                });
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException)
        {
            AbandonNotWritten(abandon, attempt, e.Message);
        }
    }

    private void AbandonNotWritten(SlotCommand abandon, int attempt, string reason)
    {
        var reservationId = abandon.Abandon.ReservationId;
        if (attempt >= settings.AbandonAttempts)
        {
            Interlocked.Increment(ref abandonsFailed);
            Interlocked.Decrement(ref abandonsInProgress);
            metrics.AbandonFailed();
            logger.LogError("Abandon {AbandonCommandId} of reservation {ReservationId} on slot {Slot} not written after {Attempts} attempts ({Reason}); a late accept of it holds capacity until the hold expires or it is released",
                abandon.CommandId, reservationId, abandon.Slot, attempt, reason);
            return;
        }
        // Doubling up to 2 s: after a refused record the idempotent producer fails those behind it until
        // it has reset its sequence, which took longer than the first few retries on a loaded machine.
        var wait = TimeSpan.FromTicks(Math.Min(settings.AbandonRetryBackoff.Ticks * (1L << (attempt - 1)), MaxAbandonRetryWait.Ticks));
        Interlocked.Increment(ref abandonRetries);
        metrics.AbandonRetried();
        logger.LogWarning("Abandon {AbandonCommandId} of reservation {ReservationId} on slot {Slot} not written (attempt {Attempt} of {Attempts}: {Reason}); retrying in {RetryMs} ms",
            abandon.CommandId, reservationId, abandon.Slot, attempt, settings.AbandonAttempts, reason, wait.TotalMilliseconds);
        // Off the librdkafka callback thread, which must not block on a full queue.
        _ = Task.Delay(wait).ContinueWith(_ => WriteAbandon(abandon, attempt + 1), TaskScheduler.Default);
    }

    /// <summary>
    /// A reply on this instance's partition to a call of an earlier incarnation (see <see cref="CorrelationId"/>).
    /// An accepted Reserve there holds capacity for a caller that got a transport error at best. It is
    /// reported, not abandoned: the client contract is to retry such a call with the same reservation id,
    /// and that retry (answered accepted from the engine's state) could come before an Abandon in the
    /// slot's partition; the Abandon would then free what the retry was just told it holds.
    /// </summary>
    public void Orphaned(SlotReply reply, CorrelationId id)
    {
        if (!id.Reserve || !reply.Accepted || reply.Replayed) return;
        Interlocked.Increment(ref orphanedAccepts);
        metrics.OrphanedAccept();
        logger.LogWarning("Reservation {ReservationId} on slot {Slot} was accepted ({Status}) for a call of gateway incarnation {Incarnation}, which no longer reads this reply partition (it crashed or restarted, or, in group mode, lost the partition and abandons the call at its deadline); a caller that saw no answer must retry with the same reservation id, or the hold expires",
            reply.ReservationId, reply.Slot, reply.Status, id.Incarnation);
    }

    private void CommandDelivered(DeliveryReport<string, byte[]> report, SlotCommand command, string correlationId)
    {
        if (!report.Error.IsError)
        {
            dark.Delivered(command.Slot, report.Partition.Value);
            return;
        }
        logger.LogError("Command {CommandId} ({Kind}) for slot {Slot} was not written ({Persistence}): {Reason}",
            command.CommandId, command.BodyCase, command.Slot, report.Status, report.Error.Reason);
        router.NotWritten(correlationId, report.Error.Reason, possiblyWritten: report.Status != PersistenceStatus.NotPersisted);
    }

    /// <summary>Waits until every command written so far is acknowledged and every Abandon written or
    /// given up (retries included), within <paramref name="timeout"/>.</summary>
    public void Flush(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Interlocked.Read(ref abandonsInProgress) > 0 && clock.Elapsed < timeout) Thread.Sleep(10);
        if (Interlocked.Read(ref abandonsInProgress) is > 0 and var unfinished)
            logger.LogError("{Count} Abandons still unwritten after {Timeout}", unfinished, timeout);
        var left = producer.Flush(timeout);
        if (left > 0) logger.LogError("{Count} commands still unacknowledged after {Timeout}", left, timeout);
    }

    public void Dispose() => producer.Dispose();
}
