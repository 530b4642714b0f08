using System.Diagnostics;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.History;

/// <summary>The events topic no longer holds every event from offset 0: a replay would be silently incomplete.</summary>
public sealed class IncompleteHistoryException : Exception
{
    public IncompleteHistoryException() { }
    public IncompleteHistoryException(string message) : base(message) { }
    public IncompleteHistoryException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>How far a replay has read: records read of those the topic held when it started.</summary>
public sealed record ReplayProgress(long Read, long Total, int PartitionsDone, int Partitions, TimeSpan Elapsed)
{
    public double Fraction => Total == 0 ? 1 : (double)Read / Total;

    public override string ToString() =>
        $"{Read:N0} of {Total:N0} events ({Fraction:P0}), {PartitionsDone}/{Partitions} partitions done, {Elapsed.TotalSeconds:0.0} s";
}

/// <summary>
/// Reads the whole events topic once, from offset 0 to the end each partition had when the read
/// began, with a group-less assignment (nothing committed). Refuses to start when a partition no
/// longer starts at 0 (<see cref="RetainedHistory"/>): the events before it are gone, and a view
/// rebuilt without them would be wrong without saying so.
/// </summary>
public static class SlotEventsReader
{
    /// <summary>How long the read may go without a record before it gives up.</summary>
    public static readonly TimeSpan Stall = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(1);

    /// <summary>Calls <paramref name="onEvent"/> for every event in partition order, and
    /// <paramref name="onMalformed"/> for a record that is not a SlotEvent. Blocking.</summary>
    public static ReplayProgress ReadAll(string bootstrapServers, string topic, Action<SlotEvent> onEvent, Action<string> onMalformed,
        IProgress<ReplayProgress>? progress, ILogger logger, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(onEvent);
        ArgumentNullException.ThrowIfNull(onMalformed);
        ArgumentNullException.ThrowIfNull(logger);
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = $"slot-replay-{Guid.NewGuid():N}",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = 5,
            EnablePartitionEof = true,
        };
        using var consumer = new ConsumerBuilder<string?, byte[]?>(KafkaEndpoint.Secured(config))
            .SetLogHandler((_, m) => { if (m.Level <= SyslogLevel.Error) logger.LogWarning("replay consumer: {Message}", m.Message); })
            .Build();
        var partitions = Partitions(bootstrapServers, topic);
        var ends = new Dictionary<int, long>();
        var gaps = new List<string>();
        foreach (var partition in partitions)
        {
            var tp = new TopicPartition(topic, partition);
            var marks = consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10));
            if (RetainedHistory.Gap(tp, marks.Low.Value, 0) is { } gap) gaps.Add(gap);
            if (marks.High.Value > 0) ends[partition] = marks.High.Value;
        }
        if (gaps.Count > 0)
        {
            var message = $"refusing to replay {topic}: its history is incomplete, so a rebuilt view would miss slots and bookings without saying so. "
                          + string.Join("; ", gaps);
            logger.LogCritical("{Refusal}", message);
            throw new IncompleteHistoryException(message);
        }

        var total = ends.Values.Sum();
        var clock = Stopwatch.StartNew();
        long read = 0;
        ReplayProgress Now() => new(read, total, partitions.Count - ends.Count, partitions.Count, clock.Elapsed);
        logger.LogInformation("replay of {Topic}: {Total} events in {Partitions} partitions", topic, total, partitions.Count);
        consumer.Assign(ends.Keys.Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var lastRecord = clock.Elapsed;
        var lastReport = TimeSpan.Zero;
        while (ends.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            var record = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (record is null)
            {
                if (clock.Elapsed - lastRecord > Stall)
                    throw new TimeoutException($"replay of {topic} got no event for {Stall.TotalSeconds:0} s with {total - read} of {total} still to read: is the cluster at {bootstrapServers} up?");
                continue;
            }
            lastRecord = clock.Elapsed;
            var partition = record.Partition.Value;
            if (!ends.TryGetValue(partition, out var end)) continue;
            // The end of the partition, or the last record it held when the read began: what comes later is not replayed.
            if (record.IsPartitionEOF ? record.Offset.Value >= end : record.Offset.Value >= end - 1) ends.Remove(partition);
            if (record.IsPartitionEOF || record.Offset.Value >= end) continue;
            read++;
            try
            {
                onEvent(ProtobufSerde<SlotEvent>.Instance.Deserialize(record.Message.Value, record.Message.Value is null,
                    new SerializationContext(MessageComponentType.Value, topic)));
            }
            catch (MalformedRecordException e)
            {
                onMalformed($"{topic}[{partition}]@{record.Offset.Value}: {e.Message}");
            }
            if (clock.Elapsed - lastReport >= ProgressEvery)
            {
                lastReport = clock.Elapsed;
                Report(Now(), progress, logger, topic);
            }
        }
        var done = Now();
        Report(done, progress, logger, topic);
        consumer.Close();
        return done;
    }

    private static void Report(ReplayProgress now, IProgress<ReplayProgress>? progress, ILogger logger, string topic)
    {
        logger.LogInformation("replay of {Topic}: {Read} of {Total} events, {PartitionsDone}/{Partitions} partitions done, {ElapsedMs} ms",
            topic, now.Read, now.Total, now.PartitionsDone, now.Partitions, (long)now.Elapsed.TotalMilliseconds);
        progress?.Report(now);
    }

    private static List<int> Partitions(string bootstrapServers, string topic)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrapServers }).Build();
        var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.FirstOrDefault(t => t.Topic == topic);
        if (metadata is null || metadata.Error.IsError || metadata.Partitions.Count == 0)
            throw new StartupException($"topic '{topic}' not found on {bootstrapServers} ({metadata?.Error.Reason ?? "no metadata"}): start the system (make run), or set TOPIC_PREFIX to the prefix it uses");
        return metadata.Partitions.Select(p => p.PartitionId).Order().ToList();
    }
}
