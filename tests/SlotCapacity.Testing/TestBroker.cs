using Confluent.Kafka;
using SlotCapacity.Kafka;
using Testcontainers.Kafka;

namespace SlotCapacity.Testing;

/// <summary>
/// The broker tests run against, chosen once per test process in this order:
/// KAFKA_BOOTSTRAP_SERVERS (real Kafka), Testcontainers.Kafka when a Docker engine answers,
/// else the local cluster (librdkafka's mock cluster) in this process.
/// </summary>
public sealed class TestBroker
{
    private static readonly Lazy<Task<TestBroker>> Shared = new(StartAsync);
    private static int _runs;

    public string BootstrapServers { get; }
    public string Kind { get; }
    /// <summary>The in-process local cluster, for fault injection; null on real Kafka.</summary>
    public LocalCluster? Cluster { get; }

    private TestBroker(string bootstrap, string kind, LocalCluster? cluster)
    {
        BootstrapServers = bootstrap;
        Kind = kind;
        Cluster = cluster;
    }

    public static Task<TestBroker> SharedAsync() => Shared.Value;

    /// <summary>
    /// A fresh set of topics under a unique prefix, the processor's changelog included, so tests
    /// never see each other's records.
    /// </summary>
    public async Task<TopicNames> CreateTopicsAsync(int slotPartitions = 4, int replyPartitions = 4)
    {
        var names = new TopicNames($"t{Environment.ProcessId}-{Interlocked.Increment(ref _runs)}-{Guid.NewGuid():N}"[..24] + ".");
        var specs = names.Specs(slotPartitions, replyPartitions);
        if (Cluster is not null)
        {
            Cluster.CreateTopics(specs);
            await TopicProvisioner.VerifyAsync(BootstrapServers, specs, TimeSpan.FromSeconds(30));
        }
        else
        {
            await TopicProvisioner.CreateAsync(BootstrapServers, specs);
        }
        return names;
    }

    /// <summary>
    /// Makes the cluster drop the oldest records of <paramref name="partition"/>, so that it no longer
    /// starts at offset 0: the local cluster drops them once a partition holds more than 5 MiB (6 MiB
    /// of filler is written); real Kafka has no such cap, so there all but the newest are deleted
    /// (DeleteRecords). The partition must hold at least two records.
    /// </summary>
    public async Task DropOldestRecordsAsync(TopicPartition partition)
    {
        ArgumentNullException.ThrowIfNull(partition);
        if (Cluster is not null)
        {
            using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = BootstrapServers })
                .SetLogHandler((_, _) => { }).Build();
            var filler = new byte[64 * 1024];
            Random.Shared.NextBytes(filler);
            for (var i = 0; i < 96; i++)
                await producer.ProduceAsync(partition, new Message<string, byte[]> { Key = $"filler-{i}", Value = filler });
            return;
        }
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = BootstrapServers }).Build();
        await admin.DeleteRecordsAsync([new TopicPartitionOffset(partition, Watermarks(partition).High - 1)]);
    }

    /// <summary>The first offset the cluster still holds for <paramref name="partition"/> and the next one it will write.</summary>
    public WatermarkOffsets Watermarks(TopicPartition partition)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = BootstrapServers, GroupId = "test-watermarks" })
            .SetLogHandler((_, _) => { }).Build();
        return consumer.QueryWatermarkOffsets(partition, TimeSpan.FromSeconds(10));
    }

    private static async Task<TestBroker> StartAsync()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(KafkaEndpoint.BootstrapVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
            return Announce(new TestBroker(fromEnvironment.Trim(), "env", null));

        if (DockerAnswers())
        {
            try
            {
                var container = new KafkaBuilder("apache/kafka:3.9.1").Build();
                await container.StartAsync();
                // The container lives as long as the test process; Testcontainers' reaper removes it.
                return Announce(new TestBroker(container.GetBootstrapAddress(), "testcontainers", null));
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"[test-broker] Docker answered but Kafka did not start ({e.Message}); using the local cluster");
            }
        }

        var cluster = LocalCluster.Start(brokers: 3);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.Dispose();
        return Announce(new TestBroker(cluster.BootstrapServers, "local-cluster", cluster));
    }

    private static bool DockerAnswers()
    {
        var host = Environment.GetEnvironmentVariable("DOCKER_HOST");
        if (!string.IsNullOrEmpty(host)) return true;
        const string socket = "/var/run/docker.sock";
        if (!File.Exists(socket)) return false;
        try
        {
            using var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            client.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private static TestBroker Announce(TestBroker broker)
    {
        Console.WriteLine($"[test-broker] using {broker.Kind} at {broker.BootstrapServers}");
        return broker;
    }
}
