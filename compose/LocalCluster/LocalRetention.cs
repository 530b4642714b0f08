using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

namespace SlotCapacity.LocalClusterHost;

/// <summary>
/// Time-based retention for the local cluster's commands and replies, which the mock does not have.
/// The mock finds a fetch's offset by walking the partition's batches from the oldest
/// (<c>rd_kafka_mock_msgset_find</c>, "FIXME: Maintain an index"), so every fetch at the tail of a
/// partition costs in proportion to all it holds: measured, its CPU per reserve grew from 810 to
/// 1,376 µs over three 10x runs on one system, and kept growing up to its cap per partition (5 MiB stock, 64 MiB in make run's build).
/// Commands and replies are read once, at their tail, so their history is pure cost.
/// <para>
/// Each round remembers every partition's end; a partition is cut back to the end it had
/// <c>retention</c> ago. A command partition is never cut past the processors' committed offset, so
/// a command nobody has applied yet (a processor down, a restore under way) is never lost. Events,
/// availability and the changelog keep their history: the warehouse, replays, a new gateway's view
/// and a restore need it.
/// </para>
/// </summary>
public sealed class LocalRetention : IDisposable
{
    private readonly LocalCluster _cluster;
    private readonly TopicNames _topics;
    private readonly TimeSpan _retention;
    private readonly ILogger _log;
    private readonly IAdminClient _admin;
    private readonly IConsumer<Ignore, Ignore> _offsets;
    private readonly Queue<(DateTimeOffset At, Dictionary<TopicPartition, long> Ends)> _seen = new();
    private readonly Dictionary<string, int> _partitions;

    /// <summary>Records cut so far, per topic.</summary>
    public IReadOnlyDictionary<string, long> Trimmed => _trimmed;
    private readonly Dictionary<string, long> _trimmed = new();

    public LocalRetention(LocalCluster cluster, TopicNames topics, IReadOnlyList<TopicSpec> specs, TimeSpan retention, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(topics);
        ArgumentNullException.ThrowIfNull(specs);
        if (retention <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(retention), retention, "retention must be positive");
        _cluster = cluster;
        _topics = topics;
        _retention = retention;
        _log = log;
        _partitions = specs.Where(s => s.Name == topics.Commands || s.Name == topics.Replies).ToDictionary(s => s.Name, s => s.Partitions);
        _admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = cluster.BootstrapServers }).Build();
        _offsets = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = $"local-retention-{Guid.NewGuid():N}" }).Build();
    }

    /// <summary>Rounds come every 10 s, or every retention if that is shorter: a record goes at most one interval after its retention.</summary>
    public TimeSpan Interval => _retention < TimeSpan.FromSeconds(10) ? _retention : TimeSpan.FromSeconds(10);

    /// <summary>Runs a round every <see cref="Interval"/> until <paramref name="ct"/> fires; a failed round is logged and the next one tries again.</summary>
    public async Task RunAsync(TimeProvider clock, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(clock);
        using var timer = new PeriodicTimer(Interval, clock);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                try
                {
                    await TrimAsync(clock.GetUtcNow(), ct).ConfigureAwait(false);
                }
                catch (Exception e) when (e is KafkaException or InvalidOperationException or TimeoutException)
                {
                    _log.LogWarning("Retention round failed ({Problem}); the next round tries again", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>One round at <paramref name="now"/>: remembers every partition's end and cuts what is older than the retention.</summary>
    public async Task TrimAsync(DateTimeOffset now, CancellationToken ct)
    {
        var timeout = TimeSpan.FromSeconds(5);
        var ends = new Dictionary<TopicPartition, long>();
        var starts = new Dictionary<TopicPartition, long>();
        foreach (var (topic, count) in _partitions)
            for (var p = 0; p < count; p++)
            {
                var tp = new TopicPartition(topic, p);
                var marks = _offsets.QueryWatermarkOffsets(tp, timeout);
                starts[tp] = marks.Low.Value;
                ends[tp] = marks.High.Value;
            }
        _seen.Enqueue((now, ends));

        // The newest remembered ends that are at least the retention old.
        Dictionary<TopicPartition, long>? cut = null;
        while (_seen.Count > 0 && now - _seen.Peek().At >= _retention) cut = _seen.Dequeue().Ends;
        if (cut is null) return;

        var committed = await CommittedCommandsAsync(ct).ConfigureAwait(false);
        var round = new Dictionary<string, long>();
        foreach (var (tp, end) in cut)
        {
            var before = tp.Topic == _topics.Commands ? Math.Min(end, committed.GetValueOrDefault(tp.Partition, 0)) : end;
            if (before <= starts[tp]) continue;
            _cluster.DeleteRecords(tp.Topic, tp.Partition, before);
            round[tp.Topic] = round.GetValueOrDefault(tp.Topic) + (before - starts[tp]);
        }
        foreach (var (topic, records) in round)
        {
            _trimmed[topic] = _trimmed.GetValueOrDefault(topic) + records;
            _log.LogInformation("Retention cut {Records} records of {Topic} older than {RetainSeconds} s ({Total} so far)", records, topic, _retention.TotalSeconds, _trimmed[topic]);
        }
    }

    /// <summary>The processors' committed offset per command partition; a partition they never committed is absent (never cut).</summary>
    private async Task<Dictionary<int, long>> CommittedCommandsAsync(CancellationToken ct)
    {
        try
        {
            return await CommittedCommands.ReadAsync(_admin, _topics, _partitions[_topics.Commands], ct).ConfigureAwait(false);
        }
        catch (ListConsumerGroupOffsetsException e)
        {
            _log.LogDebug("No committed offsets of {Group} yet ({Problem})", _topics.ProcessorApplicationId, e.Message);
            return [];
        }
    }

    public void Dispose()
    {
        _offsets.Dispose();
        _admin.Dispose();
    }
}
