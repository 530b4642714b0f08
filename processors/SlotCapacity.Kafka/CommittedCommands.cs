using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace SlotCapacity.Kafka;

/// <summary>How far the processors have taken the commands topic, by their group's committed offsets.</summary>
public static class CommittedCommands
{
    /// <summary>
    /// The processors' committed offset per partition of the commands topic (<paramref name="partitions"/>
    /// of them); a partition they never committed is absent. Throws
    /// <see cref="ListConsumerGroupOffsetsException"/> when the group has none to list yet.
    /// </summary>
    public static async Task<Dictionary<int, long>> ReadAsync(IAdminClient admin, TopicNames topics, int partitions, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(admin);
        ArgumentNullException.ThrowIfNull(topics);
        var asked = Enumerable.Range(0, partitions).Select(p => new TopicPartition(topics.Commands, p)).ToList();
        var results = await admin.ListConsumerGroupOffsetsAsync(
            [new ConsumerGroupTopicPartitions(topics.ProcessorApplicationId, asked)],
            new ListConsumerGroupOffsetsOptions { RequestTimeout = TimeSpan.FromSeconds(5) }).WaitAsync(ct).ConfigureAwait(false);
        return results.SelectMany(r => r.Partitions)
            .Where(p => p.Error.Code == ErrorCode.NoError && p.Offset.Value >= 0)
            .ToDictionary(p => p.Partition.Value, p => p.Offset.Value);
    }
}
