namespace SlotCapacity.Kafka;

public static class KafkaEndpoint
{
    public const string BootstrapVariable = "KAFKA_BOOTSTRAP_SERVERS";

    /// <summary>The broker list from KAFKA_BOOTSTRAP_SERVERS.</summary>
    public static string BootstrapServers() => BootstrapServers(Environment.GetEnvironmentVariable(BootstrapVariable));

    /// <summary>Checks a configured broker list; a missing one is a startup error naming the fix.</summary>
    public static string BootstrapServers(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new StartupException(
                $"{BootstrapVariable} is not set: set it to the broker list (e.g. 127.0.0.1:9092), or start everything with `make run`, which starts the local cluster and sets it.");
        return value.Trim();
    }
}
