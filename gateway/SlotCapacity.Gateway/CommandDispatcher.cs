using System.Diagnostics;
using Confluent.Kafka;
using Google.Protobuf;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>What became of a command sent for a call: its reply, or why there is none.</summary>
public sealed record CommandOutcome(SlotReply? Reply, CommandOutcome.Miss Missed, string Why)
{
    public enum Miss { None, NoReplyPartition, NotWritten, DeadlineMissed }

    public static CommandOutcome Answered(SlotReply reply) => new(reply, Miss.None, "");
    public static CommandOutcome NotAnswered(Miss missed, string why, bool abandoned = false) => new(null, missed, why) { Abandoned = abandoned };

    /// <summary>No reply came in time and an Abandon was written for the reservation.</summary>
    public bool Abandoned { get; private init; }
}

/// <summary>
/// The write path: names one of this instance's reply partitions in the command, writes it keyed by
/// slot, and waits for the reply until the call's deadline. On a miss of a Reserve it writes an
/// Abandon for the reservation on the same key: the idempotent producer keeps the two in order in the
/// slot's partition, so the processor sees the Reserve (if it was written at all) before the Abandon
/// and a late accept is undone.
/// </summary>
public sealed class CommandDispatcher : IDisposable
{
    private readonly GatewaySettings settings;
    private readonly ReplyRouter router;
    private readonly ReplyListener replies;
    private readonly ILogger<CommandDispatcher> logger;
    private readonly IProducer<string, byte[]> producer;
    private volatile string? fatal;

    /// <summary>Set when the producer failed for good; the gateway is then not ready.</summary>
    public string? FatalError => fatal;

    public CommandDispatcher(GatewaySettings settings, ReplyRouter router, ReplyListener replies, ILogger<CommandDispatcher> logger)
    {
        this.settings = settings;
        this.router = router;
        this.replies = replies;
        this.logger = logger;
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
        producer = new ProducerBuilder<string, byte[]>(config)
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
    /// <paramref name="deadline"/> (a Stopwatch timestamp). <paramref name="abandonOnMiss"/> names the
    /// reservation to abandon when no reply comes in time.
    /// </summary>
    public async Task<CommandOutcome> SendAsync(SlotCommand command, long deadline, DateTimeOffset deadlineAt,
        string? abandonOnMiss, CancellationToken callAborted)
    {
        if (!replies.TryPickPartition(out var replyPartition))
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.NoReplyPartition, "this gateway owns no reply partition yet (starting, or more gateways than reply partitions)");

        var id = Guid.NewGuid().ToString("N");
        command.CommandId = id;
        command.CorrelationId = id;
        command.ReplyPartition = replyPartition;
        command.DeadlineUnixMs = deadlineAt.ToUnixTimeMilliseconds();

        var pending = router.Register(id);
        try
        {
            producer.Produce(settings.Topics.Commands, new Message<string, byte[]> { Key = command.Slot, Value = command.ToByteArray() },
                report => CommandDelivered(report, command));
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException)
        {
            // Not written: no reply can come and there is nothing to abandon.
            router.Cancel(id);
            logger.LogWarning("Could not write command {CommandId} for slot {Slot}: {Reason}", id, command.Slot, e.Message);
            return CommandOutcome.NotAnswered(CommandOutcome.Miss.NotWritten, "could not write the command to Kafka: " + e.Message);
        }

        var reply = await router.WaitAsync(pending, Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline), callAborted).ConfigureAwait(false);
        if (reply is not null) return CommandOutcome.Answered(reply);

        if (abandonOnMiss is not null) Abandon(command.Slot, abandonOnMiss, id);
        return CommandOutcome.NotAnswered(CommandOutcome.Miss.DeadlineMissed, "no reply within the deadline", abandoned: abandonOnMiss is not null);
    }

    /// <summary>Writes an Abandon (no reply wanted) behind the missed command on the same slot key.</summary>
    private void Abandon(string slot, string reservationId, string missedCommandId)
    {
        var abandon = new SlotCommand
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Slot = slot,
            Abandon = new Abandon { ReservationId = reservationId },
        };
        logger.LogWarning("Deadline missed for command {CommandId}: abandoning reservation {ReservationId} on slot {Slot} with command {AbandonCommandId}",
            missedCommandId, reservationId, slot, abandon.CommandId);
        try
        {
            producer.Produce(settings.Topics.Commands, new Message<string, byte[]> { Key = slot, Value = abandon.ToByteArray() },
                report => CommandDelivered(report, abandon));
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException)
        {
            logger.LogError("Could not write Abandon for reservation {ReservationId} on slot {Slot}: {Reason}; a late accept of it would hold capacity",
                reservationId, slot, e.Message);
        }
    }

    private void CommandDelivered(DeliveryReport<string, byte[]> report, SlotCommand command)
    {
        if (report.Error.IsError)
            logger.LogError("Command {CommandId} ({Kind}) for slot {Slot} was not written: {Reason}",
                command.CommandId, command.BodyCase, command.Slot, report.Error.Reason);
    }

    /// <summary>Waits until every command written so far (Abandons included) is acknowledged.</summary>
    public void Flush(TimeSpan timeout)
    {
        var left = producer.Flush(timeout);
        if (left > 0) logger.LogError("{Count} commands still unacknowledged after {Timeout}", left, timeout);
    }

    public void Dispose() => producer.Dispose();
}
