using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>Everything a gateway instance needs, with its defaults; <see cref="GatewayOptions"/> binds them from configuration.</summary>
public sealed record GatewaySettings
{
    public required string BootstrapServers { get; init; }
    /// <summary>Caller authentication, TLS and abuse limits (see <see cref="SecuritySettings"/>).</summary>
    public required SecuritySettings Security { get; init; }
    public TopicNames Topics { get; init; } = new();
    /// <summary>Name in logs and metrics; also part of every correlation id.</summary>
    public string Instance { get; init; } = Environment.MachineName;
    /// <summary>Kestrel URL for gRPC (HTTP/2 cleartext, --urls). Port 0 picks a free port.</summary>
    public string Url { get; init; } = "http://127.0.0.1:5101";
    /// <summary>HTTP/1.1 URL for /health and /metrics (GATEWAY_ADMIN_URL). Cleartext HTTP/2 and HTTP/1.1
    /// cannot share a port in Kestrel, and Prometheus scrapes over HTTP/1.1. Null = gRPC port + 1000
    /// (5101 -> 6101), or a free port when the gRPC port is 0.</summary>
    public string? AdminUrl { get; init; }
    /// <summary>End-to-end deadline of a checkout write (reserve, confirm, release).</summary>
    public TimeSpan Deadline { get; init; } = TimeSpan.FromMilliseconds(150);
    /// <summary>A call with its own gRPC deadline waits for the reply until that deadline less this: the
    /// answer still has to travel back, and an accept arriving after the caller gave up is a phantom booking.</summary>
    public TimeSpan ClientDeadlineMargin { get; init; } = TimeSpan.FromMilliseconds(10);
    /// <summary>Deadline of one planner change (ConfigureSlot, SetSlotOpen, each slot of ApplyPlan).</summary>
    public TimeSpan PlanningDeadline { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A partition of the commands topic that has answered no command in time for this long, while
    /// at least three missed their deadline, is dark (<see cref="DarkPartitions"/>): calls for its slots are
    /// answered UNAVAILABLE without writing, but for one probe per <see cref="DarkPartitionProbeEvery"/>.
    /// Longer than a GC pause or a hiccup of the processor (those end by themselves), shorter than a failover.
    /// Zero: never.</summary>
    public TimeSpan DarkPartitionAfter { get; init; } = TimeSpan.FromMilliseconds(DefaultDarkPartitionAfterMs);

    public const int DefaultDarkPartitionAfterMs = 1000;
    /// <summary>How often a dark partition still gets a command, whose reply in time lights it again.</summary>
    public TimeSpan DarkPartitionProbeEvery { get; init; } = TimeSpan.FromMilliseconds(DefaultDarkPartitionProbeMs);

    public const int DefaultDarkPartitionProbeMs = 100;
    /// <summary>Writes waiting for a reply above this are shed with RESOURCE_EXHAUSTED.</summary>
    public int MaxInFlight { get; init; } = 2_000;
    /// <summary>Slot changes of one ApplyPlan sent at once.</summary>
    public int PlanConcurrency { get; init; } = 64;
    /// <summary>librdkafka fetch.wait.max.ms of the reply consumer. The local cluster answers an empty fetch
    /// only after this wait, even when a record arrives meanwhile, so it adds up to this much to every
    /// reply there (real Kafka answers at once: use 100-500 ms there to save fetch requests).</summary>
    public int FetchWaitMaxMs { get; init; } = DefaultReplyFetchWaitMs;

    public const int DefaultReplyFetchWaitMs = 5;
    /// <summary>fetch.wait.max.ms of the availability follower (GATEWAY_VIEW_FETCH_WAIT_MS). The view only
    /// advises (a Reserve is decided by the processor), so it can trail by this much, and each gateway
    /// fetches ten times less often while idle than with the reply consumer's 5 ms.</summary>
    public int ViewFetchWaitMaxMs { get; init; } = DefaultViewFetchWaitMs;

    public const int DefaultViewFetchWaitMs = 50;
    /// <summary>fetch.min.bytes of the availability follower (GATEWAY_VIEW_FETCH_MIN_BYTES). A fetch at the
    /// tail is answered once this much has arrived or after <see cref="ViewFetchWaitMaxMs"/>: the view then
    /// trails by up to the wait under load too, and fetches a few times a second instead of once per
    /// snapshot or few, which every gateway pays for every command of the system. The default is
    /// more than the availability records of 60x nominal in 100 ms.</summary>
    public int ViewFetchMinBytes { get; init; } = DefaultViewFetchMinBytes;

    public const int DefaultViewFetchMinBytes = 64 * 1024;
    /// <summary>Pause between the availability follower's rounds (GATEWAY_VIEW_FETCH_INTERVAL_MS): once a round
    /// has read every partition to where it ended, the follower stops fetching for this long, then reads
    /// again. The view then trails the topic by up to this plus <see cref="ViewFetchWaitMaxMs"/> and the
    /// round itself, and its fetches per second no longer grow with the rate of availability records.
    /// Default zero, follow continuously: at 200 ms the view made 40 % fewer fetches but its CPU did
    /// not move measurably, and a planner reading utilisation right after a change (served from the
    /// view) saw the old figures for up to a quarter of a second. An interval at or below the fetch wait
    /// saves nothing on the local cluster (an empty fetch already waits that long there). Not before the
    /// start-up read has caught up.</summary>
    public TimeSpan ViewFetchInterval { get; init; } = TimeSpan.FromMilliseconds(DefaultViewFetchIntervalMs);

    public const int DefaultViewFetchIntervalMs = 0;
    /// <summary>How long a stopping gateway waits for in-flight calls (they end by reply or deadline well before).</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Static reply-partition ownership (GATEWAY_ORDINAL of GATEWAY_COUNT): this instance reads the
    /// reply partitions p with p % count == ordinal, assigned by hand at start, so neither its start nor
    /// another instance's restart waits for a consumer-group rebalance. Null = share the partitions
    /// through the reply consumer group.</summary>
    public ReplyShare? ReplyShare { get; init; }
    /// <summary>File where the availability view is saved every few seconds and at stop
    /// (GATEWAY_VIEW_CHECKPOINT); a restart loads it and reads only what was written since. Null = none.</summary>
    public string? ViewCheckpoint { get; init; }
    /// <summary>Attempts to write one Abandon before it is given up (logged as an error, counted).</summary>
    public int AbandonAttempts { get; init; } = 8;
    /// <summary>Wait before the second attempt to write an Abandon; doubled for each further one.</summary>
    public TimeSpan AbandonRetryBackoff { get; init; } = TimeSpan.FromMilliseconds(50);
    /// <summary>Replaces the JSON console logs (tests route logs to their output).</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }
    /// <summary>Minimum level of the JSON console logs.</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;
}

/// <summary>This instance's share of the reply partitions: those p with p % <see cref="Count"/> == <see cref="Ordinal"/>.</summary>
public sealed record ReplyShare(int Ordinal, int Count)
{
    public IReadOnlyList<int> Partitions(int replyPartitions) =>
        Enumerable.Range(0, replyPartitions).Where(p => p % Count == Ordinal).ToArray();

    public override string ToString() => $"{Ordinal} of {Count}";
}
