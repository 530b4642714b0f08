using System.Diagnostics;
using Confluent.Kafka;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>
/// Recent events of some slots, read from the tail of their partitions of <c>slot-events</c>. The
/// topic is keyed by slot and a slot's records stay on the partition its commands went to, so only
/// those partitions are read, and only their last <see cref="MaxRecordsPerPartition"/> records,
/// within <see cref="TimeBudget"/>: a planner's click never scans a whole topic.
/// </summary>
public sealed class SlotEventsTail(GatewaySettings settings, ILogger<SlotEventsTail> logger)
{
    public const int MaxRecordsPerPartition = 5_000;
    public static readonly TimeSpan TimeBudget = TimeSpan.FromSeconds(3);
    private int partitionCount;

    /// <summary>What was read: every event of the asked slots found in the window, oldest first, and
    /// why the window may not hold a slot's whole history (null when it does).</summary>
    public sealed record Tail(IReadOnlyList<SlotEvent> Events, string? Incomplete, long Scanned, long Malformed);

    public Tail Read(IReadOnlyCollection<string> slots)
    {
        using var consumer = new ConsumerBuilder<string, byte[]>(KafkaEndpoint.Secured(new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            // Assigned by hand, nothing committed: the group id is only required by the client.
            GroupId = $"{settings.Topics.Prefix}slot-gateway-console-{settings.Instance}",
            ClientId = $"{settings.Instance}-console-events",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = settings.FetchWaitMaxMs,
        })).SetLogHandler((_, m) => logger.LogDebug("librdkafka {Facility}: {Message}", m.Facility, m.Message)).Build();
        var clock = Stopwatch.StartNew();
        var partitions = PartitionCount(consumer);
        var wanted = new HashSet<string>(slots, StringComparer.Ordinal);
        var notes = new List<string>();
        var ranges = new List<(TopicPartitionOffset From, long End)>();
        foreach (var partition in wanted.Select(s => SlotPartition.Of(s, partitions)).Distinct().Order())
        {
            var tp = new TopicPartition(settings.Topics.Events, partition);
            var marks = consumer.QueryWatermarkOffsets(tp, TimeBudget);
            var neededFrom = Math.Max(0, marks.High.Value - MaxRecordsPerPartition);
            if (RetainedHistory.Gap(tp, marks.Low.Value, neededFrom) is { } gap) notes.Add("records were dropped: " + gap);
            if (neededFrom > 0) notes.Add($"{tp.Topic}[{partition}]: only its last {MaxRecordsPerPartition} records were read (offsets {neededFrom}..{marks.High.Value - 1}); older events of these slots are not shown");
            var from = Math.Max(neededFrom, marks.Low.Value);
            if (from < marks.High.Value) ranges.Add((new TopicPartitionOffset(tp, from), marks.High.Value));
        }
        var events = new List<SlotEvent>();
        long scanned = 0, malformed = 0;
        if (ranges.Count > 0)
        {
            consumer.Assign(ranges.Select(r => r.From));
            var open = ranges.ToDictionary(r => r.From.Partition.Value, r => r.End);
            while (open.Count > 0 && clock.Elapsed < TimeBudget)
            {
                var record = consumer.Consume(TimeSpan.FromMilliseconds(100));
                if (record?.Message is not { } message) continue;
                scanned++;
                if (record.Offset.Value + 1 >= open.GetValueOrDefault(record.Partition.Value, long.MaxValue)) open.Remove(record.Partition.Value);
                if (message.Key is null || !wanted.Contains(message.Key)) continue;
                try
                {
                    events.Add(SlotEvent.Parser.ParseFrom(message.Value));
                }
                catch (Google.Protobuf.InvalidProtocolBufferException e)
                {
                    malformed++;
                    logger.LogWarning("Console: skipped a malformed event at {TopicPartitionOffset} ({Bytes} bytes): {Reason}", record.TopicPartitionOffset, message.Value?.Length ?? 0, e.Message);
                }
            }
            if (open.Count > 0) notes.Add($"reading stopped after {TimeBudget.TotalSeconds:0} s with partitions {string.Join(", ", open.Keys)} not read to their end");
            consumer.Close();
        }
        events.Sort(static (a, b) => a.OccurredUnixMs.CompareTo(b.OccurredUnixMs));
        return new Tail(events, notes.Count == 0 ? null : string.Join("; ", notes), scanned, malformed);
    }

    private int PartitionCount(IConsumer<string, byte[]> consumer)
    {
        if (partitionCount > 0) return partitionCount;
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var topic = admin.GetMetadata(settings.Topics.Events, TimeBudget).Topics.Single();
        if (topic.Error.IsError || topic.Partitions.Count == 0)
            throw new KafkaException(topic.Error.IsError ? topic.Error : new Error(ErrorCode.UnknownTopicOrPart, $"topic {settings.Topics.Events} has no partitions"));
        return partitionCount = topic.Partitions.Count;
    }
}

/// <summary>
/// The partition a slot's records are on: librdkafka's default partitioner (consistent_random:
/// CRC-32 of the key, modulo the partition count), which the gateway's command producer uses; the
/// processor writes a slot's events and snapshots on its command's partition.
/// </summary>
public static class SlotPartition
{
    private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        var c = (uint)n;
        for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    public static int Of(string slot, int partitions)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(slot)) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return (int)((crc ^ 0xFFFFFFFFu) % (uint)partitions);
    }
}
