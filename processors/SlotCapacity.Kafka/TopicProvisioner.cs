using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace SlotCapacity.Kafka;

/// <summary>
/// Creates and checks topics. Every path (real Kafka, the local cluster, tests) goes through here:
/// against real Kafka it creates with the AdminClient; the local cluster, which has no admin API,
/// is given its topics by <see cref="LocalCluster.CreateTopics"/> and only checked here.
/// A topic with the wrong partition count is a startup error: keys would hash to other partitions
/// than the state that owns them.
/// </summary>
public static class TopicProvisioner
{
    /// <param name="replicationFactor">Copies of each new topic; null = as many as there are brokers,
    /// at most 3 (a development cluster). Production passes 3, so a cluster that shows fewer brokers
    /// is an error rather than a topic with fewer copies.</param>
    public static async Task CreateAsync(string bootstrap, IEnumerable<TopicSpec> topics, int? replicationFactor = null, CancellationToken ct = default)
    {
        var wanted = topics.ToList();
        using var admin = Admin(bootstrap);
        var metadata = Metadata(admin, bootstrap, TimeSpan.FromSeconds(10));
        var existing = Topics(metadata);
        var missing = wanted.Where(t => !existing.ContainsKey(t.Name)).ToList();
        if (missing.Count > 0)
        {
            var brokers = metadata.Brokers.Count;
            if (replicationFactor > brokers)
                throw new StartupException(
                    $"replication factor {replicationFactor} asked but {bootstrap} shows {brokers} broker(s): wait until every broker is up, or ask for fewer copies")
                { Retryable = true };
            var replication = (short)(replicationFactor ?? Math.Min(3, brokers));
            var specs = missing.Select(t => new TopicSpecification
            {
                Name = t.Name,
                NumPartitions = t.Partitions,
                ReplicationFactor = replication,
                Configs = t.Compacted
                    ? new Dictionary<string, string> { ["cleanup.policy"] = "compact", ["min.insync.replicas"] = replication > 1 ? "2" : "1" }
                    : new Dictionary<string, string> { ["min.insync.replicas"] = replication > 1 ? "2" : "1" },
            }).ToList();
            try
            {
                await admin.CreateTopicsAsync(specs, new CreateTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(30) }).WaitAsync(ct);
            }
            catch (CreateTopicsException e) when (e.Results.All(r => r.Error.Code is ErrorCode.NoError or ErrorCode.TopicAlreadyExists))
            {
                // Another process created them first; the check below still applies.
            }
            catch (CreateTopicsException e)
            {
                var failed = e.Results.First(r => r.Error.Code is not (ErrorCode.NoError or ErrorCode.TopicAlreadyExists));
                throw new StartupException($"cannot create topic '{failed.Topic}' at {bootstrap}: {failed.Error.Reason}");
            }
        }
        await VerifyAsync(bootstrap, wanted, TimeSpan.FromSeconds(30), ct);
    }

    public static Task VerifyAsync(string bootstrap, IEnumerable<TopicSpec> topics, TimeSpan timeout, CancellationToken ct = default)
    {
        var wanted = topics.ToList();
        return VerifyAsync(bootstrap, _ => wanted, timeout, ct);
    }

    /// <summary>The same check, with the topics wanted worked out from those that exist (name to partition
    /// count), e.g. partition counts that follow an existing topic's: one metadata read per attempt.</summary>
    public static async Task VerifyAsync(string bootstrap, Func<IReadOnlyDictionary<string, int>, IEnumerable<TopicSpec>> wanted,
        TimeSpan timeout, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(wanted);
        using var admin = Admin(bootstrap);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var existing = Topics(Metadata(admin, bootstrap, timeout));
            var problem = Problem(wanted(existing).ToList(), existing);
            if (problem is null) return;
            // Freshly created topics take a moment to show every partition in metadata.
            if (DateTime.UtcNow >= deadline || problem.WrongCount) throw new StartupException(problem.Message);
            await Task.Delay(200, ct);
        }
    }

    private sealed record TopicProblem(string Message, bool WrongCount);

    private static TopicProblem? Problem(List<TopicSpec> wanted, IReadOnlyDictionary<string, int> existing)
    {
        foreach (var topic in wanted)
        {
            if (!existing.TryGetValue(topic.Name, out var partitions))
                return new($"topic '{topic.Name}' does not exist: create it with {topic.Partitions} partitions (`make run` provisions every topic; on real Kafka run the topic-init step)", false);
            if (partitions != topic.Partitions)
                return new($"topic '{topic.Name}' has {partitions} partitions but this system needs {topic.Partitions}: recreate it with {topic.Partitions} partitions, or use another TOPIC_PREFIX", true);
        }
        return null;
    }

    private static IAdminClient Admin(string bootstrap) =>
        new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig
        {
            BootstrapServers = bootstrap,
            SocketTimeoutMs = 10_000,
            // Bounded so a wrong address fails fast with a clear message instead of retrying forever.
            ReconnectBackoffMaxMs = 1_000,
        })).SetLogHandler((_, _) => { }).Build();

    private static Metadata Metadata(IAdminClient admin, string bootstrap, TimeSpan timeout)
    {
        try
        {
            return admin.GetMetadata(timeout);
        }
        catch (KafkaException e)
        {
            throw new StartupException(
                $"cannot reach Kafka at '{bootstrap}' ({e.Error.Reason}): check {KafkaEndpoint.BootstrapVariable}, or start the local cluster with `make run`", e)
            { Retryable = true };
        }
    }

    private static Dictionary<string, int> Topics(Metadata metadata) =>
        metadata.Topics
            .Where(t => t.Error.Code == ErrorCode.NoError)
            .ToDictionary(t => t.Topic, t => t.Partitions.Count);
}
