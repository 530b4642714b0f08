using SlotCapacity.Kafka;

namespace SlotCapacity.Processor;

/// <summary>Where one processor instance connects and keeps its state.</summary>
/// <param name="BootstrapServers">Kafka bootstrap list (KAFKA_BOOTSTRAP_SERVERS).</param>
/// <param name="Topics">Topic names and application id (TOPIC_PREFIX).</param>
/// <param name="StateDirectory">RocksDB directory, one per instance (PROCESSOR_STATE_DIR).</param>
/// <param name="InstanceName">Name in logs and the Kafka client id (PROCESSOR_INSTANCE).</param>
public sealed record ProcessorSettings(string BootstrapServers, TopicNames Topics, string StateDirectory, string InstanceName)
{
    /// <summary>Real Kafka's smallest allowed session timeout by default (group.min.session.timeout.ms).</summary>
    public const int DefaultSessionTimeoutMs = 6000;

    /// <summary>
    /// How long the group waits for a silent processor before its partitions move (PROCESSOR_SESSION_TIMEOUT_MS):
    /// the bulk of the failover time after a crash. A broker refuses values below its group.min.session.timeout.ms.
    /// </summary>
    public int SessionTimeoutMs { get; init; } = DefaultSessionTimeoutMs;

    /// <summary>
    /// Whether the processor is a static member of its group (PROCESSOR_STATIC_MEMBERSHIP; group.instance.id
    /// is <see cref="InstanceName"/>, KIP-345). A static member that stops, gracefully or not, does not leave
    /// the group: its partitions wait for it, and when it is back within the session timeout it takes them
    /// again, restoring from its own checkpointed state, without a rebalance, so the other processors keep
    /// serving throughout. A dynamic member's stop and return each rebalance the whole group, and Streamiz's
    /// eager rebalance closes every task of every member. The cost: a processor that does not come back
    /// leaves its partitions unserved for the whole session timeout before they move.
    /// </summary>
    public bool StaticMembership { get; init; }

    /// <summary>
    /// The process id of a running processor of the same instance that this one replaces
    /// (PROCESSOR_TAKE_OVER_FROM; null: none): a rolling restart that starts the new process before it
    /// stops the old one. The successor starts, reads the topics and rehearses while its predecessor still
    /// serves, then stops it (SIGTERM) and, once it has exited, joins in its place as the same static member.
    /// The partitions are unserved only for the predecessor's stop and the successor's join, not for a
    /// whole process start. See <see cref="Predecessor"/>.
    /// </summary>
    public int? TakeOverFrom { get; init; }

    /// <summary>
    /// The process id of the running processor of the same instance that this one stands by for
    /// (PROCESSOR_STANDBY_FOR; null: none): a warm spare. It reads the topics and rehearses at once, then
    /// waits, with one Kafka client open (its changelog checker, connected). When that process exits, however it exits (a crash, a SIGKILL, a
    /// stop), the standby joins in its place as the same static member within milliseconds: the
    /// partitions wait for a join and a restore from the shared state directory, not for a whole process
    /// start, which takes seconds on a busy machine. If the process has exited before the standby is
    /// warm, it takes over as soon as it can, as a restarted processor would. Whoever starts a standby
    /// starts it some seconds after the processor, so that the two starts do not share the cores, and
    /// makes sure that it is the only one (`make run`'s supervisor does both). See <see cref="Predecessor"/>.
    /// </summary>
    public int? StandbyFor { get; init; }

    /// <summary>
    /// How often the processor tells the group it is alive (PROCESSOR_HEARTBEAT_INTERVAL_MS; null: a quarter
    /// of the session timeout, at least 100 ms). A heartbeat is also how a member learns that the group is
    /// rebalancing, so it bounds how late a survivor rejoins: a rebalance ends once every member has
    /// rejoined, and the local cluster's stock mock closes its join window after the session timeout less
    /// 1 s whoever has, so that a member that misses it costs another rebalance.
    /// </summary>
    public int? HeartbeatIntervalMs { get; init; }

    /// <summary>
    /// How often consumed offsets are committed (PROCESSOR_COMMIT_INTERVAL_MS). Streamiz flushes every
    /// task's RocksDB memtable on every commit; a longer interval only widens the re-delivery window
    /// after a crash, and re-delivered commands are answered from state.
    /// </summary>
    public int CommitIntervalMs { get; init; } = DefaultCommitIntervalMs;

    public const int DefaultCommitIntervalMs = 1000;

    /// <summary>
    /// librdkafka fetch.wait.max.ms of the command consumer (PROCESSOR_FETCH_WAIT_MS). The local cluster
    /// answers an empty fetch only after this wait, even if a command arrives meanwhile, so on it this is
    /// added latency: 5 ms. Real Kafka answers as soon as data arrives: 100-500 ms there saves fetches.
    /// </summary>
    public int FetchWaitMaxMs { get; init; } = DefaultFetchWaitMaxMs;

    public const int DefaultFetchWaitMaxMs = 5;

    /// <summary>
    /// A file that holds this process's id while the stream runs (PROCESSOR_READY_FILE; null: none). It is
    /// removed during every rebalance and when the processor stops: what a rolling restart waits for
    /// before stopping the next processor.
    /// </summary>
    public string? ReadyFile { get; init; }

    /// <summary>Called (once, from a Streamiz thread) if the stream fails after it was running, with what failed.</summary>
    public Action<string>? OnStreamFailed { get; init; }
}
