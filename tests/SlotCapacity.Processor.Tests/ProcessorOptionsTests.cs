using Confluent.Kafka;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Kafka;
using SlotCapacity.Processor;
using Xunit;

namespace SlotCapacity.Processor.Tests;

/// <summary>How the processor's settings and the Kafka client sections are bound from its environment.</summary>
public sealed class ProcessorOptionsTests : IDisposable
{
    // Variables of this test only: the provider strips the prefix, so PROCESSOR_COMMIT_INTERVAL_MS is read
    // exactly as the processor reads it.
    private readonly string _prefix = $"SLOT_TEST_{Guid.NewGuid():N}_";
    private readonly string _folder = Directory.CreateTempSubdirectory("processor-options-").FullName;

    private IConfiguration Environment(params (string Name, string Value)[] variables)
    {
        foreach (var (name, value) in variables) System.Environment.SetEnvironmentVariable(_prefix + name, value);
        return new ConfigurationBuilder().AddEnvironmentVariables(_prefix).Build();
    }

    /// <summary>The command consumer's configuration for these variables (and a bootstrap list).</summary>
    private ConsumerConfig Consumer(params (string, string)[] variables)
    {
        var settings = SettingsBinder.BindValid<ProcessorOptions>(Environment([("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), .. variables])).ToSettings();
        using var checkpoints = new ChangelogCheckpoints(settings, NullLoggerFactory.Instance);
        return SlotTopology.Config(settings, checkpoints, NullLoggerFactory.Instance, []).ToConsumerConfig("c");
    }

    [Fact]
    public void Unset_variables_take_the_defaults_of_ProcessorSettings()
    {
        var options = SettingsBinder.BindValid<ProcessorOptions>(Environment(("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")));
        var settings = options.ToSettings();
        Assert.Equal(("kafka:9092", "", ProcessorSettings.DefaultSessionTimeoutMs, ProcessorSettings.DefaultCommitIntervalMs, ProcessorSettings.DefaultFetchWaitMaxMs, LogLevel.Warning),
            (settings.BootstrapServers, settings.Topics.Prefix, settings.SessionTimeoutMs, settings.CommitIntervalMs, settings.FetchWaitMaxMs, options.StreamizLogLevel));
        Assert.Equal(Path.Combine(Path.GetTempPath(), "slot-processor-state", settings.InstanceName), settings.StateDirectory);
        Assert.StartsWith("processor-", settings.InstanceName, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_variable_overrides_its_default()
    {
        var options = SettingsBinder.BindValid<ProcessorOptions>(Environment(("KAFKA_BOOTSTRAP_SERVERS", " kafka:9092 "), ("TOPIC_PREFIX", "t1."),
            ("PROCESSOR_INSTANCE", "p7"), ("PROCESSOR_STATE_DIR", _folder), ("PROCESSOR_SESSION_TIMEOUT_MS", "10000"),
            ("PROCESSOR_COMMIT_INTERVAL_MS", "250"), ("PROCESSOR_FETCH_WAIT_MS", "100"), ("STREAMIZ_LOG_LEVEL", "information")));
        var settings = options.ToSettings();
        Assert.Equal(("kafka:9092", "t1.slot-processor", "p7", _folder, 10_000, 250, 100, LogLevel.Information),
            (settings.BootstrapServers, settings.Topics.ProcessorApplicationId, settings.InstanceName, settings.StateDirectory,
             settings.SessionTimeoutMs, settings.CommitIntervalMs, settings.FetchWaitMaxMs, options.StreamizLogLevel));
    }

    [Fact]
    public void The_heartbeat_is_a_quarter_of_the_session_unless_set_and_must_stay_below_the_session()
    {
        var derived = Consumer();
        Assert.Equal((1500, 6000), (derived.HeartbeatIntervalMs, derived.SessionTimeoutMs));
        var set = Consumer(("PROCESSOR_SESSION_TIMEOUT_MS", "1500"), ("PROCESSOR_HEARTBEAT_INTERVAL_MS", "100"));
        Assert.Equal((100, 1500), (set.HeartbeatIntervalMs, set.SessionTimeoutMs));
        var refused = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("PROCESSOR_SESSION_TIMEOUT_MS", "1500"), ("PROCESSOR_HEARTBEAT_INTERVAL_MS", "1500"))));
        Assert.Equal("PROCESSOR_HEARTBEAT_INTERVAL_MS='1500' must be below PROCESSOR_SESSION_TIMEOUT_MS (1500)", refused.Message);
    }

    [Fact]
    public void A_static_member_joins_under_its_instance_name_and_needs_one()
    {
        Assert.Null(Consumer(("PROCESSOR_INSTANCE", "processor-1")).GroupInstanceId);
        Assert.Equal("processor-1", Consumer(("PROCESSOR_INSTANCE", "processor-1"), ("PROCESSOR_STATIC_MEMBERSHIP", "true")).GroupInstanceId);
        var refused = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("PROCESSOR_INSTANCE", " "), ("PROCESSOR_STATIC_MEMBERSHIP", "true"))));
        Assert.Equal("PROCESSOR_STATIC_MEMBERSHIP=true needs PROCESSOR_INSTANCE, the same on every restart: a restarted processor finds its group membership by that name",
            refused.Message);
        var successor = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("PROCESSOR_INSTANCE", "processor-1"), ("PROCESSOR_STATIC_MEMBERSHIP", "false"), ("PROCESSOR_TAKE_OVER_FROM", "4242"))));
        Assert.Equal("PROCESSOR_TAKE_OVER_FROM needs PROCESSOR_STATIC_MEMBERSHIP=true: a successor takes its predecessor's place in the group, which only a static member keeps",
            successor.Message);
    }

    [Fact]
    public void A_standby_is_a_static_member_and_not_a_successor_as_well()
    {
        // The variables accumulate over this test, as in a shell.
        var standby = SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("PROCESSOR_INSTANCE", "processor-1"), ("PROCESSOR_STATIC_MEMBERSHIP", "true"), ("PROCESSOR_STANDBY_FOR", "4242")));
        Assert.Equal(4242, standby.ToSettings().StandbyFor);
        var notAPid = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(("PROCESSOR_STANDBY_FOR", "0"))));
        Assert.Equal("PROCESSOR_STANDBY_FOR='0': must be the process id of the running processor to stand by for", notAPid.Message);
        var both = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("PROCESSOR_STANDBY_FOR", "4242"), ("PROCESSOR_TAKE_OVER_FROM", "4243"))));
        Assert.Equal("PROCESSOR_STANDBY_FOR and PROCESSOR_TAKE_OVER_FROM are exclusive: a standby waits for a processor to exit, a successor stops it",
            both.Message);
        var dynamic = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("PROCESSOR_TAKE_OVER_FROM", ""), ("PROCESSOR_STATIC_MEMBERSHIP", "false"))));
        Assert.Equal("PROCESSOR_STANDBY_FOR needs PROCESSOR_STATIC_MEMBERSHIP=true: a standby takes the running processor's place in the group, which only a static member keeps",
            dynamic.Message);
    }

    [Fact]
    public void Every_bad_value_is_one_line_naming_its_variable()
    {
        var error = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("PROCESSOR_SESSION_TIMEOUT_MS", "100"), ("PROCESSOR_COMMIT_INTERVAL_MS", "1s"), ("STREAMIZ_LOG_LEVEL", "chatty"), ("PROCESSOR_FETCH_WAIT_MS", ""))));
        Assert.Equal([
            "PROCESSOR_COMMIT_INTERVAL_MS='1s' is not a whole number",
            "STREAMIZ_LOG_LEVEL='chatty' is not one of Trace, Debug, Information, Warning, Error, Critical, None",
            "PROCESSOR_SESSION_TIMEOUT_MS='100': must be at least 500 ms (and at least the broker's group.min.session.timeout.ms)",
            "KAFKA_BOOTSTRAP_SERVERS is not set: " + KafkaEndpoint.BootstrapHint,
        ], error.Message.Split('\n'));
    }

    [Fact]
    public void Kafka_client_sections_reach_the_clients_of_their_kind_and_override_the_code()
    {
        var configuration = Environment(("Kafka__Client__socket.timeout.ms", "7000"), ("Kafka__Producer__linger.ms", "20"),
            ("Kafka__Consumer__fetch.wait.max.ms", "300"), ("Kafka__Admin__request.timeout.ms", "9000"));
        Assert.Equal([new("socket.timeout.ms", "7000"), new("linger.ms", "20")], KafkaEndpoint.Configured<ProducerConfig>(configuration));
        Assert.Equal([new("socket.timeout.ms", "7000"), new("fetch.wait.max.ms", "300")], KafkaEndpoint.Configured<ConsumerConfig>(configuration));
        Assert.Equal([new("socket.timeout.ms", "7000"), new("request.timeout.ms", "9000")], KafkaEndpoint.Configured<AdminClientConfig>(configuration));

        var settings = new ProcessorSettings("kafka:9093", new TopicNames("cfg."), _folder, "p1");
        using var checkpoints = new ChangelogCheckpoints(settings, NullLoggerFactory.Instance);
        var config = SlotTopology.Config(settings, checkpoints, NullLoggerFactory.Instance, [], configuration);
        var (consumer, producer, restore) = (config.ToConsumerConfig("c"), config.ToProducerConfig("p"), config.ToRestoreConsumerConfig("r"));
        Assert.Equal((7000, 300, 7000), (consumer.SocketTimeoutMs, consumer.FetchWaitMaxMs, producer.SocketTimeoutMs));
        Assert.Equal(20, producer.LingerMs);
        Assert.Equal(settings.FetchWaitMaxMs, restore.FetchWaitMaxMs);
    }

    [Fact]
    public void A_Kafka_setting_librdkafka_refuses_is_one_line_naming_its_variable_with_the_other_problems()
    {
        var error = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<ProcessorOptions>(Environment(
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("PROCESSOR_FETCH_WAIT_MS", "0"),
            ("Kafka__Producer__lingerr.ms", "2"), ("Kafka__Client__socket.timeout.ms", "soon"), ("Kafka__Consumer__fetch.wait.max.ms", "50"))));
        Assert.Equal([
            "PROCESSOR_FETCH_WAIT_MS='0': must be at least 1 ms",
            "Kafka__Client__socket.timeout.ms='soon': Invalid value for configuration property \"socket.timeout.ms\"",
            "Kafka__Producer__lingerr.ms='2': No such configuration property: \"lingerr.ms\"",
        ], error.Message.Split('\n'));
    }

    public void Dispose()
    {
        foreach (var name in System.Environment.GetEnvironmentVariables().Keys.OfType<string>().Where(n => n.StartsWith(_prefix, StringComparison.Ordinal)))
            System.Environment.SetEnvironmentVariable(name, null);
        Directory.Delete(_folder, recursive: true);
    }
}
