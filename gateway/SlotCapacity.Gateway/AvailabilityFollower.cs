using System.Diagnostics;
using Confluent.Kafka;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>
/// Builds and follows the <see cref="AvailabilityView"/> from the WHOLE compacted availability topic:
/// every partition assigned by hand from the beginning, or from the positions of a
/// <see cref="ViewCheckpoint"/> after loading it; no consumer group (each gateway needs every slot,
/// and nothing is committed). Lag is the high watermark minus the consumer position, which also steps
/// over transaction markers left by exactly-once processors. When records the view needed are gone
/// from the topic (its start offset is past where reading begins: retention, or the local cluster's
/// cap per partition) the view says it is incomplete rather than claim every slot.
/// Once caught up it follows in rounds (<see cref="FetchRounds"/>, <see cref="GatewaySettings.ViewFetchInterval"/>):
/// a round reads every partition to where it ended, then the partitions are unassigned for the interval
/// and assigned again at the positions the view reached. Unassign and assign rather than pause and resume:
/// librdkafka does not wake its broker thread on a resume, which then starts fetching only on its next
/// wake-up (up to 1 s later when the connection is quiet); an assignment wakes it at once.
/// </summary>
public sealed class AvailabilityFollower : IDisposable
{
    private readonly GatewaySettings settings;
    private readonly AvailabilityView view;
    private readonly ILogger<AvailabilityFollower> logger;
    private readonly IConsumer<string, byte[]> consumer;
    private readonly CancellationTokenSource stop = new();
    private List<TopicPartition> partitions = [];
    // End offsets when following began: the view is "caught up" once every partition reached them.
    private Dictionary<int, long> startEnds = [];
    // Next offset to read per partition, kept by the follower thread: the consumer's own position is
    // unknown until a record of the partition was consumed since the assignment.
    private Dictionary<int, long> next = [];
    private readonly Dictionary<int, long> lastApplied = [];
    private readonly object lagLock = new();
    private volatile bool caughtUp;
    // (records, ms) as of the last refresh by the follower thread: reads are served at tens of
    // thousands per second and must not call into librdkafka for every partition each time.
    private volatile Tuple<long, long> lag = Tuple.Create(0L, 0L);
    private long malformed;
    private long startedUnixMs;
    private volatile string? incomplete;
    private readonly List<string> droppedRanges = [];
    private bool changedSinceCheckpoint;
    private Thread? thread;
    private readonly FetchRounds rounds = new();
    private long pausedUntilMs = -1;
    // Where each partition is read again when the round after the pause starts.
    private List<TopicPartitionOffset> resumeAt = [];

    /// <summary>How often a changed view is saved to <see cref="GatewaySettings.ViewCheckpoint"/>.</summary>
    private static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(2);

