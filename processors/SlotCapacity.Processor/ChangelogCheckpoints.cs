using System.Collections.Concurrent;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Processors.Internal;
using Streamiz.Kafka.Net.State;

namespace SlotCapacity.Processor;

/// <summary>
/// Streamiz's per-task checkpoint files, plus the check Streamiz does not make: that the task's
/// changelog partition still holds every record its restore needs. Streamiz restores from the
/// checkpoint (or from the start when there is none) and, when the changelog now starts later,
/// silently skips to the new start: a state with slots or bookings missing, i.e. an oversell
/// waiting to happen. Here such a task is refused instead: the check runs when Streamiz reads the
/// checkpoint, before the restore; <see cref="SlotCommandProcessor"/> then decides and answers none
/// of the partition's commands and <see cref="RebalanceTolerantCommits"/> commits none of their
/// offsets, so they wait for a processor that can restore the partition. A refused task never
/// writes a checkpoint, so the refusal survives restarts of this instance.
/// </summary>
public sealed class ChangelogCheckpoints : IOffsetCheckpointManager, IDisposable
{
    private static readonly TimeSpan WatermarkTimeout = TimeSpan.FromSeconds(10);
    // Short: it runs on the stream thread, between commands.
    private static readonly TimeSpan RunningCheckpointTimeout = TimeSpan.FromSeconds(1);

    private readonly ProcessorSettings _settings;
    private readonly ILogger _log;
    private readonly Lazy<IConsumer<byte[], byte[]>> _watermarks;
    private readonly ConcurrentDictionary<int, string> _refused = new();
    private readonly ConcurrentDictionary<int, long> _takenOverAt = new();
    private readonly ConcurrentDictionary<TaskId, DeferredFlushStore> _stores = new();

