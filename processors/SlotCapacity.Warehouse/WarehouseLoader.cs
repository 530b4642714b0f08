using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.History;
using SlotCapacity.Kafka;

namespace SlotCapacity.Warehouse;

/// <summary>What the loader is told: where the events are, which group it commits in, where it writes.</summary>
public sealed record WarehouseSettings(string BootstrapServers, TopicNames Topics, string GroupId)
{
    public const int MaxBatch = 2_000;
    /// <summary>The pause between two rounds (WAREHOUSE_BATCH_WINDOW_MS): once a round has read every
    /// assigned partition to its end, the loader fetches nothing for this long, then reads what came
    /// meanwhile in one burst. Each batch is one transaction on a database opened for it, which costs
    /// far more than its rows at a trickle, and the loader's fetches per second no longer grow with the
    /// event rate: make run uses 5 s (the tables trail by that much). Also the longest a round gathers
    /// when it cannot catch up.</summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>One consumed batch: the rows to write and, per partition, the offset to commit once they are written.</summary>
public sealed record LoadBatch(List<EventRow> Events, List<SkippedRow> Skipped, List<TopicPartitionOffset> Next)
{
    public int Records => Events.Count + Skipped.Count;
}

/// <summary>
/// Loads `slot-events` into the warehouse exactly once by event id: each batch is upserted in one
/// transaction keyed by event id, and only then are its offsets committed (auto commit off). A
/// crash between the two re-delivers the batch, whose upserts change nothing; a duplicate event
/// (a re-delivered command re-emits its events with the same ids) is one row. A record that is not
/// a usable event is skipped with its reason, logged, counted and kept in `skipped_records`.
/// It reads in rounds (<see cref="FetchRounds"/>): after a batch that reached the end of every assigned
/// partition it pauses them for <see cref="WarehouseSettings.BatchWindow"/>. The next round starts after
/// the last record consumed, so pausing neither skips a record nor opens a false gap.
/// </summary>
public sealed class WarehouseLoader : IDisposable
{
    private readonly WarehouseSettings _settings;
    private readonly WarehouseStore _store;
    private readonly ILogger _logger;
    private readonly IConsumer<string?, byte[]?> _consumer;
    // Per assigned partition, the offset the next record must have: a later one means records are gone.
    private readonly Dictionary<int, long> _expected = [];
    private readonly FetchRounds _rounds = new();
    // Partitions paused for a rest whose resume failed: resumed again before the next read.
    private List<TopicPartition> _paused = [];

    public long Loaded { get; private set; }
    public long Skipped { get; private set; }
    /// <summary>True when the last <see cref="Poll"/> read every assigned partition to its end.</summary>
    public bool CaughtUp { get; private set; }
    /// <summary>Pauses between rounds taken so far.</summary>
    public long Rounds => _rounds.Completed;

    public WarehouseLoader(WarehouseSettings settings, WarehouseStore store, ILogger logger)
    {
        _settings = settings;
        _store = store;
        _logger = logger;
        _consumer = new ConsumerBuilder<string?, byte[]?>(KafkaEndpoint.Secured(new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            GroupId = settings.GroupId,
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = 5,
            // Tells a round that it has read a partition to its end.
            EnablePartitionEof = true,
            // Real Kafka's smallest by default: a loader that died hands its partitions on after 6 s, not 45.
            SessionTimeoutMs = 6_000,
        }))
            .SetLogHandler((_, m) => { if (m.Level <= SyslogLevel.Warning) logger.LogWarning("warehouse consumer: {Message}", m.Message); })
            .SetPartitionsAssignedHandler((c, partitions) => Assigned(c, partitions))
            .SetPartitionsRevokedHandler((_, partitions) => Forget(partitions))
            .SetPartitionsLostHandler((_, partitions) => Forget(partitions))
            .Build();
        store.EnsureSchema();
        _consumer.Subscribe(settings.Topics.Events);
        logger.LogInformation("warehouse loading {Topic} into {Store} (group {Group})", settings.Topics.Events, store.Description, settings.GroupId);
    }

