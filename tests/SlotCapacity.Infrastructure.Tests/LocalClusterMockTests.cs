using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;
using SlotCapacity.Kafka;

namespace SlotCapacity.Infrastructure.Tests;

/// <summary>
/// `make run`'s local cluster hosts its mock brokers in a librdkafka built with nine changes
/// (compose/LocalCluster/mock/mock.patch): a fetch looks for its offset from the end of the
/// partition nearer to it instead of always from the oldest batch, a waiting fetch is answered
/// when data (fetch.min.bytes of it) arrives and with that data, a fetch gets every whole batch that fits, not one, a
/// partition keeps LOCAL_CLUSTER_PARTITION_MAX_MB, a commit is accepted while a group prepares a
/// rebalance, a rebalance ends once every member has rejoined, and a restarted static member gets
/// its partitions back without a rebalance. These tests build it (once; cached) and use it.
/// </summary>
public sealed class LocalClusterMockTests
{
    [Fact]
    public async Task The_built_mock_serves_every_record_of_a_long_partition_from_its_start_middle_and_tail()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 1);
        var bootstrap = cluster.Bootstrap;
        // Mostly one record per batch, with bursts that share a batch: the mock keeps a list of
        // batches per partition, and an offset inside a batch must find that batch.
        var topic = new TopicNames().Events;
        const int count = 1500;
        using (var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 0 }).Build())
        {
            for (var i = 0; i < count;)
            {
                if (i % 100 == 50)
                {
                    var burst = Enumerable.Range(i, 10).Select(n => producer.ProduceAsync(topic, new Message<Null, string> { Value = Text(n) })).ToList();
                    await Task.WhenAll(burst);
                    i += 10;
                }
                else
                {
                    await producer.ProduceAsync(topic, new Message<Null, string> { Value = Text(i) });
                    i++;
                }
            }
        }

        using var consumer = new ConsumerBuilder<Null, string>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "unused",
            EnableAutoCommit = false,
            FetchWaitMaxMs = 5,
        }).Build();
        foreach (var from in new[] { 0, 55, count / 2, count - 3 })
        {
            consumer.Assign(new TopicPartitionOffset(topic, 0, from));
            var read = ReadUntil(consumer, count - from);
            Assert.Equal(Enumerable.Range(from, count - from).Select(Text), read);
        }

        // At the tail: nothing yet, then the next record.
        consumer.Assign(new TopicPartitionOffset(topic, 0, count));
        Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(300)));
        using (var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = bootstrap }).Build())
            await producer.ProduceAsync(topic, new Message<Null, string> { Value = Text(count) });
        Assert.Equal([Text(count)], ReadUntil(consumer, 1));
    }

    [Fact]
    public async Task The_built_mock_answers_a_fetch_with_every_batch_that_fits_not_one()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 1);
        var topic = new TopicNames().Events;
        const int count = 600;
        // One record per batch: each produce is sent before the next starts.
        using (var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = cluster.Bootstrap, LingerMs = 0 }).Build())
            for (var i = 0; i < count; i++)
                await producer.ProduceAsync(topic, new Message<Null, string> { Value = Text(i) });

        // At the tail a fetch then waits for data instead of coming back every few ms.
        using var counted = new CountingConsumer(cluster.Bootstrap, fetchWaitMaxMs: 5_000);
        var consumer = counted.Consumer;
        consumer.Assign(new TopicPartitionOffset(topic, 0, 0));
        Assert.Equal(Enumerable.Range(0, count).Select(Text), ReadUntil(consumer, count));

        // The stock mock answers with one batch per fetch: at least one fetch per record here.
        var fetches = counted.FetchesFromNewStatistics();
        Assert.True(fetches < count / 10, $"{fetches} fetches for {count} one-record batches");
    }

    [Theory]
    [InlineData(null, 0L)]
    [InlineData("6", 1L)]
    public async Task The_built_mock_keeps_what_LOCAL_CLUSTER_PARTITION_MAX_MB_says_64_MiB_by_default_not_5(string? maxMb, long minimumStart)
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 1, partitionMaxMb: maxMb);
        var partition = new TopicPartition(new TopicNames().Events, 0);
        // 8 MiB in 100 KiB records: past the stock mock's 5 MiB, past a 6 MiB setting, well within 64.
        var value = new byte[100 * 1024];
        using (var producer = new ProducerBuilder<Null, byte[]>(new ProducerConfig { BootstrapServers = cluster.Bootstrap, LingerMs = 5 }).Build())
        {
            var sent = Enumerable.Range(0, 82).Select(_ => producer.ProduceAsync(partition, new Message<Null, byte[]> { Value = value })).ToList();
            await Task.WhenAll(sent);
        }
        using var consumer = new ConsumerBuilder<Null, byte[]>(new ConsumerConfig { BootstrapServers = cluster.Bootstrap, GroupId = "unused" }).Build();
        var watermarks = consumer.QueryWatermarkOffsets(partition, TimeSpan.FromSeconds(10));
        Assert.Equal(82, watermarks.High.Value);
        if (minimumStart == 0) Assert.Equal(0, watermarks.Low.Value);
        else Assert.True(watermarks.Low.Value >= minimumStart, $"with LOCAL_CLUSTER_PARTITION_MAX_MB={maxMb} the partition still starts at {watermarks.Low.Value}");
    }

    [Fact]
    public async Task The_built_mock_answers_a_waiting_fetch_when_data_arrives_not_when_the_wait_ends()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 2);
        var bootstrap = cluster.Bootstrap;
        var topic = new TopicNames().Replies;
        using var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 0 }).Build();
        await producer.ProduceAsync(topic, new Message<Null, string> { Value = "first" });

        // A fetch that would wait 30 s for data: the stock mock holds its empty answer that long.
        using var counted = new CountingConsumer(bootstrap, fetchWaitMaxMs: 30_000);
        var consumer = counted.Consumer;
        consumer.Assign(new TopicPartitionOffset(topic, 0, 0));
        Assert.Equal(["first"], ReadUntil(consumer, 1));
        // Now at the tail, the fetch waits; a record arrives on the partition it waits on.
        Assert.Null(consumer.Consume(TimeSpan.FromSeconds(1)));
        var fetchesBefore = counted.Fetches();
        var waited = Stopwatch.StartNew();
        await producer.ProduceAsync(new TopicPartition(topic, 0), new Message<Null, string> { Value = "second" });
        var read = new List<string>();
        while (read.Count == 0 && waited.Elapsed < TimeSpan.FromSeconds(20))
            if (consumer.Consume(TimeSpan.FromMilliseconds(100)) is { } record) read.Add(record.Message.Value);
        Assert.Equal(["second"], read);
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(15), $"the record took {waited.Elapsed.TotalSeconds:0.0} s, the fetch's whole wait");

        // The waiting fetch's answer carried the record, so the only fetch since is the next waiting one.
        // An answer woken empty (mock.patch before change 8) needs a second fetch to get the record.
        Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(500)));
        Assert.Equal(fetchesBefore + 1, counted.Fetches());
    }

    [Fact]
    public async Task The_built_mock_holds_a_waiting_fetch_until_fetch_min_bytes_arrive_or_its_wait_ends_then_answers_with_the_data()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 1);
        var partition = new TopicPartition(new TopicNames().Replies, 0);
        using var producer = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = cluster.Bootstrap, LingerMs = 0 }).Build();
        await producer.ProduceAsync(partition, new Message<Null, string> { Value = "first" });

        using var counted = new CountingConsumer(cluster.Bootstrap, fetchWaitMaxMs: 3_000, fetchMinBytes: 4_096);
        var consumer = counted.Consumer;
        consumer.Assign(new TopicPartitionOffset(partition, 0));
        Assert.Equal(["first"], ReadUntil(consumer, 1));

        // A small record does not wake the waiting fetch; it comes with the answer at the wait's end.
        Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(200)));
        var fetchesBefore = counted.Fetches();
        var waited = Stopwatch.StartNew();
        await producer.ProduceAsync(partition, new Message<Null, string> { Value = "small" });
        Assert.Equal(["small"], ReadUntil(consumer, 1));
        Assert.True(waited.Elapsed > TimeSpan.FromSeconds(1.5), $"a 5-byte record woke a fetch waiting for 4,096 bytes after {waited.Elapsed.TotalMilliseconds:0} ms");
        Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(300)));
        Assert.Equal(fetchesBefore + 1, counted.Fetches());

        // fetch.min.bytes arriving wakes it long before the wait's end.
        Assert.Null(consumer.Consume(TimeSpan.FromMilliseconds(200)));
        waited.Restart();
        await producer.ProduceAsync(partition, new Message<Null, string> { Value = new string('x', 5_000) });
        Assert.Single(ReadUntil(consumer, 1));
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(1.5), $"5,000 bytes took {waited.Elapsed.TotalMilliseconds:0} ms to wake a fetch waiting for 4,096");
    }

    /// <summary>A consumer of the built mock that keeps its latest statistics (every 100 ms, delivered
    /// by its Consume calls), to count the fetch requests it has sent.</summary>
    private sealed class CountingConsumer : IDisposable
    {
        private string? _statistics;

        public CountingConsumer(string bootstrap, int fetchWaitMaxMs, int fetchMinBytes = 1)
        {
            Consumer = new ConsumerBuilder<Null, string>(new ConsumerConfig
            {
                BootstrapServers = bootstrap,
                GroupId = "unused",
                EnableAutoCommit = false,
                FetchWaitMaxMs = fetchWaitMaxMs,
                FetchMinBytes = fetchMinBytes,
                SocketTimeoutMs = 60_000,
                StatisticsIntervalMs = 100,
            }).SetStatisticsHandler((_, json) => _statistics = json).Build();
        }

        public IConsumer<Null, string> Consumer { get; }

        /// <summary>Fetch requests sent, from the latest statistics.</summary>
        public long Fetches()
        {
            Assert.NotNull(_statistics);
            using var json = System.Text.Json.JsonDocument.Parse(_statistics);
            return json.RootElement.GetProperty("brokers").EnumerateObject()
                .Sum(broker => broker.Value.TryGetProperty("req", out var requests) && requests.TryGetProperty("Fetch", out var n) ? n.GetInt64() : 0);
        }

        /// <summary>Fetch requests sent, from statistics taken after this call.</summary>
        public long FetchesFromNewStatistics()
        {
            _statistics = null;
            for (var i = 0; i < 50 && _statistics is null; i++) Consumer.Consume(TimeSpan.FromMilliseconds(100));
            return Fetches();
        }

        public void Dispose() => Consumer.Dispose();
    }

    [Fact]
    public async Task The_built_mock_ends_a_rebalance_once_every_member_has_rejoined_not_a_session_timeout_later()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 4);
        var topic = new TopicNames().Commands;
        // A 10 s session: the stock mock holds every rebalance's join phase open 9 s (the session
        // less 1 s), whoever has rejoined; a broker ends it once every member has.
        IConsumer<Null, string> Member() => new ConsumerBuilder<Null, string>(new ConsumerConfig
        {
            BootstrapServers = cluster.Bootstrap,
            GroupId = "rejoin",
            SessionTimeoutMs = 10_000,
            HeartbeatIntervalMs = 100,
            EnableAutoCommit = false,
        }).Build();
        using var first = Member();
        using var second = Member();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var polling = new List<Task>();
        void Poll(IConsumer<Null, string> member) => polling.Add(Task.Run(() =>
        {
            while (!stop.IsCancellationRequested) member.Consume(TimeSpan.FromMilliseconds(50));
        }));

        first.Subscribe(topic);
        Poll(first);
        await WaitForAsync(() => first.Assignment.Count == 4, "the first member never got the topic's 4 partitions", stop.Token);

        var joined = Stopwatch.StartNew();
        second.Subscribe(topic);
        Poll(second);
        await WaitForAsync(() => first.Assignment.Count == 2 && second.Assignment.Count == 2,
            "the two members never shared the topic's 4 partitions", stop.Token);
        var rebalance = joined.Elapsed;
        await stop.CancelAsync();
        await Task.WhenAll(polling);
        Assert.True(rebalance < TimeSpan.FromSeconds(5),
            $"the second member's join took {rebalance.TotalSeconds:0.0} s to rebalance the group: the join phase waited out the session");
    }

    [Fact]
    public async Task The_built_mock_gives_a_restarted_static_member_its_partitions_back_without_rebalancing_the_others()
    {
        using var cluster = await BuiltMockCluster.StartAsync(slotPartitions: 4);
        var topic = new TopicNames().Commands;
        var survivorRebalances = 0;
        IConsumer<Null, string> Member(string instance, bool counted) => new ConsumerBuilder<Null, string>(new ConsumerConfig
            {
                BootstrapServers = cluster.Bootstrap,
                GroupId = "static",
                GroupInstanceId = instance,
                // Long enough that only a rejoin by instance id, not an expiry, can explain a quick return.
                SessionTimeoutMs = 30_000,
                HeartbeatIntervalMs = 100,
                EnableAutoCommit = false,
            })
            .SetPartitionsAssignedHandler((_, _) => { if (counted) Interlocked.Increment(ref survivorRebalances); })
            .SetPartitionsRevokedHandler((_, _) => { if (counted) Interlocked.Increment(ref survivorRebalances); })
            .Build();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var stopRestarting = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        Task Poll(IConsumer<Null, string> member, CancellationToken until) => Task.Run(() =>
        {
            while (!until.IsCancellationRequested) member.Consume(TimeSpan.FromMilliseconds(50));
        }, CancellationToken.None);

        using var survivor = Member("member-a", counted: true);
        var restarting = Member("member-b", counted: false);
        survivor.Subscribe(topic);
        restarting.Subscribe(topic);
        var polling = new List<Task> { Poll(survivor, stop.Token), Poll(restarting, stopRestarting.Token) };
        await WaitForAsync(() => survivor.Assignment.Count == 2 && restarting.Assignment.Count == 2,
            "the two static members never shared the topic's 4 partitions", stop.Token);
        var itsPartitions = restarting.Assignment.Select(p => p.Partition.Value).Order().ToList();
        var rebalancesBefore = Volatile.Read(ref survivorRebalances);

        // Closed without unsubscribing: a static member sends no LeaveGroup (KIP-345).
        await stopRestarting.CancelAsync();
        await polling[1];
        restarting.Close();
        restarting.Dispose();
        var back = Stopwatch.StartNew();
        using var restarted = Member("member-b", counted: false);
        restarted.Subscribe(topic);
        polling.Add(Poll(restarted, stop.Token));
        await WaitForAsync(() => restarted.Assignment.Count == 2, "the restarted static member never got partitions back", stop.Token);
        var returned = back.Elapsed;
        var itsPartitionsNow = restarted.Assignment.Select(p => p.Partition.Value).Order().ToList();
        // A second of heartbeats: a rebalance started by the rejoin would reach the survivor within it.
        await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None);
        var survivorPartitions = survivor.Assignment.Count;
        await stop.CancelAsync();
        await Task.WhenAll(polling);

        Assert.Equal(itsPartitions, itsPartitionsNow);
        Assert.Equal(2, survivorPartitions);
        Assert.Equal(rebalancesBefore, Volatile.Read(ref survivorRebalances));
        Assert.True(returned < TimeSpan.FromSeconds(10), $"the restarted member took {returned.TotalSeconds:0.0} s to get its partitions back");
    }

    private static async Task WaitForAsync(Func<bool> condition, string failure, CancellationToken cancel)
    {
        while (!condition())
        {
            if (cancel.IsCancellationRequested) Assert.Fail(failure);
            await Task.Delay(20, CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_local_cluster_told_to_use_a_librdkafka_that_is_not_there_says_so_and_exits()
    {
        using var cluster = ChildProcess.Start("SlotCapacity.LocalCluster", ["--brokers", "1"],
            new Dictionary<string, string> { [LocalCluster.LibraryVariable] = "/nonexistent/librdkafka-mock.so" });
        Assert.Equal(1, await cluster.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("LOCAL_CLUSTER_LIBRDKAFKA names /nonexistent/librdkafka-mock.so, which does not exist", cluster.Errors, StringComparison.Ordinal);
    }

    private static string Text(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static List<string> ReadUntil(IConsumer<Null, string> consumer, int wanted)
    {
        var read = new List<string>();
        var until = DateTime.UtcNow.AddSeconds(60);
        while (read.Count < wanted && DateTime.UtcNow < until)
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { } record)
                read.Add(record.Message.Value);
        return read;
    }

    private const string PartitionMaxVariable = "LOCAL_CLUSTER_PARTITION_MAX_MB";

    /// <summary>The local cluster host on the built mock, in a process of its own, with a temporary folder for its bootstrap file.</summary>
    private sealed class BuiltMockCluster : IDisposable
    {
        private readonly ChildProcess _process;
        private readonly string _folder;

        private BuiltMockCluster(ChildProcess process, string folder, string bootstrap)
        {
            _process = process;
            _folder = folder;
            Bootstrap = bootstrap;
        }

        public string Bootstrap { get; }

        /// <param name="partitionMaxMb">LOCAL_CLUSTER_PARTITION_MAX_MB for the host, or null to leave it unset</param>
        public static async Task<BuiltMockCluster> StartAsync(int slotPartitions, string? partitionMaxMb = null)
        {
            var library = await BuildMockAsync();
            var folder = Directory.CreateTempSubdirectory("local-cluster-mock-").FullName;
            var process = ChildProcess.Start("SlotCapacity.LocalCluster",
                ["--brokers", "1", "--slot-partitions", slotPartitions.ToString(CultureInfo.InvariantCulture), "--reply-partitions", "1",
                 "--bootstrap-file", Path.Combine(folder, "bootstrap")],
                new Dictionary<string, string> { [LocalCluster.LibraryVariable] = library, [PartitionMaxVariable] = partitionMaxMb ?? "" });
            try
            {
                var bootstrap = await LocalClusterTests.WaitForFileAsync(Path.Combine(folder, "bootstrap"), TimeSpan.FromSeconds(30), process);
                // The host logs which librdkafka it runs on just after it publishes the bootstrap file.
                var named = $"from {Path.GetFileName(library)}";
                for (var i = 0; i < 100 && !process.Output.Contains(named, StringComparison.Ordinal); i++) await Task.Delay(100);
                Assert.Contains(named, process.Output, StringComparison.Ordinal);
                return new BuiltMockCluster(process, folder, bootstrap);
            }
            catch
            {
                process.Dispose();
                Directory.Delete(folder, recursive: true);
                throw;
            }
        }

        public void Dispose()
        {
            _process.Dispose();
            if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
        }
    }

    /// <summary>Runs compose/LocalCluster/mock/build.sh (it reuses an earlier build) and returns the library it printed.</summary>
    private static async Task<string> BuildMockAsync()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Streams.sln")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException($"no Streams.sln above {AppContext.BaseDirectory}");
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(root, "compose", "LocalCluster", "mock", "build.sh"));
        using var build = Process.Start(info) ?? throw new InvalidOperationException("cannot start bash");
        var output = build.StandardOutput.ReadToEndAsync();
        var errors = build.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await build.WaitForExitAsync(timeout.Token);
        if (build.ExitCode != 0)
        {
            // CI shows a failure's first line only, and build.sh names the failed step on its last line.
            var lines = (await errors).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Fail($"compose/LocalCluster/mock/build.sh exited {build.ExitCode}: {string.Join(" | ", lines.Reverse().Take(12))}");
        }
        var library = (await output).Trim().Split('\n')[^1];
        Assert.True(File.Exists(library), $"build.sh printed {library}, which does not exist");
        return library;
    }
}