    public ChangelogCheckpoints(ProcessorSettings settings, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(loggers);
        _settings = settings;
        _log = loggers.CreateLogger<ChangelogCheckpoints>();
        // Only asks for watermarks: it never subscribes, so its group id is never joined.
        _watermarks = new Lazy<IConsumer<byte[], byte[]>>(() => new ConsumerBuilder<byte[], byte[]>(KafkaEndpoint.Secured(new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            GroupId = settings.Topics.ProcessorApplicationId + "-restore-check",
            ClientId = settings.InstanceName + "-restore-check",
            EnableAutoCommit = false,
        })).SetLogHandler((_, _) => { }).Build());
    }

    /// <summary>
    /// Connects the client that checks changelogs before restores and asks it once, so that it knows
    /// the cluster: a standby does this before it waits, since the first check after a takeover,
    /// made cold, took 0.7 s of the partitions' dark time under 500 reserves/s (5 ms idle). A failure
    /// only leaves the first check cold.
    /// </summary>
    public void Connect()
    {
        var changelog = new TopicPartition(_settings.Topics.StateChangelog, 0);
        try
        {
            RetainedHistory.StartOffset(_watermarks.Value, changelog, WatermarkTimeout);
        }
        catch (KafkaException e)
        {
            _log.LogWarning("The changelog check's client could not reach {Changelog} ahead of a takeover ({Reason}); it connects at the first check", changelog, e.Error.Reason);
        }
    }

    /// <summary>The command partitions whose tasks are restored and deciding, for readiness.</summary>
    public ServedPartitions Served { get; } = new();

    /// <summary>Why the task of this command partition is refused, or null when it is served.</summary>
    public string? Refusal(int partition) => _refused.GetValueOrDefault(partition);

    /// <summary>
    /// The end offset of the commands partition when this processor took it over (0 until then):
    /// commands below it were written while an earlier owner held the partition, which may have
    /// decided and answered them and then died before its state write reached the changelog (the
    /// reply and the changelog record are separate produce requests). Such a command must be decided
    /// again, as it was then, never skipped.
    /// </summary>
    public long TakenOverAt(int partition) => _takenOverAt.GetValueOrDefault(partition);

    /// <summary>Records where a task's commands partition ended when the task was created.</summary>
    public void TookOver(int partition, long commandsEnd) => _takenOverAt[partition] = commandsEnd;

    public void Configure(IStreamConfig config, TaskId taskId)
    {
        // Paths come from the settings this instance was made with.
    }

    public IDictionary<TopicPartition, long> Read(TaskId taskId)
    {
        ArgumentNullException.ThrowIfNull(taskId);
        var checkpoints = CheckpointFile(taskId).Read(taskId);
        var changelog = new TopicPartition(_settings.Topics.StateChangelog, taskId.Partition);
        long startOffset;
        var asked = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            startOffset = RetainedHistory.StartOffset(_watermarks.Value, changelog, WatermarkTimeout);
            var commands = new TopicPartition(_settings.Topics.Commands, taskId.Partition);
            TookOver(taskId.Partition, _watermarks.Value.QueryWatermarkOffsets(commands, WatermarkTimeout).High.Value);
            _log.LogInformation("Changelog {Changelog} starts at offset {StartOffset}, checked before restoring in {Ms:0} ms",
                changelog, startOffset, System.Diagnostics.Stopwatch.GetElapsedTime(asked).TotalMilliseconds);
        }
        catch (KafkaException e)
        {
            // Unverifiable is not the same as incomplete: fail the stream, and the supervisor's restart asks again.
            _log.LogError("Cannot read the start offset of {Changelog} to check it before restoring ({Reason})", changelog, e.Error.Reason);
            throw;
        }

        // A negative offset is Streamiz's "unknown" (the store had no changelog writes to record).
        var hasCheckpoint = checkpoints.TryGetValue(changelog, out var checkpoint) && checkpoint >= 0;
        var gap = RetainedHistory.Gap(changelog, startOffset, hasCheckpoint ? checkpoint : 0);
        if (gap is null)
        {
            if (_refused.TryRemove(taskId.Partition, out _))
                _log.LogInformation("Partition {Partition} restores from a complete changelog again", taskId.Partition);
            // Without a checkpoint Streamiz gives the restore consumer Offset.Beginning, which librdkafka
            // looks up with a ListOffsets request; Streamiz resumes the partition right after assigning it,
            // that makes the answer outdated, and librdkafka asks again only 500 ms later (a survivor took
            // 1 s to restore 126 records of a partition it took over). The start offset, checked above, is
            // the same place as a position librdkafka fetches from at once.
            if (!hasCheckpoint) checkpoints[changelog] = startOffset;
            return checkpoints;
        }

        var local = hasCheckpoint
            ? $"this processor's checkpoint is at offset {checkpoint}"
            : "this processor has no local state for it";
        var refusal = $"processor {_settings.InstanceName} refuses slot partition {taskId.Partition}: its state cannot be restored, {local} and {gap}. "
                      + "It decides nothing from partial state: the partition's commands wait, uncommitted, for a processor that can restore it (callers get UNAVAILABLE at the gateway's deadline). "
                      + $"Fix: run the processor whose state directory (PROCESSOR_STATE_DIR) has a checkpoint at or after offset {startOffset} for this partition; "
                      + "on the local cluster, or if no such state exists, start the system afresh (make run) and apply the plan again";
        _refused[taskId.Partition] = refusal;
        _log.LogCritical("{Refusal}", refusal);
        return checkpoints;
    }

    public void Write(TaskId taskId, IDictionary<TopicPartition, long> data)
    {
        ArgumentNullException.ThrowIfNull(taskId);
        if (_refused.ContainsKey(taskId.Partition))
        {
            // A checkpoint would vouch for the partial state it restored.
            CheckpointFile(taskId).Destroy(taskId);
            return;
        }
        // The store defers Streamiz's commit-time flushes to here (see SlotStateStoreSupplier).
        if (_stores.TryGetValue(taskId, out var store)) store.FlushForCheckpoint();
        CheckpointFile(taskId).Write(taskId, data);
    }

    /// <summary>
    /// Writes the checkpoint of a running task, which Streamiz 1.8 never does: it checkpoints a task
    /// when it closes it and, while it runs, only once 10,000 changelog records have passed since a
    /// previous checkpoint of the same task object, of which there is none until it closes
    /// (<c>AbstractTask.WriteCheckpoint</c>: no snapshot yet means no checkpoint). A processor killed
    /// after an hour therefore restored from the checkpoint of its last clean close: every record
    /// since, and on the local cluster, whose partitions keep ~40 s of changelog at 10x, a refusal.
    /// Here, called on the stream thread between records: the changelog's end offset is read first,
    /// then the store is flushed, then that offset is written. Each record below it was appended
    /// before the read, so its put (made before its write, by this task, the partition's only
    /// writer) is in the flushed files; records from it on are replayed by a restore, which is
    /// idempotent. Nothing written since the last checkpoint (or a refused task): nothing to do.
    /// </summary>
    public void CheckpointRunning(TaskId taskId)
    {
        ArgumentNullException.ThrowIfNull(taskId);
        if (_refused.ContainsKey(taskId.Partition) || !_stores.TryGetValue(taskId, out var store) || !store.TakeWritten()) return;
        var changelog = new TopicPartition(_settings.Topics.StateChangelog, taskId.Partition);
        long end;
        try
        {
            end = _watermarks.Value.QueryWatermarkOffsets(changelog, RunningCheckpointTimeout).High.Value;
        }
        catch (KafkaException e)
        {
            // The next round tries again, written or not: a restore from an older checkpoint is only slower.
            store.MarkWritten();
            _log.LogWarning("Checkpoint of running task {Task} skipped: the end offset of {Changelog} is unknown ({Reason})", taskId, changelog, e.Error.Reason);
            return;
        }
        Write(taskId, new Dictionary<TopicPartition, long> { [changelog] = end });
        _log.LogDebug("Checkpoint of running task {Task}: {Changelog} restores from offset {Offset}", taskId, changelog, end);
    }

    /// <summary>The task's open `slot-state` store, flushed before each of its checkpoints.</summary>
    internal void Track(TaskId taskId, DeferredFlushStore store) => _stores[taskId] = store;

    internal void Untrack(TaskId taskId, DeferredFlushStore store) => _stores.TryRemove(new KeyValuePair<TaskId, DeferredFlushStore>(taskId, store));

    public void Destroy(TaskId taskId)
    {
        ArgumentNullException.ThrowIfNull(taskId);
        CheckpointFile(taskId).Destroy(taskId);
    }

    public void Dispose()
    {
        if (_watermarks.IsValueCreated) _watermarks.Value.Dispose();
    }

    /// <summary>Where Streamiz keeps a task's checkpoint by default, so existing state directories stay valid.</summary>
    private OffsetCheckpointFile CheckpointFile(TaskId taskId) =>
        new(Path.Combine(_settings.StateDirectory, _settings.Topics.ProcessorApplicationId, $"{taskId.Id}-{taskId.Partition}"));
}