    /// <summary>Loads until cancelled: consume a batch, write it, then commit its offsets.</summary>
    public void Run(CancellationToken ct)
    {
        var lastReport = DateTime.UtcNow;
        var reported = (Loaded, Skipped);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var batch = Poll(TimeSpan.FromMilliseconds(500), ct);
                if (batch is not null)
                {
                    Write(batch);
                    Commit(batch);
                }
                if (CaughtUp) Rest(ct);
            }
            catch (ConsumeException e) when (!e.Error.IsFatal)
            {
                _logger.LogWarning("warehouse: consume failed, retrying: {Reason}", e.Error.Reason);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            if (DateTime.UtcNow - lastReport >= TimeSpan.FromSeconds(30) && (Loaded, Skipped) != reported)
            {
                lastReport = DateTime.UtcNow;
                reported = (Loaded, Skipped);
                _logger.LogInformation("warehouse: {Loaded} events loaded, {Skipped} records skipped, {Rounds} rounds since start", Loaded, Skipped, Rounds);
            }
        }
    }

    /// <summary>Up to <see cref="WarehouseSettings.MaxBatch"/> records, until every assigned partition is
    /// read to its end (<see cref="CaughtUp"/>): waits up to <paramref name="wait"/> for the first record,
    /// then gathers at most <see cref="WarehouseSettings.BatchWindow"/>. Null when none came.</summary>
    public LoadBatch? Poll(TimeSpan wait, CancellationToken ct)
    {
        var batch = new LoadBatch([], [], []);
        var next = new Dictionary<int, long>();
        var deadline = DateTime.UtcNow + wait;
        CaughtUp = false;
        if (_paused.Count > 0) Resume(_paused);
        while (batch.Records < WarehouseSettings.MaxBatch && !ct.IsCancellationRequested)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) break;
            var record = _consumer.Consume(left);
            if (record is null) break;
            var reachedEnd = _rounds.Observe(_consumer, record);
            if (!record.IsPartitionEOF)
            {
                var partition = record.Partition.Value;
                if (batch.Records == 0) deadline = DateTime.UtcNow + _settings.BatchWindow;
                CheckContinuity(partition, record.Offset.Value, batch);
                Take(record, batch);
                next[partition] = record.Offset.Value + 1;
            }
            if (reachedEnd && _rounds.Complete(_consumer.Assignment))
            {
                CaughtUp = true;
                break;
            }
        }
        if (batch.Records == 0) return null;
        batch.Next.AddRange(next.Select(p => new TopicPartitionOffset(_settings.Topics.Events, p.Key, p.Value)));
        return batch;
    }

    /// <summary>Pauses the assigned partitions for <see cref="WarehouseSettings.BatchWindow"/> (less when
    /// <paramref name="ct"/> is cancelled: a SIGTERM does not wait it out), then resumes them.</summary>
    public void Rest(CancellationToken ct)
    {
        var assigned = _consumer.Assignment;
        CaughtUp = false;
        try
        {
            _consumer.Pause(assigned);
        }
        catch (KafkaException e) when (!e.Error.IsFatal)
        {
            _logger.LogWarning("warehouse: could not pause {Partitions} partitions, reading on: {Reason}", assigned.Count, e.Error.Reason);
            return;
        }
        _rounds.End();
        ct.WaitHandle.WaitOne(_settings.BatchWindow);
        Resume(assigned);
    }

    private void Resume(List<TopicPartition> partitions)
    {
        try
        {
            _consumer.Resume(partitions);
            _paused = [];
        }
        catch (KafkaException e) when (!e.Error.IsFatal)
        {
            _logger.LogWarning("warehouse: could not resume {Partitions} partitions, trying again: {Reason}", partitions.Count, e.Error.Reason);
            _paused = partitions;
        }
    }

    /// <summary>Writes the batch in one transaction. Its offsets are not committed yet.</summary>
    public void Write(LoadBatch batch)
    {
        _store.Write(batch.Events, batch.Skipped);
        Loaded += batch.Events.Count;
        Skipped += batch.Skipped.Count;
    }

    /// <summary>Commits the batch's offsets: call only after <see cref="Write"/> returned.</summary>
    public void Commit(LoadBatch batch)
    {
        if (batch.Next.Count == 0) return;
        try
        {
            _consumer.Commit(batch.Next);
        }
        catch (KafkaException e) when (!e.Error.IsFatal)
        {
            // The batch is written: it comes again to this loader or another, and its upserts change nothing.
            _logger.LogWarning("warehouse: offset commit failed, the batch will be read again: {Reason}", e.Error.Reason);
        }
    }

    private void Take(ConsumeResult<string?, byte[]?> record, LoadBatch batch)
    {
        var partition = record.Partition.Value;
        string? problem;
        SlotKey slot = default;
        SlotEvent? e = null;
        try
        {
            e = ProtobufSerde<SlotEvent>.Instance.Deserialize(record.Message.Value, record.Message.Value is null,
                new SerializationContext(MessageComponentType.Value, record.Topic));
            problem = SlotEventCheck.Problem(e, out slot);
        }
        catch (MalformedRecordException ex)
        {
            problem = ex.Message;
        }
        if (problem is null)
        {
            batch.Events.Add(new EventRow(e!, slot, partition, record.Offset.Value));
            return;
        }
        _logger.LogWarning("warehouse: skipped {Topic}[{Partition}]@{Offset}: {Reason}", record.Topic, partition, record.Offset.Value, problem);
        batch.Skipped.Add(new SkippedRow(partition, record.Offset.Value, problem));
    }

    /// <summary>A partition that no longer holds the records after the last committed offset: the
    /// warehouse misses them. Said loudly and kept in `skipped_records`, never passed over in silence.</summary>
    private void CheckContinuity(int partition, long offset, LoadBatch batch)
    {
        if (_expected.TryGetValue(partition, out var expected) && offset > expected)
        {
            var gap = RetainedHistory.Gap(new TopicPartition(_settings.Topics.Events, partition), offset, expected);
            _logger.LogCritical("warehouse: events are missing and cannot be loaded: {Gap}", gap);
            batch.Skipped.Add(new SkippedRow(partition, expected, $"history gap: {gap}"));
        }
        _expected[partition] = offset + 1;
    }

    private void Forget(List<TopicPartitionOffset> partitions)
    {
        foreach (var p in partitions) _expected.Remove(p.Partition.Value);
        _rounds.Forget(partitions);
    }

    private void Assigned(IConsumer<string?, byte[]?> consumer, List<TopicPartition> partitions)
    {
        var committed = consumer.Committed(partitions, TimeSpan.FromSeconds(10));
        foreach (var c in committed)
            _expected[c.Partition.Value] = c.Offset.Value >= 0 ? c.Offset.Value : 0;
    }

    public void Dispose()
    {
        // Leaves the group without committing: anything not committed is read again by the next loader.
        try
        {
            _consumer.Close();
        }
        catch (KafkaException e)
        {
            _logger.LogWarning("warehouse: leaving the group failed: {Reason}", e.Error.Reason);
        }
        _consumer.Dispose();
    }
}
