using Confluent.Kafka;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>
/// Reads this instance's reply partitions, owned in one of two ways. With a <see cref="ReplyShare"/>
/// (GATEWAY_ORDINAL of GATEWAY_COUNT) the instance assigns its share by hand at start, positioned at
/// the end: no group, so no instance ever waits for a rebalance. Without one, every gateway joins one
/// consumer group on the replies topic, so the group coordinator gives each partition to exactly one
/// live instance. A partition
/// becomes usable (named in commands) only once it is assigned AND positioned: on assignment the
/// high watermark is queried and the partition is assigned at that offset, so any reply to a
/// command sent afterwards lies at or beyond the position and cannot be missed. No offsets are
/// committed: replies to a previous owner's calls are worthless to the next one.
/// Cooperative-sticky assignment keeps an instance's partitions through rebalances when another
/// instance joins or leaves, so calls keep flowing during a rolling restart.
/// </summary>
public sealed class ReplyListener : IDisposable
{
    private readonly GatewaySettings settings;
    private readonly ReplyRouter router;
    private readonly GatewayMetrics metrics;
    private readonly ILogger<ReplyListener> logger;
    private readonly IConsumer<string, byte[]> consumer;
    private readonly CancellationTokenSource stop = new();
    private readonly object ownedLock = new();
    private int[] owned = [];
    private int nextPick;
    private Thread? thread;
    private volatile string? fatal;

    /// <summary>How long a rebalance callback may spend positioning all its new partitions together.</summary>
    private static readonly TimeSpan PositioningBudget = TimeSpan.FromSeconds(3);

    /// <summary>Set when the reply consumer failed for good: this instance reads no reply any more,
    /// owns no partition (so no call names one) and reports not ready, to be restarted.</summary>
    public string? FatalError => fatal;

    /// <summary>Called for a reply no call of this process waits for and that another incarnation's
    /// call asked for (see <see cref="CorrelationId"/>).</summary>
    public event Action<SlotReply, CorrelationId>? Orphaned;

