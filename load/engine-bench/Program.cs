using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;
using SlotCapacity.Kafka;
using SlotCapacity.Processor;

// Engine benchmark: (1) the pure decision per command, (2) one processor's throughput on a broker
// (KAFKA_BOOTSTRAP_SERVERS, else an in-process local cluster). Bounded in count and time.
// Usage: dotnet run -c Release --project load/engine-bench -- [decide] [throughput] [latency] [--commands N] [--slots N] [--seconds N] [--out FILE]
var modes = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal) && !int.TryParse(a, out _)).ToHashSet();
if (modes.Count == 0) modes = ["decide", "throughput", "latency"];
var commandCount = Option("--commands", 50_000);
var slotCount = Option("--slots", 500);
var outFile = args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault();
var report = new StringBuilder();
// One factory for the whole run: Streamiz keeps the first one it sees in a static.
using var loggers = LoggerFactory.Create(l => l.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
void Line(string text)
{
    Console.WriteLine(text);
    report.AppendLine(text);
}

Line($"# Engine benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Line($"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
Line("");
if (modes.Contains("decide")) DecideBenchmark();
if (modes.Contains("throughput")) await ThroughputBenchmark(commandCount, slotCount);
if (modes.Contains("latency")) await LatencyBenchmark(slotCount, [1_000, 3_000, 5_000], TimeSpan.FromSeconds(Option("--seconds", 5)));
if (outFile is not null)
{
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outFile))!);
    await File.WriteAllTextAsync(outFile, report.ToString());
    Console.WriteLine($"written to {outFile}");
}
return 0;

int Option(string name, int fallback)
{
    var value = args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
    return value is null ? fallback : int.Parse(value, CultureInfo.InvariantCulture);
}

void DecideBenchmark()
{
    const string slot = "hub-bench@2030-05-06T10:00Z";
    const long t0 = 1_900_000_000_000;
    var config = new SlotConfig
    {
        Open = true,
        Fleet =
        {
            new FleetCounterConfig { Name = "vans-north", CapacityOrders = 120, Zones = { "north", "centre" }, Carries = { "bulky", "chilled" } },
            new FleetCounterConfig { Name = "vans-south", CapacityOrders = 120, Zones = { "south", "centre" }, Carries = { "bulky", "chilled" } },
            new FleetCounterConfig { Name = "bikes", CapacityOrders = 60, Carries = { "chilled" } },
        },
        Shared = { new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 20_000 } },
        ZoneRules = { new ZoneRule { Zone = "centre", MaxOrders = 150 } },
    };
    SlotCommand Command(long i, Action<SlotCommand> body)
    {
        var c = new SlotCommand { CommandId = $"c{i}", Slot = slot, ReplyPartition = 1, CorrelationId = $"corr{i}" };
        body(c);
        return c;
    }
    SlotCommand Reserve(long i) => Command(i, c => c.Reserve = new Reserve
    {
        ReservationId = $"r{i}",
        OrderId = $"o{i}",
        Zone = (i % 3) switch { 0 => "north", 1 => "south", _ => "centre" },
        Needs = new OrderNeeds { Quantities = { ["items"] = 20 + i % 30 }, Requires = { i % 4 == 0 ? "bulky" : "chilled" } },
        HoldExpiresUnixMs = i % 5 == 0 ? t0 + 3_600_000 : 0,
    });

    // A slot carrying 200 reservations (a busy two-hour window); the records live beside the slot state.
    var records = new Dictionary<string, ReservationRecord>(StringComparer.Ordinal);
    ReservationRecord? Lookup(string id) => records.TryGetValue(id, out var r) ? r : null;
    SlotState Apply(SlotState? current, SlotCommand command, long at, long position)
    {
        var decision = SlotDecisions.Decide(current, Lookup, command, at, 0, position);
        foreach (var record in decision.Reservations) records[record.ReservationId] = record;
        return decision.State ?? current!;
    }
    var state = Apply(null, Command(0, c => c.Configure = new ConfigureSlot { Config = config }), t0, 0);
    for (var i = 1; i <= 200; i++)
        state = Apply(state, Reserve(i), t0 + i, i);
    var stored = state.ToByteArray();
    var storedRecord = records["r10"].ToByteArray();
    Line($"## Decision per command (slot with {records.Count} reservations; slot state {stored.Length} bytes, a reservation {storedRecord.Length} bytes)");
    Line("");
    Line("| case | median ns/command | p90 ns/command |");
    Line("| --- | ---: | ---: |");

    // Each case leaves the slot as it was: a reserve then its release, or commands without effect.
    var reserveNew = Reserve(1_000_000);
    var releaseNew = Command(1_000_001, c => c.Release = new Release { ReservationId = "r1000000" });
    var duplicate = Reserve(5);
    var confirm = Command(1_000_002, c => c.Confirm = new Confirm { ReservationId = "r10" });
    var offset = 1_000L;
    Measure("reserve accepted + release (per command)", 2, () =>
    {
        state = Apply(state, reserveNew, t0 + 10_000, ++offset);
        state = Apply(state, releaseNew, t0 + 10_000, ++offset);
        records.Remove("r1000000");
    });
    Measure("reserve, same id again (idempotent)", 1, () => state = Apply(state, duplicate, t0 + 10_000, ++offset));
    Measure("confirm of a booking (idempotent)", 1, () => state = Apply(state, confirm, t0 + 10_000, ++offset));
    Measure("re-delivered command (answered from state)", 1, () => SlotDecisions.Decide(state, Lookup, duplicate, t0 + 10_000, 0, 5));
    Measure("processor path, nothing cached: parse state and record + decide + serialize both", 1, () =>
    {
        var loaded = SlotState.Parser.ParseFrom(stored);
        var decided = SlotDecisions.Decide(loaded, _ => ReservationRecord.Parser.ParseFrom(storedRecord), confirm, t0 + 10_000, 0, ++offset);
        _ = decided.State!.ToByteArray();
        foreach (var record in decided.Reservations) _ = record.ToByteArray();
    });
    Line("");

    void Measure(string name, int commandsPerRun, Action run)
    {
        for (var i = 0; i < 20_000; i++) run();
        var samples = new List<double>();
        for (var round = 0; round < 30; round++)
        {
            const int perRound = 5_000;
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < perRound; i++) run();
            samples.Add(watch.Elapsed.TotalNanoseconds / perRound / commandsPerRun);
        }
        samples.Sort();
        Line($"| {name} | {samples[samples.Count / 2]:F0} | {samples[samples.Count * 9 / 10]:F0} |");
    }
}

