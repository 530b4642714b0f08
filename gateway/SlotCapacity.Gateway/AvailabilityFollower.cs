using System.Diagnostics;
using Confluent.Kafka;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Builds and follows the <see cref="AvailabilityView"/> from the WHOLE compacted availability topic:
/// every partition assigned by hand from the beginning, no consumer group (each gateway needs every
/// slot, and nothing is committed). Lag is the high watermark minus the consumer position, which
/// also steps over transaction markers left by exactly-once processors.
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
    private readonly Dictionary<int, long> lastApplied = [];
    private readonly object lagLock = new();
    private volatile bool caughtUp;
    // (records, ms) as of the last refresh by the follower thread: reads are served at tens of
    // thousands per second and must not call into librdkafka for every partition each time.
    private volatile Tuple<long, long> lag = Tuple.Create(0L, 0L);
    private long malformed;
    private long startedUnixMs;
    private Thread? thread;

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
            FetchWaitMaxMs = settings.FetchWaitMaxMs,
            IsolationLevel = IsolationLevel.ReadCommitted,
            SocketNagleDisable = true,
        };
        consumer = new ConsumerBuilder<string, byte[]>(config)
            .SetErrorHandler((_, e) => logger.LogWarning("Availability consumer error {Code}: {Reason}", e.Code, e.Reason))
            .SetLogHandler((_, m) => logger.LogDebug("librdkafka {Facility}: {Message}", m.Facility, m.Message))
            .Build();
    }

    public bool CaughtUp => caughtUp;
    public long Malformed => Interlocked.Read(ref malformed);

    /// <summary>Assigns every partition from the beginning and starts following.</summary>
    public void Start(TimeSpan metadataTimeout)
    {
        using (var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = settings.BootstrapServers }).Build())
        {
            var topic = admin.GetMetadata(settings.Topics.Availability, metadataTimeout).Topics.Single();
            if (topic.Error.IsError)
                throw new Kafka.StartupException($"cannot read topic {settings.Topics.Availability}: {topic.Error.Reason}; create the topics first");
            partitions = topic.Partitions.Select(p => new TopicPartition(topic.Topic, p.PartitionId)).OrderBy(p => p.Partition.Value).ToList();
        }
        startEnds = partitions.ToDictionary(p => p.Partition.Value, p => consumer.QueryWatermarkOffsets(p, metadataTimeout).High.Value);
        consumer.Assign(partitions.Select(p => new TopicPartitionOffset(p, Offset.Beginning)));
        caughtUp = startEnds.Values.All(end => end == 0);
        lag = Tuple.Create(startEnds.Values.Sum(), 0L);
        startedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        logger.LogInformation("Following {Topic}: {Partitions} partitions, {Records} records to read before ready",
            settings.Topics.Availability, partitions.Count, startEnds.Values.Sum());
        thread = new Thread(Run) { IsBackground = true, Name = $"{settings.Instance}-availability" };
        thread.Start();
    }

    private void Run()
    {
        var loaded = Stopwatch.StartNew();
        var lastCheck = 0L;
        var lastLag = 0L;
        while (!stop.IsCancellationRequested)
        {
            ConsumeResult<string, byte[]>? record = null;
            try
            {
                record = consumer.Consume(TimeSpan.FromMilliseconds(100));
            }
            catch (ConsumeException e)
            {
                logger.LogWarning("Availability consume failed on {TopicPartition}: {Reason}", e.ConsumerRecord?.TopicPartition, e.Error.Reason);
            }
            if (record?.Message is { } message) Apply(record, message);
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

    private void Apply(ConsumeResult<string, byte[]> record, Message<string, byte[]> message)
    {
        lock (lagLock) lastApplied[record.Partition.Value] = message.Timestamp.UnixTimestampMs;
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
        {
            var position = consumer.Position(p);
            if (startEnds[p.Partition.Value] > 0 && (position == Offset.Unset || position.Value < startEnds[p.Partition.Value])) return false;
        }
        return true;
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
            var position = consumer.Position(p);
            long high = ends.High == Offset.Unset ? startEnds.GetValueOrDefault(p.Partition.Value) : ends.High.Value;
            long pos = position == Offset.Unset ? 0 : position.Value;
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
        consumer.Close();
    }

    public void Dispose()
    {
        Stop();
        consumer.Dispose();
        stop.Dispose();
    }
}
