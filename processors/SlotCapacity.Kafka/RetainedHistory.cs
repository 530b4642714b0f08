using Confluent.Kafka;

namespace SlotCapacity.Kafka;

/// <summary>
/// Whether a partition still holds the records a reader needs. A reader that rebuilds state
/// (a processor restoring its store, a view or a replay reading a topic from the start) must see
/// every record from where it starts; if the cluster has dropped some (the local cluster keeps
/// only the last LOCAL_CLUSTER_PARTITION_MAX_MB of each partition, 64 MiB by default, the stock mock
/// 5 MiB; a real cluster drops by retention or DeleteRecords),
/// the rebuilt state would be silently incomplete.
/// </summary>
public static class RetainedHistory
{
    /// <summary>The first offset the cluster still holds for <paramref name="partition"/>.</summary>
    public static long StartOffset<TKey, TValue>(IConsumer<TKey, TValue> consumer, TopicPartition partition, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        return consumer.QueryWatermarkOffsets(partition, timeout).Low.Value;
    }

    /// <summary>
    /// Null when a reader that needs every record from <paramref name="neededFrom"/> on (0: the
    /// whole history) can have them, given the partition's <paramref name="startOffset"/>; else a
    /// one-line description of the gap.
    /// </summary>
    public static string? Gap(TopicPartition partition, long startOffset, long neededFrom)
    {
        ArgumentNullException.ThrowIfNull(partition);
        if (startOffset <= neededFrom) return null;
        return $"{partition.Topic}[{partition.Partition.Value}] starts at offset {startOffset} but records from offset {neededFrom} on are needed: "
               + $"{startOffset - neededFrom} records are gone (the local cluster keeps only the last LOCAL_CLUSTER_PARTITION_MAX_MB, 64 MiB by default, of each partition; "
               + "a real cluster drops records by retention or DeleteRecords)";
    }
}
