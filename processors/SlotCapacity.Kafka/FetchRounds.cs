using Confluent.Kafka;

namespace SlotCapacity.Kafka;

/// <summary>
/// Reading a topic in rounds, for a consumer that does not need every record within milliseconds: a
/// round reads each partition until it reached the end the broker reported, then the consumer stops
/// fetching its partitions for an interval (pause, or unassign) and starts again. Meanwhile librdkafka
/// sends no Fetch for them, so the fetches per second depend on the interval, not on the record rate (on
/// the local cluster a fetch returns at most one batch per partition, and answers at once whenever any
/// partition has data). Both ways drop what librdkafka had fetched but not handed to the application:
/// a pause keeps the position after the last record handed over and a resume fetches from there; an
/// assignment names its offsets. Either way a round never skips a record nor returns one twice.
/// The consumer needs <c>enable.partition.eof</c>: a partition without new records says so only by that event.
/// </summary>
public sealed class FetchRounds
{
    // Partitions that reached their end in this round, as reported by a fetch answered since the round began.
    private readonly HashSet<int> reached = [];

    /// <summary>Rounds ended so far.</summary>
    public long Completed { get; private set; }

    /// <summary>Notes what a consume returned: an end-of-partition event, or a record that brought the
    /// partition's position to the high watermark of the latest fetch (the records after it are read in a
    /// later round). True when the partition reached its end.</summary>
    public bool Observe<TKey, TValue>(IConsumer<TKey, TValue> consumer, ConsumeResult<TKey, TValue> result)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        ArgumentNullException.ThrowIfNull(result);
        var atEnd = result.IsPartitionEOF
                    || consumer.GetWatermarkOffsets(result.TopicPartition).High is var high && high != Offset.Unset && result.Offset.Value + 1 >= high.Value;
        if (atEnd) reached.Add(result.Partition.Value);
        return atEnd;
    }

    /// <summary>Whether every one of <paramref name="partitions"/> (at least one) reached its end in this round.</summary>
    public bool Complete(IReadOnlyCollection<TopicPartition> partitions)
    {
        ArgumentNullException.ThrowIfNull(partitions);
        return partitions.Count > 0 && partitions.All(p => reached.Contains(p.Partition.Value));
    }

    /// <summary>Ends the round; call when the consumer stopped fetching its partitions (paused or unassigned
    /// them). Ends reported before say nothing about what arrives meanwhile; librdkafka reports each again
    /// once it fetches the partition anew.</summary>
    public void End()
    {
        reached.Clear();
        Completed++;
    }

    /// <summary>Partitions no longer assigned (a rebalance): one assigned again starts its round afresh.</summary>
    public void Forget(IEnumerable<TopicPartitionOffset> partitions)
    {
        ArgumentNullException.ThrowIfNull(partitions);
        foreach (var p in partitions) reached.Remove(p.Partition.Value);
    }
}
