using Confluent.Kafka;
using Confluent.Kafka.Admin;
using SlotCapacity.Kafka;

namespace SlotCapacity.Faults;

/// <summary>
/// Whether the processors have taken every command written so far: their group's committed offset
/// on each partition of the commands topic is at the partition's end. Until then an abandon or a
/// release may still be on its way to the engine (a processor killed as the calls ended is still
/// restoring, say), and an audit reading the bookings would count those orders as phantoms.
/// </summary>
internal static class CommandsTaken
{
    public static async Task<bool> AllAsync(string bootstrap, TopicNames topics)
    {
        using var admin = new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig { BootstrapServers = bootstrap })).Build();
        var partitions = admin.GetMetadata(topics.Commands, TimeSpan.FromSeconds(5)).Topics.Single().Partitions.Count;
        var taken = await CommittedCommands.ReadAsync(admin, topics, partitions);
        var ends = await admin.ListOffsetsAsync(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffsetSpec
        {
            TopicPartition = new TopicPartition(topics.Commands, p),
            OffsetSpec = OffsetSpec.Latest(),
        }));
        return ends.ResultInfos.All(end =>
            end.TopicPartitionOffsetError.Offset.Value == 0
            || (taken.TryGetValue(end.TopicPartitionOffsetError.Partition.Value, out var offset) && offset >= end.TopicPartitionOffsetError.Offset.Value));
    }
}
