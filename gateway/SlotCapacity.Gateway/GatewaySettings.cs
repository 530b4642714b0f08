using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>Everything a gateway instance needs; <see cref="FromEnvironment"/> reads the process contract.</summary>
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

    /// <summary>Reads KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX, GATEWAY_INSTANCE, GATEWAY_DEADLINE_MS,
    /// GATEWAY_PLANNING_DEADLINE_MS, GATEWAY_MAX_IN_FLIGHT, GATEWAY_REPLY_FETCH_WAIT_MS, GATEWAY_VIEW_FETCH_WAIT_MS, GATEWAY_ADMIN_URL, GATEWAY_LOG_LEVEL, GATEWAY_ORDINAL,
    /// GATEWAY_COUNT, GATEWAY_VIEW_CHECKPOINT and the security settings (<see cref="SecuritySettings.FromEnvironment"/>); throws
    /// <see cref="StartupException"/> naming the variable on a bad value.</summary>
    public static GatewaySettings FromEnvironment(string url) => new()
    {
        BootstrapServers = KafkaEndpoint.BootstrapServers(),
        Security = SecuritySettings.FromEnvironment(),
        Topics = TopicNames.FromEnvironment(),
        Instance = Env("GATEWAY_INSTANCE") ?? $"gateway-{Environment.ProcessId}",
        Url = url,
        AdminUrl = Env("GATEWAY_ADMIN_URL"),
        Deadline = TimeSpan.FromMilliseconds(PositiveInt("GATEWAY_DEADLINE_MS", 150)),
        PlanningDeadline = TimeSpan.FromMilliseconds(PositiveInt("GATEWAY_PLANNING_DEADLINE_MS", 5_000)),
        MaxInFlight = PositiveInt("GATEWAY_MAX_IN_FLIGHT", 2_000),
        FetchWaitMaxMs = PositiveInt("GATEWAY_REPLY_FETCH_WAIT_MS", DefaultReplyFetchWaitMs),
        ViewFetchWaitMaxMs = PositiveInt("GATEWAY_VIEW_FETCH_WAIT_MS", DefaultViewFetchWaitMs),
        ReplyShare = ReplyShareFromEnvironment(),
        ViewCheckpoint = Env("GATEWAY_VIEW_CHECKPOINT"),
        LogLevel = Env("GATEWAY_LOG_LEVEL") is { } level
            ? Enum.TryParse<LogLevel>(level, ignoreCase: true, out var parsed) ? parsed
                : throw new StartupException($"GATEWAY_LOG_LEVEL='{level}' is not a log level; use Debug, Information, Warning or Error")
            : LogLevel.Information,
    };

    private static ReplyShare? ReplyShareFromEnvironment()
    {
        var (ordinalText, countText) = (Env("GATEWAY_ORDINAL"), Env("GATEWAY_COUNT"));
        if (ordinalText is null && countText is null) return null;
        if (ordinalText is null || countText is null)
            throw new StartupException($"GATEWAY_ORDINAL='{ordinalText}' and GATEWAY_COUNT='{countText}': set both (e.g. 0 and 2 for the first of two gateways) or neither");
        if (!int.TryParse(countText, out var count) || count < 1)
            throw new StartupException($"GATEWAY_COUNT='{countText}' is not a positive integer; set it to the number of gateways, e.g. 2");
        if (!int.TryParse(ordinalText, out var ordinal) || ordinal < 0 || ordinal >= count)
            throw new StartupException($"GATEWAY_ORDINAL='{ordinalText}' must be a whole number from 0 to GATEWAY_COUNT - 1 ({count - 1})");
        return new ReplyShare(ordinal, count);
    }

    /// <summary>An environment variable, null when unset or empty.</summary>
    internal static string? Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;

    /// <summary>A positive whole number from the environment, or <paramref name="fallback"/>; a bad one is a startup error naming it.</summary>
    internal static int PositiveInt(string name, int fallback)
    {
        var text = Env(name);
        if (text is null) return fallback;
        return int.TryParse(text, out var value) && value > 0
            ? value
            : throw new StartupException($"{name}='{text}' is not a positive integer; set it to e.g. {fallback} or unset it");
    }
}

/// <summary>This instance's share of the reply partitions: those p with p % <see cref="Count"/> == <see cref="Ordinal"/>.</summary>
public sealed record ReplyShare(int Ordinal, int Count)
{
    public IReadOnlyList<int> Partitions(int replyPartitions) =>
        Enumerable.Range(0, replyPartitions).Where(p => p % Count == Ordinal).ToArray();

    public override string ToString() => $"{Ordinal} of {Count}";
}
