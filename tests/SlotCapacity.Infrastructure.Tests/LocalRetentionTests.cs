using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Kafka;
using SlotCapacity.LocalClusterHost;

namespace SlotCapacity.Infrastructure.Tests;

public sealed class LocalRetentionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Replies_older_than_the_retention_are_cut_and_commands_only_up_to_the_processors_committed_offset()
    {
        using var cluster = LocalCluster.Start(brokers: 1);
        var topics = new TopicNames($"ret{Guid.NewGuid():N}"[..11] + ".");
        var specs = topics.Specs(slotPartitions: 2, replyPartitions: 1);
        cluster.CreateTopics(specs);
        await TopicProvisioner.VerifyAsync(cluster.BootstrapServers, specs, TimeSpan.FromSeconds(30));
        using var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers, LingerMs = 0 }).Build();
        async Task WriteAsync(string topic, int partition, int count)
        {
            for (var i = 0; i < count; i++)
                await producer.ProduceAsync(new TopicPartition(topic, partition), new Message<Null, string> { Value = $"{topic}-{i}" });
        }
        await WriteAsync(topics.Commands, 0, 30);
        await WriteAsync(topics.Commands, 1, 30);
        await WriteAsync(topics.Replies, 0, 30);
        await WriteAsync(topics.Events, 0, 30);
        // The processors applied 10 commands of partition 0 and none of partition 1.
        using (var processors = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = topics.ProcessorApplicationId }).Build())
            processors.Commit([new TopicPartitionOffset(topics.Commands, 0, 10)]);

        using var retention = new LocalRetention(cluster, topics, specs, TimeSpan.FromSeconds(60), NullLogger.Instance);
        var start = DateTimeOffset.UnixEpoch;
        await retention.TrimAsync(start, CancellationToken.None);
        await WriteAsync(topics.Commands, 0, 5);
        await WriteAsync(topics.Replies, 0, 5);
        await retention.TrimAsync(start.AddSeconds(30), CancellationToken.None);
        Assert.Equal(0, Start(cluster, topics.Replies, 0));

        await retention.TrimAsync(start.AddSeconds(61), CancellationToken.None);
        Assert.Equal(30, Start(cluster, topics.Replies, 0));
        Assert.Equal(10, Start(cluster, topics.Commands, 0));
        Assert.Equal(0, Start(cluster, topics.Commands, 1));
        Assert.Equal(0, Start(cluster, topics.Events, 0));
        Assert.Equal(new Dictionary<string, long> { [topics.Replies] = 30, [topics.Commands] = 10 }, retention.Trimmed);

        // What is left is still read from where a reader stands; a cut never moves a start back.
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"{topics.Replies}-{i}"), Read(cluster, topics.Replies, 30, 5));
        await retention.TrimAsync(start.AddSeconds(62), CancellationToken.None);
        Assert.Equal(30, Start(cluster, topics.Replies, 0));
    }

    private static long Start(LocalCluster cluster, string topic, int partition)
    {
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = "probe" }).Build();
        return RetainedHistory.StartOffset(consumer, new TopicPartition(topic, partition), Timeout);
    }

    private static List<string> Read(LocalCluster cluster, string topic, long from, int count)
    {
        using var consumer = new ConsumerBuilder<Ignore, string>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = "probe" }).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, from));
        var values = new List<string>();
        var until = DateTime.UtcNow + Timeout;
        while (values.Count < count && DateTime.UtcNow < until)
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { Message: { } message }) values.Add(message.Value);
        return values;
    }
}