// Every slot open with one fleet counter "vans" of the given capacity.
static void ConfigureSlots(IProducer<string, byte[]> producer, TopicNames topics, IEnumerable<string> slots, long capacityOrders)
{
    foreach (var slot in slots)
        producer.Produce(topics.Commands, new Message<string, byte[]>
        {
            Key = slot,
            Value = new SlotCommand
            {
                CommandId = "configure-" + slot,
                Slot = slot,
                Configure = new ConfigureSlot { Config = new SlotConfig { Open = true, Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = capacityOrders } } } },
            }.ToByteArray(),
        });
}

async Task ThroughputBenchmark(int count, int slotCount)
{
    var bootstrap = Environment.GetEnvironmentVariable(KafkaEndpoint.BootstrapVariable);
    using var cluster = string.IsNullOrWhiteSpace(bootstrap) ? LocalCluster.Start(3) : null;
    bootstrap = cluster?.BootstrapServers ?? bootstrap!;
    const int partitions = 12;
    var topics = new TopicNames($"bench-{DateTime.UtcNow:HHmmss}.");
    var specs = topics.Specs(partitions, partitions);
    if (cluster is not null) cluster.CreateTopics(specs);
    else await TopicProvisioner.CreateAsync(bootstrap, specs);
    await TopicProvisioner.VerifyAsync(bootstrap, specs, TimeSpan.FromSeconds(30));

    // A backlog of reservations spread over the slots, every one answered; each slot sells out at
    // 60% of the reservations it is sent, so both accepts and rejects are in the mix.
    var slots = Enumerable.Range(0, slotCount).Select(i => SlotKey.Create($"bench-{i}", new DateTimeOffset(2030, 5, 6, 10, 0, 0, TimeSpan.Zero)).ToString()).ToList();
    using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 5, Acks = Acks.All }).Build())
    {
        ConfigureSlots(producer, topics, slots, capacityOrders: Math.Max(1, count / slotCount * 6 / 10));
        for (var i = 0; i < count; i++)
        {
            var slot = slots[i % slotCount];
            producer.Produce(topics.Commands, new Message<string, byte[]>
            {
                Key = slot,
                Value = new SlotCommand
                {
                    CommandId = $"c{i}",
                    Slot = slot,
                    ReplyPartition = i % partitions,
                    CorrelationId = $"corr{i}",
                    Reserve = new Reserve { ReservationId = $"r{i}", OrderId = $"o{i}", Zone = "north", Needs = new OrderNeeds() },
                }.ToByteArray(),
            });
        }
        producer.Flush(TimeSpan.FromSeconds(60));
    }
    Console.WriteLine($"{count} reservations (+{slotCount} configures) written; starting one processor");

    using var replies = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
    {
        BootstrapServers = bootstrap,
        GroupId = "bench-replies-" + Guid.NewGuid().ToString("N"),
        FetchWaitMaxMs = 5,
        EnableAutoCommit = false,
    }).Build();
    replies.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topics.Replies, p, Offset.Beginning)));
    var settings = new ProcessorSettings(bootstrap, topics, Path.Combine(Path.GetTempPath(), "engine-bench", Guid.NewGuid().ToString("N")), "bench");
    var watch = Stopwatch.StartNew();
    await using (await SlotProcessor.StartAsync(settings, loggers, CancellationToken.None))
    {
        var startedAt = watch.Elapsed;
        var received = 0;
        var firstReply = TimeSpan.Zero;
        var deadline = TimeSpan.FromMinutes(3);
        var progress = Stopwatch.StartNew();
        while (received < count && watch.Elapsed < deadline)
        {
            if (replies.Consume(TimeSpan.FromMilliseconds(100)) is { IsPartitionEOF: false })
            {
                if (received++ == 0) firstReply = watch.Elapsed;
            }
            if (progress.Elapsed > TimeSpan.FromSeconds(2))
            {
                Console.WriteLine($"  {received} replies after {(watch.Elapsed - firstReply).TotalSeconds:F1} s");
                progress.Restart();
            }
        }
        var elapsed = watch.Elapsed - firstReply;
        Line($"## One processor, backlog of {count} reservations over {slotCount} slot(s), {partitions} partitions");
        Line("");
        Line($"Broker: {(cluster is null ? "KAFKA_BOOTSTRAP_SERVERS " + bootstrap : "in-process local cluster (3 mock brokers)")}; processor, broker and reply reader share the machine.");
        Line("");
        Line("| commands answered | seconds (first to last reply) | commands/s | stream start (s) |");
        Line("| ---: | ---: | ---: | ---: |");
        Line($"| {received} | {elapsed.TotalSeconds:F1} | {received / elapsed.TotalSeconds:F0} | {startedAt.TotalSeconds:F1} |");
        Line("");
    }
}

