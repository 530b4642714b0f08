using Confluent.Kafka;
using SlotCapacity.Load.Targets;
using SlotCapacity.Testing;
using Xunit;

namespace SlotCapacity.Load.Tests;

/// <summary>
/// A reader that rebuilds from the events topic (the audit, a replay) must say when the cluster has
/// dropped the oldest events (the local cluster keeps only the last 5 MiB of a partition), never
/// report a partial history as the whole.
/// </summary>
public sealed class IncompleteHistoryTests
{
    [Fact]
    public async Task Reading_an_events_topic_whose_oldest_records_are_gone_reports_the_gap()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(slotPartitions: 2, replyPartitions: 2);
        var partition = new TopicPartition(topics.Events, 0);
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = broker.BootstrapServers }).Build())
        {
            for (var i = 0; i < 10; i++)
                await producer.ProduceAsync(partition, new Message<string, byte[]> { Key = $"event-{i}", Value = [1, 2, 3] });
        }
        await broker.DropOldestRecordsAsync(partition);

        var problems = new List<string>();
        var read = 0;
        TopicReader.ReadToEnd(broker.BootstrapServers, topics.Events, TimeSpan.FromSeconds(30), problems, (_, _) => read++, () => true,
            CancellationToken.None);

        Assert.True(read > 0);
        var problem = Assert.Single(problems);
        Assert.Contains($"{topics.Events}[0] starts at offset", problem, StringComparison.Ordinal);
        Assert.StartsWith("incomplete history", problem, StringComparison.Ordinal);
    }
}
