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

    /// <summary>Called (once, from a Streamiz thread) if the stream fails after it was running, with what failed.</summary>
    public Action<string>? OnStreamFailed { get; init; }

    /// <summary>Reads the environment; KAFKA_BOOTSTRAP_SERVERS is required (StartupException otherwise).</summary>
    public static ProcessorSettings FromEnvironment()
    {
        var instance = Environment.GetEnvironmentVariable("PROCESSOR_INSTANCE");
        if (string.IsNullOrWhiteSpace(instance)) instance = $"processor-{Environment.ProcessId}";
        var stateDirectory = Environment.GetEnvironmentVariable("PROCESSOR_STATE_DIR");
        if (string.IsNullOrWhiteSpace(stateDirectory))
            stateDirectory = Path.Combine(Path.GetTempPath(), "slot-processor-state", instance);
        var sessionTimeout = Environment.GetEnvironmentVariable("PROCESSOR_SESSION_TIMEOUT_MS");
        var sessionTimeoutMs = DefaultSessionTimeoutMs;
        if (!string.IsNullOrWhiteSpace(sessionTimeout)
            && (!int.TryParse(sessionTimeout, System.Globalization.CultureInfo.InvariantCulture, out sessionTimeoutMs) || sessionTimeoutMs < 500))
            throw new StartupException($"PROCESSOR_SESSION_TIMEOUT_MS is '{sessionTimeout}': it must be a whole number of milliseconds, at least 500");
        return new ProcessorSettings(KafkaEndpoint.BootstrapServers(), TopicNames.FromEnvironment(), stateDirectory, instance)
        {
            SessionTimeoutMs = sessionTimeoutMs,
        };
    }
}