    public AvailabilityFollower(GatewaySettings settings, AvailabilityView view, ILogger<AvailabilityFollower> logger)
    {
        this.settings = settings;
        this.view = view;
        this.logger = logger;
        var config = new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            // Required by the client; no group is joined (Assign, never Subscribe) and nothing is committed.
            GroupId = $"{settings.Topics.Prefix}slot-gateway-view-{settings.Instance}",
            ClientId = $"{settings.Instance}-availability",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            // A position the broker no longer has (records dropped while this view lagged) restarts
            // at the oldest record left, not at the end: fewer slots are missed, and it is reported.
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = settings.ViewFetchWaitMaxMs,
            FetchMinBytes = settings.ViewFetchMinBytes,
            IsolationLevel = IsolationLevel.ReadCommitted,
            SocketNagleDisable = true,
            // The end-of-partition event tells a round that a partition without new records was fetched.
            EnablePartitionEof = settings.ViewFetchInterval > TimeSpan.Zero,
        };
        consumer = new ConsumerBuilder<string, byte[]>(KafkaEndpoint.Secured(config))
            .SetErrorHandler((_, e) => logger.LogWarning("Availability consumer error {Code}: {Reason}", e.Code, e.Reason))
            .SetLogHandler((_, m) => logger.LogDebug("librdkafka {Facility}: {Message}", m.Facility, m.Message))
            .Build();
    }

    public bool CaughtUp => caughtUp;

    /// <summary>Rounds ended (partitions unassigned) since start; 0 while following continuously.</summary>
    public long Rounds => rounds.Completed;

    /// <summary>True between two rounds, while no partition is assigned.</summary>
    public bool Paused => Volatile.Read(ref pausedUntilMs) >= 0;
    public long Malformed => Interlocked.Read(ref malformed);

    /// <summary>Why the view may lack or hold stale slots (records it needed were dropped from the
    /// topic); null when it was read from where every slot's latest snapshot still is.</summary>
    public string? Incomplete => incomplete;

    /// <summary>Slots the view started with from its checkpoint (0: read from the start of the topic).</summary>
    public int SlotsFromCheckpoint { get; private set; }

    /// <summary>Loads the checkpoint if there is a usable one, assigns every partition from where the
    /// view's records begin, and starts following.</summary>
    public void Start(TimeSpan metadataTimeout)
    {
        using (var admin = new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig { BootstrapServers = settings.BootstrapServers })).Build())
        {
            var topic = admin.GetMetadata(settings.Topics.Availability, metadataTimeout).Topics.Single();
            if (topic.Error.IsError)
                throw new Kafka.StartupException($"cannot read topic {settings.Topics.Availability}: {topic.Error.Reason}; create the topics first");
            partitions = topic.Partitions.Select(p => new TopicPartition(topic.Topic, p.PartitionId)).OrderBy(p => p.Partition.Value).ToList();
        }
        var watermarks = partitions.ToDictionary(p => p.Partition.Value, p => consumer.QueryWatermarkOffsets(p, metadataTimeout));
        startEnds = watermarks.ToDictionary(w => w.Key, w => w.Value.High.Value);
        var from = LoadCheckpoint(watermarks);
        foreach (var p in partitions.Where(p => watermarks[p.Partition.Value].Low.Value > from[p.Partition.Value]))
            RecordDropped(p.Partition.Value, from[p.Partition.Value], watermarks[p.Partition.Value].Low.Value);
        next = partitions.ToDictionary(p => p.Partition.Value, p => Math.Max(from[p.Partition.Value], watermarks[p.Partition.Value].Low.Value));
        consumer.Assign(partitions.Select(p => new TopicPartitionOffset(p, next[p.Partition.Value])));
        var toRead = partitions.Sum(p => startEnds[p.Partition.Value] - next[p.Partition.Value]);
        caughtUp = toRead == 0;
        lag = Tuple.Create(toRead, 0L);
        startedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        logger.LogInformation("Following {Topic}: {Partitions} partitions, {Slots} slots from the checkpoint, {Records} records to read before ready",
            settings.Topics.Availability, partitions.Count, view.SlotCount, toRead);
        thread = new Thread(Run) { IsBackground = true, Name = $"{settings.Instance}-availability" };
        thread.Start();
    }

    /// <summary>Records [<paramref name="from"/>, <paramref name="to"/>) of a partition were dropped from the
    /// topic before this view read them.</summary>
    private void RecordDropped(int partition, long from, long to)
    {
        droppedRanges.Add($"{partition} (offsets {from}..{to - 1})");
        incomplete = $"records were dropped from {settings.Topics.Availability} before this gateway read them, partitions {string.Join(", ", droppedRanges)}: " +
                     "a slot whose latest snapshot was among them is missing from the view or shown stale until it changes again";
        logger.LogWarning("Availability view incomplete: {Incomplete}", incomplete);
    }

    /// <summary>Applies the checkpoint when it belongs to this topic; returns where each partition's
    /// reading begins (0 without a usable checkpoint).</summary>
    private Dictionary<int, long> LoadCheckpoint(Dictionary<int, WatermarkOffsets> watermarks)
    {
        var fromStart = partitions.ToDictionary(p => p.Partition.Value, _ => 0L);
        if (settings.ViewCheckpoint is not { } path) return fromStart;
        var checkpoint = ViewCheckpoint.Load(path, out var problem);
        if (checkpoint is not null)
        {
            // A checkpoint of another topic, or of a topic since recreated (positions past its end), would
            // put slots in the view that do not exist.
            if (checkpoint.Topic != settings.Topics.Availability)
                problem = $"it is of topic {checkpoint.Topic}";
            else if (!watermarks.Keys.Order().SequenceEqual(checkpoint.Positions.Keys.Order()))
                problem = $"it has {checkpoint.Positions.Count} partitions, the topic {watermarks.Count}";
            else if (checkpoint.Positions.FirstOrDefault(p => p.Value > watermarks[p.Key].High.Value) is { Key: var partition, Value: > 0 } ahead)
                problem = $"partition {partition} is at {ahead.Value} in it but ends at {watermarks[partition].High.Value} (topic recreated?)";
        }
        if (checkpoint is null || problem is not null)
        {
            logger.LogInformation("View checkpoint {Path} not used: {Problem}; reading {Topic} from the start", path, problem, settings.Topics.Availability);
            return fromStart;
        }
        foreach (var snapshot in checkpoint.Snapshots) view.Apply(snapshot);
        SlotsFromCheckpoint = checkpoint.Snapshots.Count;
        logger.LogInformation("View checkpoint {Path} loaded: {Slots} slots", path, checkpoint.Snapshots.Count);
        return checkpoint.Positions.ToDictionary(p => p.Key, p => p.Value);
    }

    /// <summary>Saves the view with the positions it reflects (on the follower thread, so the two agree).</summary>
    private void SaveCheckpoint()
    {
        if (settings.ViewCheckpoint is not { } path || !changedSinceCheckpoint) return;
        try
        {
            var positions = partitions.ToDictionary(p => p.Partition.Value, Next);
            new ViewCheckpoint(settings.Topics.Availability, positions, view.All()).Save(path);
            changedSinceCheckpoint = false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or KafkaException)
        {
            logger.LogWarning("View checkpoint {Path} not saved: {Reason}", path, e.Message);
        }
    }

    private void Run()
    {
        var loaded = Stopwatch.StartNew();
        var lastCheck = 0L;
        var lastLag = 0L;
        var lastCheckpoint = 0L;
        while (!stop.IsCancellationRequested)
        {
            ConsumeResult<string, byte[]>? record = null;
            try
            {
                record = consumer.Consume(TimeSpan.FromMilliseconds(Paused ? Math.Clamp(pausedUntilMs - loaded.ElapsedMilliseconds, 1, 100) : 100));
            }
            catch (ConsumeException e)
            {
                logger.LogWarning("Availability consume failed on {TopicPartition}: {Reason}", e.ConsumerRecord?.TopicPartition, e.Error.Reason);
            }
            if (record?.Message is { } message)
            {
                Apply(record, message);
                changedSinceCheckpoint = true;
            }
            if (record is not null) rounds.Observe(consumer, record);
            if (caughtUp && settings.ViewFetchInterval > TimeSpan.Zero)
                Pace(loaded.ElapsedMilliseconds);
            if (caughtUp && loaded.Elapsed.TotalMilliseconds - lastCheckpoint >= CheckpointInterval.TotalMilliseconds)
            {
                lastCheckpoint = loaded.ElapsedMilliseconds;
                SaveCheckpoint();
            }
            if (loaded.ElapsedMilliseconds - lastLag >= LagRefreshMs)
            {
                lastLag = loaded.ElapsedMilliseconds;
                var (records, ms) = MeasureLag();
                lag = Tuple.Create(records, ms);
            }
            if (!caughtUp && loaded.ElapsedMilliseconds - lastCheck >= 20)
            {
                lastCheck = loaded.ElapsedMilliseconds;
                if (ReachedStartEnds())
                {
                    caughtUp = true;
                    logger.LogInformation("Availability view caught up: {Slots} slots in {ElapsedMs} ms", view.SlotCount, loaded.ElapsedMilliseconds);
                }
            }
        }
    }

    /// <summary>Ends a round once every partition reached its end in it (unassigning them all), and starts the
    /// next one when the interval has passed.</summary>
    private void Pace(long nowMs)
    {
        var interval = (long)settings.ViewFetchInterval.TotalMilliseconds;
        try
        {
            if (Paused)
            {
                if (nowMs < pausedUntilMs) return;
                consumer.Assign(resumeAt);
                Volatile.Write(ref pausedUntilMs, -1);
                return;
            }
            if (!rounds.Complete(partitions)) return;
            // Positions first: after the unassignment the consumer no longer knows them (a position past a
            // transaction marker is past the last record's offset + 1).
            foreach (var p in partitions) next[p.Partition.Value] = Next(p);
            resumeAt = partitions.Select(p => new TopicPartitionOffset(p, next[p.Partition.Value])).ToList();
            consumer.Unassign();
            rounds.End();
            Volatile.Write(ref pausedUntilMs, nowMs + interval);
        }
        catch (KafkaException e)
        {
            // Following on (or trying to resume again after another interval) beats stopping the view.
            logger.LogWarning("Availability follower could not {Action} its partitions: {Reason}", Paused ? "assign" : "unassign", e.Error.Reason);
            if (Paused) Volatile.Write(ref pausedUntilMs, nowMs + interval);
        }
    }

    private void Apply(ConsumeResult<string, byte[]> record, Message<string, byte[]> message)
    {
        lock (lagLock) lastApplied[record.Partition.Value] = message.Timestamp.UnixTimestampMs;
        // Offsets skipped are normal on a compacted topic; skipped below the partition's start offset
        // means the view lagged behind records the broker has dropped since (reset to the oldest left).
        var expected = next[record.Partition.Value];
        if (record.Offset.Value > expected && consumer.GetWatermarkOffsets(record.TopicPartition).Low is var low && low != Offset.Unset && low.Value > expected)
            RecordDropped(record.Partition.Value, expected, low.Value);
        next[record.Partition.Value] = record.Offset.Value + 1;
        if (message.Value is null)
        {
            view.Remove(message.Key);
            return;
        }
        try
        {
            var snapshot = AvailabilitySnapshot.Parser.ParseFrom(message.Value);
            if (snapshot.Slot != message.Key)
            {
                Interlocked.Increment(ref malformed);
                logger.LogWarning("Skipped availability record at {TopicPartitionOffset}: snapshot names slot {Slot} under key {Key}", record.TopicPartitionOffset, snapshot.Slot, message.Key);
                return;
            }
            view.Apply(snapshot);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            Interlocked.Increment(ref malformed);
            logger.LogWarning("Skipped malformed availability record at {TopicPartitionOffset}: {Reason}", record.TopicPartitionOffset, e.Message);
        }
    }

    private bool ReachedStartEnds()
    {
        foreach (var p in partitions)
            if (Next(p) < startEnds[p.Partition.Value]) return false;
        return true;
    }

    /// <summary>The next offset to read (the consumer's position when known: it also steps over
    /// transaction markers).</summary>
    private long Next(TopicPartition p)
    {
        var position = consumer.Position(p);
        return position == Offset.Unset ? next[p.Partition.Value] : Math.Max(position.Value, next[p.Partition.Value]);
    }

    private const int LagRefreshMs = 50;

    /// <summary>Records not yet applied and how stale the view is (0 ms when caught up), refreshed every
    /// 50 ms (at most ~150 ms old: the follower polls with a 100 ms timeout).</summary>
    public (long Records, long Ms) Lag()
    {
        var current = lag;
        return (current.Item1, current.Item2);
    }

    /// <summary>High watermark (as last fetched) minus position, summed over partitions.</summary>
    private (long Records, long Ms) MeasureLag()
    {
        long records = 0, oldestApplied = long.MaxValue;
        foreach (var p in partitions)
        {
            var ends = consumer.GetWatermarkOffsets(p);
            long high = ends.High == Offset.Unset ? startEnds.GetValueOrDefault(p.Partition.Value) : ends.High.Value;
            var pos = Next(p);
            if (high <= pos) continue;
            records += high - pos;
            lock (lagLock)
                oldestApplied = Math.Min(oldestApplied, lastApplied.TryGetValue(p.Partition.Value, out var ts) ? ts : startedUnixMs);
        }
        var ms = records == 0 ? 0 : Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - oldestApplied);
        return (records, ms);
    }

    public void Stop()
    {
        if (stop.IsCancellationRequested) return;
        stop.Cancel();
        thread?.Join();
        SaveCheckpoint();
        consumer.Close();
    }

    public void Dispose()
    {
        Stop();
        consumer.Dispose();
        stop.Dispose();
    }
}