// Open loop at fixed rates through one processor: command written -> reply read, per command.
async Task LatencyBenchmark(int slotCount, int[] rates, TimeSpan perRate)
{
    using var cluster = LocalCluster.Start(3);
    const int partitions = 12;
    var topics = new TopicNames($"lat-{DateTime.UtcNow:HHmmss}.");
    cluster.CreateTopics(topics.Specs(partitions, partitions));
    var bootstrap = cluster.BootstrapServers;
    var slots = Enumerable.Range(0, slotCount).Select(i => SlotKey.Create($"lat-{i}", new DateTimeOffset(2030, 5, 6, 10, 0, 0, TimeSpan.Zero)).ToString()).ToList();
    var settings = new ProcessorSettings(bootstrap, topics, Path.Combine(Path.GetTempPath(), "engine-bench", Guid.NewGuid().ToString("N")), "bench-latency");
    await using var processor = await SlotProcessor.StartAsync(settings, loggers, CancellationToken.None);
    using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 1, Acks = Acks.All }).Build();
    ConfigureSlots(producer, topics, slots, capacityOrders: 1_000_000);
    producer.Flush(TimeSpan.FromSeconds(30));

    var sentAt = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
    var latencies = new List<double>();
    using var stopReading = new CancellationTokenSource();
    var reader = Task.Run(() =>
    {
        using var replies = new ConsumerBuilder<string, Ignore>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "bench-latency-" + Guid.NewGuid().ToString("N"),
            FetchWaitMaxMs = 5,
            EnableAutoCommit = false,
        }).Build();
        replies.Assign(new TopicPartitionOffset(topics.Replies, 0, Offset.End));
        while (!stopReading.IsCancellationRequested)
        {
            var result = replies.Consume(TimeSpan.FromMilliseconds(50));
            if (result?.Message is null || !sentAt.TryRemove(result.Message.Key, out var sent)) continue;
            var ms = (Stopwatch.GetTimestamp() - sent) * 1000.0 / Stopwatch.Frequency;
            lock (latencies) latencies.Add(ms);
        }
    });
    await Task.Delay(1000);

    Line($"## One processor, open loop, command written -> reply read ({slotCount} slot(s), {perRate.TotalSeconds:F0} s per rate, in-process local cluster)");
    Line("");
    Line("| target/s | sent | answered | p50 ms | p99 ms | p99.9 ms | max ms |");
    Line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    var id = 0L;
    // The first rate warms up (JIT, connections, caches) and is not reported.
    foreach (var rate in rates.Prepend(500))
    {
        var warmUp = id == 0;
        lock (latencies) latencies.Clear();
        sentAt.Clear();
        var watch = Stopwatch.StartNew();
        var sent = 0L;
        while (watch.Elapsed < perRate)
        {
            var due = (long)(rate * watch.Elapsed.TotalSeconds);
            for (; sent < due; sent++, id++)
            {
                var slot = slots[(int)(id % slots.Count)];
                var correlation = $"lat{id}";
                sentAt[correlation] = Stopwatch.GetTimestamp();
                producer.Produce(topics.Commands, new Message<string, byte[]>
                {
                    Key = slot,
                    Value = new SlotCommand
                    {
                        CommandId = correlation,
                        Slot = slot,
                        ReplyPartition = 0,
                        CorrelationId = correlation,
                        Reserve = new Reserve { ReservationId = correlation, OrderId = correlation, Zone = "north", Needs = new OrderNeeds() },
                    }.ToByteArray(),
                });
            }
            await Task.Delay(1);
        }
        var drain = Stopwatch.StartNew();
        while (!sentAt.IsEmpty && drain.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50);
        double[] sorted;
        lock (latencies) sorted = [.. latencies.Order()];
        double At(double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
        if (!warmUp)
            Line($"| {rate} | {sent} | {sorted.Length} | {At(0.5):F1} | {At(0.99):F1} | {At(0.999):F1} | {(sorted.Length == 0 ? double.NaN : sorted[^1]):F1} |");
    }
    Line("");
    await stopReading.CancelAsync();
    await reader;
}
