using Confluent.Kafka;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Mock;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using Streamiz.Kafka.Net.Stream;

namespace SlotCapacity.Processor;

/// <summary>The processor's Streamiz topology and configuration.</summary>
public static class SlotTopology
{
    /// <summary>
    /// commands (raw bytes, so a bad record is answered instead of failing the stream)
    /// -> decide with the `slot-state` store -> replies / events / availability / ExpireHolds commands.
    /// <paramref name="storeAccess"/> wraps the task's store (null = the store itself); tests inject store failures with it.
    /// </summary>
    public static Topology Build(TopicNames topics, int replyPartitions, ChangelogCheckpoints checkpoints, ILoggerFactory loggers,
        Func<IKeyValueStore<string, byte[]>, IKeyValueStore<string, byte[]>>? storeAccess = null)
    {
        ArgumentNullException.ThrowIfNull(topics);
        ArgumentNullException.ThrowIfNull(checkpoints);
        var store = Stores.KeyValueStoreBuilder(
                // Values: a SlotState under "{slot}", a ReservationRecord under "{slot}|{reservation id}",
                // hold index entries under "{slot}#hold|..." and expired-hold marks under "{slot}#expired|...".
                new SlotStateStoreSupplier(TopicNames.SlotStateStore, checkpoints), new StringSerDes(), new ByteArraySerDes())
            // Every put goes to the changelog at once, in the same flush as the records it caused.
            .WithCachingDisabled();
        var builder = new StreamBuilder();
        builder.Stream(topics.Commands, new ByteArraySerDes(), new ByteArraySerDes())
            .Transform(TransformerBuilder.New<byte[], byte[], string, Outbound>()
                .Transformer<SlotCommandProcessor>(topics, replyPartitions, checkpoints, loggers, storeAccess ?? (store => store))
                .StateStore(store)
                .Build(), "decide")
            .To(new OutboundTopic(), new StringSerDes(), new OutboundSerDes(), new OutboundTimestamp(), new OutboundPartition(), "write");
        return builder.Build();
    }

    /// <summary>
    /// The topology on Streamiz's TopologyTestDriver: in memory, no broker, the `slot-state` store in
    /// RocksDB under <paramref name="settings"/>' state directory. Nothing to check a changelog against
    /// there, so checkpoints are Streamiz's plain files. The processor's rehearsal and the tests use it.
    /// </summary>
    public static TopologyTestDriver InMemory(ProcessorSettings settings, int replyPartitions, ChangelogCheckpoints checkpoints, ILoggerFactory loggers,
        Func<IKeyValueStore<string, byte[]>, IKeyValueStore<string, byte[]>>? storeAccess = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var config = Config(settings, checkpoints, loggers, security: []);
        config.OffsetCheckpointManager = null;
        return new TopologyTestDriver(Build(settings.Topics, replyPartitions, checkpoints, loggers, storeAccess), config);
    }

    /// <summary>
    /// At-least-once with a 1 s commit interval by default: the offset stored in each slot's state turns
    /// re-delivery into answers from state, so effects are exactly once without transactions
    /// (see processors/README.md). Polling and fetch waits are short because a reply is on the
    /// checkout path.
    /// </summary>
    public static StreamConfig Config(ProcessorSettings settings, ChangelogCheckpoints checkpoints, ILoggerFactory loggers) =>
        Config(settings, checkpoints, loggers, KafkaEndpoint.Security(), KafkaEndpoint.ProcessConfiguration);

    /// <param name="security">librdkafka security settings given to every client Streamiz builds (consumers, producers, admin)</param>
    /// <param name="configuration">its Kafka:Client section is given to every client, Kafka:Consumer to the
    /// command consumer and Kafka:Producer to the producer; they override the settings below</param>
    public static StreamConfig Config(ProcessorSettings settings, ChangelogCheckpoints checkpoints, ILoggerFactory loggers,
        IReadOnlyList<KeyValuePair<string, string>> security, IConfiguration? configuration = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(security);
        var config = new StreamConfig<StringSerDes, StringSerDes>
        {
            ApplicationId = settings.Topics.ProcessorApplicationId,
            ClientId = settings.InstanceName,
            BootstrapServers = settings.BootstrapServers,
            StateDir = settings.StateDirectory,
            // Refuses a task whose changelog lost records its restore needs (see ChangelogCheckpoints).
            OffsetCheckpointManager = checkpoints,
            Guarantee = ProcessingGuarantee.AT_LEAST_ONCE,
            CommitIntervalMs = settings.CommitIntervalMs,
            PollMs = 2,
            MaxPollRecords = 500,
            FetchWaitMaxMs = settings.FetchWaitMaxMs,
            LingerMs = 1,
            Acks = Acks.All,
            EnableIdempotence = true,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            AllowAutoCreateTopics = false,
            // Failover after a crash is bounded by the session timeout.
            SessionTimeoutMs = settings.SessionTimeoutMs,
            HeartbeatIntervalMs = settings.HeartbeatIntervalMs ?? Math.Max(100, settings.SessionTimeoutMs / 4),
            NumStreamThreads = 1,
            Logger = loggers,
        };
        if (settings.StaticMembership) config.AddConfig(config.MainConsumerPrefix("group.instance.id"), settings.InstanceName);
        foreach (var (key, value) in security) config.AddConfig(key, Typed(key, value, $"KAFKA_{key.ToUpperInvariant().Replace('.', '_')}"));
        if (configuration is null) return config;
        foreach (var (key, value) in KafkaEndpoint.Section(configuration, KafkaEndpoint.ClientSection))
            config.AddConfig(key, Typed(key, value, $"{KafkaEndpoint.ClientSection}:{key}"));
        foreach (var (key, value) in KafkaEndpoint.Section(configuration, KafkaEndpoint.ConsumerSection))
            config.AddConfig(config.MainConsumerPrefix(key), value);
        foreach (var (key, value) in KafkaEndpoint.Section(configuration, KafkaEndpoint.ProducerSection))
            config.AddConfig(config.ProducerPrefix(key), value);
        return config;
    }

    /// <summary>
    /// Streamiz sets a key it knows through its typed property (an enum for security.protocol, a
    /// bool for enable.ssl.certificate.verification), so the text becomes the type of Confluent's
    /// ClientConfig property of the same name: SASL_SSL is SecurityProtocol.SaslSsl.
    /// </summary>
    private static object Typed(string key, string value, string source)
    {
        var property = typeof(ClientConfig).GetProperty(string.Concat(key.Split('.').Select(w => w.Length == 0 ? w : char.ToUpperInvariant(w[0]) + w[1..])));
        if (property is null) return value;
        var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        try
        {
            return type.IsEnum ? Enum.Parse(type, value.Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal), ignoreCase: true)
                : type == typeof(string) ? value
                : Convert.ChangeType(value, type, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            throw new StartupException($"Kafka setting {key}='{value}' ({source}) is not a valid {type.Name}: {e.Message}");
        }
    }
}