    public ReplyListener(GatewaySettings settings, ReplyRouter router, GatewayMetrics metrics, ILogger<ReplyListener> logger)
    {
        this.settings = settings;
        this.router = router;
        this.metrics = metrics;
        this.logger = logger;
        var config = new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            GroupId = GroupId(settings.Topics),
            ClientId = $"{settings.Instance}-replies",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Latest,
            PartitionAssignmentStrategy = PartitionAssignmentStrategy.CooperativeSticky,
            // The smallest session a Kafka broker accepts by default (group.min.session.timeout.ms):
            // a crashed gateway's partitions move on within 6 s. (The local cluster also paces each
            // rebalance round by it: session - 1 s.)
            SessionTimeoutMs = 6_000,
            HeartbeatIntervalMs = 1_000,
            FetchWaitMaxMs = settings.FetchWaitMaxMs,
            SocketNagleDisable = true,
        };
        consumer = new ConsumerBuilder<string, byte[]>(KafkaEndpoint.Secured(config))
            .SetPartitionsAssignedHandler((c, partitions) => Assigned(c, partitions))
            .SetPartitionsRevokedHandler((_, partitions) => Removed(partitions.Select(p => p.TopicPartition), "revoked"))
            .SetPartitionsLostHandler((_, partitions) => Removed(partitions.Select(p => p.TopicPartition), "lost"))
            .SetErrorHandler((_, e) =>
            {
                if (e.IsFatal) Failed(e.Code, e.Reason);
                else logger.LogWarning("Reply consumer error {Code}: {Reason}", e.Code, e.Reason);
            })
            .SetLogHandler((_, m) => logger.LogDebug("librdkafka {Facility}: {Message}", m.Facility, m.Message))
            .Build();
    }

    /// <summary>The consumer group shared by every gateway of one deployment (one topic prefix).</summary>
    public static string GroupId(Kafka.TopicNames topics) => topics.Prefix + "slot-gateway-replies";

    /// <summary>Partitions this instance owns and has positioned, i.e. may name in commands.</summary>
    public IReadOnlyList<int> OwnedPartitions => Volatile.Read(ref owned);

    /// <summary>Picks one owned partition round-robin; false while none is owned.</summary>
    public bool TryPickPartition(out int partition)
    {
        var current = Volatile.Read(ref owned);
        if (current.Length == 0)
        {
            partition = -1;
            return false;
        }
        partition = current[(int)((uint)Interlocked.Increment(ref nextPick) % (uint)current.Length)];
        return true;
    }

    public void Start(TimeSpan metadataTimeout)
    {
        if (settings.ReplyShare is { } share) AssignShare(share, metadataTimeout);
        else consumer.Subscribe(settings.Topics.Replies);
        thread = new Thread(Run) { IsBackground = true, Name = $"{settings.Instance}-replies" };
        thread.Start();
    }

    private void Run()
    {
        while (!stop.IsCancellationRequested && fatal is null)
        {
            ConsumeResult<string, byte[]>? record;
            try
            {
                record = consumer.Consume(stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            catch (ConsumeException e) when (e.Error.IsFatal)
            {
                Failed(e.Error.Code, e.Error.Reason);
                break;
            }
            catch (ConsumeException e)
            {
                logger.LogWarning("Reply consume failed on {TopicPartition}: {Reason}", e.ConsumerRecord?.TopicPartition, e.Error.Reason);
                continue;
            }
            if (record?.Message?.Value is not { } value) continue;
            SlotReply reply;
            try
            {
                reply = SlotReply.Parser.ParseFrom(value);
            }
            catch (Google.Protobuf.InvalidProtocolBufferException e)
            {
                metrics.ReplyDropped("malformed");
                logger.LogWarning("Dropped malformed reply at {TopicPartitionOffset}: {Reason}", record.TopicPartitionOffset, e.Message);
                continue;
            }
            if (!router.Deliver(reply) && CorrelationId.TryParse(reply.CorrelationId, out var id) && !id.IsFrom(router.Incarnation))
                Orphaned?.Invoke(reply, id);
        }
    }

    /// <summary>Assigns this instance's share at the partitions' current ends (see <see cref="Assigned"/>
    /// for why explicitly). A share with no partition is a configuration error.</summary>
    private void AssignShare(ReplyShare share, TimeSpan metadataTimeout)
    {
        int count;
        using (var admin = new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig { BootstrapServers = settings.BootstrapServers })).Build())
        {
            var topic = admin.GetMetadata(settings.Topics.Replies, metadataTimeout).Topics.Single();
            if (topic.Error.IsError)
                throw new Kafka.StartupException($"cannot read topic {settings.Topics.Replies}: {topic.Error.Reason}; create the topics first");
            count = topic.Partitions.Count;
        }
        var mine = share.Partitions(count);
        if (mine.Count == 0)
            throw new Kafka.StartupException($"GATEWAY_ORDINAL {share.Ordinal} of GATEWAY_COUNT {share.Count} owns none of the {count} partitions of {settings.Topics.Replies}; run at most {count} gateways");
        var positioned = Assigned(consumer, mine.Select(p => new TopicPartition(settings.Topics.Replies, p)).ToList());
        consumer.Assign(positioned);
    }

    private List<TopicPartitionOffset> Assigned(IConsumer<string, byte[]> c, List<TopicPartition> partitions)
    {
        // Cooperative rebalances end with an (often empty) incremental assignment for every member.
        if (partitions.Count == 0) return [];
        var positioned = new List<TopicPartitionOffset>(partitions.Count);
        var usable = new List<int>(partitions.Count);
        // Assign at the current end explicitly rather than trusting auto.offset.reset, so the
        // position is known before any command names this partition. All partitions are queried
        // at once within one budget: the rebalance waits for this callback.
        var ends = EndOffsets(c, partitions);
        for (var i = 0; i < partitions.Count; i++)
        {
            var partition = partitions[i];
            if (ends[i] is { } end)
            {
                positioned.Add(new TopicPartitionOffset(partition, end));
                usable.Add(partition.Partition.Value);
            }
            else
            {
                // Its position is unknown: keep it assigned (the group gave it to us) but never name
                // it in a command, so no reply can be missed. The next rebalance tries again.
                positioned.Add(new TopicPartitionOffset(partition, Offset.End));
                logger.LogWarning("Reply partition {Partition}: end offset unknown, not used until the next rebalance", partition.Partition.Value);
            }
        }
        lock (ownedLock)
        {
            owned = owned.Concat(usable).Distinct().Order().ToArray();
        }
        logger.LogInformation("Reply partitions assigned {Partitions} at {Offsets}; now own {Owned}",
            string.Join(",", partitions.Select(p => p.Partition.Value)), string.Join(",", positioned.Select(p => p.Offset.Value)),
            string.Join(",", owned));
        return positioned;
    }

    /// <summary>The end offset of each partition, null where it could not be learnt within
    /// <see cref="PositioningBudget"/> (queried together, retried until the budget is spent).</summary>
    private Offset?[] EndOffsets(IConsumer<string, byte[]> c, List<TopicPartition> partitions)
    {
        var until = DateTime.UtcNow + PositioningBudget;
        var queries = partitions.Select(partition => Task.Run(() =>
        {
            for (var attempt = 1; ; attempt++)
            {
                var left = until - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return (Offset?)null;
                try
                {
                    return c.QueryWatermarkOffsets(partition, left).High;
                }
                catch (KafkaException e)
                {
                    logger.LogWarning("Reply partition {Partition}: end offset query {Attempt} failed: {Reason}", partition.Partition.Value, attempt, e.Error.Reason);
                    Thread.Sleep(TimeSpan.FromMilliseconds(100));
                }
            }
        })).ToArray();
        Task.WaitAll(queries, PositioningBudget + TimeSpan.FromSeconds(1));
        return [.. queries.Select(q => q.IsCompletedSuccessfully ? q.Result : null)];
    }

    /// <summary>A fatal consumer error: stop naming partitions (calls are answered UNAVAILABLE at once,
    /// waiting ones run into their deadline) and report it; the readiness check turns false.</summary>
    private void Failed(ErrorCode code, string reason)
    {
        if (fatal is not null) return;
        fatal = $"{code}: {reason}";
        lock (ownedLock) owned = [];
        logger.LogCritical("Reply consumer failed for good ({Code}: {Reason}); this gateway reads no reply any more and must be restarted", code, reason);
    }

    private void Removed(IEnumerable<TopicPartition> partitions, string how)
    {
        var gone = partitions.Select(p => p.Partition.Value).ToHashSet();
        if (gone.Count == 0) return;
        lock (ownedLock)
        {
            owned = owned.Where(p => !gone.Contains(p)).ToArray();
        }
        // Calls waiting on these partitions run into their deadline (and are abandoned).
        logger.LogInformation("Reply partitions {How} {Partitions}; now own {Owned}", how, string.Join(",", gone.Order()), string.Join(",", owned));
    }

    /// <summary>Stops reading and leaves the group if it joined one (its partitions go to the other instances).</summary>
    public void Stop()
    {
        if (stop.IsCancellationRequested) return;
        stop.Cancel();
        thread?.Join();
        try
        {
            consumer.Close();
        }
        catch (KafkaException e)
        {
            logger.LogWarning("Leaving the reply group failed: {Reason}", e.Error.Reason);
        }
        lock (ownedLock) owned = [];
    }

    public void Dispose()
    {
        Stop();
        consumer.Dispose();
        stop.Dispose();
    }
}
