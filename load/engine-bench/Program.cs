using System.CommandLine;
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
using Streamiz.Kafka.Net.Mock;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;

// Engine benchmark: (1) the pure decision per command, (2) one processor's throughput on a broker
// (KAFKA_BOOTSTRAP_SERVERS, else an in-process local cluster), (3) the processor's cost per command
// on a slot holding many holds, (4) the warehouse's CPU per event loaded into DuckDB, (5) the CPU of one
// Kafka hop per record on the local cluster. Bounded in count and time.
// Usage: dotnet run -c Release --project load/engine-bench -- [decide] [throughput] [latency] [holds] [warehouse] [hop]
//   [--commands N] [--slots N] [--seconds N] [--holds N,N] [--pairs N] [--out FILE]   (--help: every option)
string[] allModes = ["decide", "throughput", "latency", "holds", "warehouse", "hop"];
var modesArgument = new Argument<string[]>("MODE") { Description = $"Benchmarks to run: {string.Join(", ", allModes)} (default: decide throughput latency)", Arity = ArgumentArity.ZeroOrMore };
modesArgument.Validators.Add(result =>
{
    foreach (var mode in result.GetValueOrDefault<string[]>() ?? [])
        if (!allModes.Contains(mode)) result.AddError($"unknown benchmark '{mode}'; one of: {string.Join(", ", allModes)}");
});
var commandsOption = CommandLines.WholeNumber("--commands", "Commands of the throughput benchmark", 1, int.MaxValue, 50_000);
var slotsOption = CommandLines.WholeNumber("--slots", "Slots of the throughput and latency benchmarks", 1, int.MaxValue, 500);
var secondsOption = CommandLines.WholeNumber("--seconds", "Length of each rate of the latency benchmark", 1, 3_600, 5);
int[] defaultHolds = [100, 50_000];
var holdsOption = CommandLines.Parsed<int[]>("--holds", $"Holds on the slot, per run of the holds benchmark (default: {string.Join(',', defaultHolds)})", (string text, out int[] holds) =>
{
    var counts = text.Split(',').Select(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out var h) && h > 0 ? h : 0).ToArray();
    holds = counts;
    return counts.Length > 0 && counts.All(h => h > 0);
}, "a comma list of positive hold counts, e.g. 100,50000");
var pairsOption = CommandLines.WholeNumber("--pairs", "Reserve/release pairs measured per run of the holds benchmark", 1, int.MaxValue, 300);
var roundsOption = CommandLines.WholeNumber("--rounds", "Rounds of every rate of the hop benchmark", 1, 20, 3);
var outOption = new Option<string?>("--out") { Description = "Also write the report to this file" };
var root = new RootCommand("""
    Engine benchmark: (1) the pure decision per command, (2) one processor's throughput on a broker
    (KAFKA_BOOTSTRAP_SERVERS, else an in-process local cluster), (3) the processor's cost per command
    on a slot holding many holds, (4) the warehouse's CPU per event loaded into DuckDB, (5) the CPU of one
    Kafka hop per record on the local cluster. Bounded in count and time.
    """) { modesArgument, commandsOption, slotsOption, secondsOption, holdsOption, pairsOption, roundsOption, outOption };

var report = new StringBuilder();
// One factory for the whole run: Streamiz keeps the first one it sees in a static.
using var loggers = LoggerFactory.Create(l => l.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
void Line(string text)
{
    Console.WriteLine(text);
    report.AppendLine(text);
}

root.SetAction(async parsed =>
{
    var modes = parsed.GetValue(modesArgument) is { Length: > 0 } chosen ? chosen.ToHashSet() : ["decide", "throughput", "latency"];
    var slotCount = parsed.GetValue(slotsOption);
    Line($"# Engine benchmark, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
    Line($"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
    Line("");
    if (modes.Contains("decide")) DecideBenchmark();
    if (modes.Contains("throughput")) await ThroughputBenchmark(parsed.GetValue(commandsOption), slotCount);
    if (modes.Contains("latency")) await LatencyBenchmark(slotCount, [1_000, 3_000, 5_000], TimeSpan.FromSeconds(parsed.GetValue(secondsOption)));
    if (modes.Contains("holds")) HoldsBenchmark(parsed.GetValue(holdsOption) ?? defaultHolds, parsed.GetValue(pairsOption));
    if (modes.Contains("warehouse")) WarehouseBenchmark();
    if (modes.Contains("hop"))
        await HopBenchmark([50, 500, 5_000], [12, 1], TimeSpan.FromSeconds(parsed.GetValue(secondsOption)), parsed.GetValue(roundsOption),
            parsed.GetValue(outOption) is { } file ? Path.ChangeExtension(file, ".png") : null);
    if (parsed.GetValue(outOption) is { } outFile)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outFile))!);
        await File.WriteAllTextAsync(outFile, report.ToString());
        Console.WriteLine($"written to {outFile}");
    }
    return 0;
});
return await CommandLines.InvokeAsync(root, args, tool: "engine-bench");

// One Kafka hop, the unit a reserve pays several times over (its command, the processor's four outputs
// and the consumers that read them): a producer writes records at a fixed rate (acks=all, idempotence,
// linger 0.5 ms: the gateway's command producer), a consumer reads them (fetch.wait.max.ms 100, as under
// `make run`), against an in-process local cluster with one broker. All of it runs in this process, so
// this process's CPU is the hop's whole cost, split by thread: the mock broker, the two clients'
// librdkafka threads, the .NET threads that pace, produce and consume.
async Task HopBenchmark(int[] rates, int[] partitionCounts, TimeSpan perRun, int rounds, string? plotFile)
{
    using var cluster = LocalCluster.Start(1);
    Line("## One Kafka hop: CPU per record from producer to consumer");
    Line("");
    Line($"In-process local cluster, 1 broker, librdkafka {LocalCluster.LibraryDescription} for the mock; each row {perRun.TotalSeconds:0} s measured after 2 s at its rate, " +
         $"100-byte records keyed over 500 keys, {rounds} rounds of every rate and partition count. CPU from /proc/self/task by thread name " +
         "(the .NET threads include the pacing loop, which wakes up to 1,000 times a second).");
    Line("");
    Line("| round | records/s | partitions | records | CPU µs per record | mock broker | librdkafka clients | .NET threads | latency p50 ms | p99 ms |");
    Line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    var results = new List<HopResult>();
    for (var round = 1; round <= rounds; round++)
    {
        foreach (var partitions in partitionCounts)
        {
            foreach (var rate in rates)
            {
                var topic = $"hop-{round}-{partitions}-{rate}";
                cluster.CreateTopics([new TopicSpec(topic, partitions)]);
                var r = await OneHop(cluster.BootstrapServers, topic, partitions, rate, perRun);
                results.Add(r);
                Line(string.Create(CultureInfo.InvariantCulture,
                    $"| {round} | {rate:N0} | {partitions} | {r.Records:N0} | {r.TotalUs:F0} | {r.MockUs:F0} | {r.ClientsUs:F0} | {r.DotnetUs:F0} | {r.P50Ms:F2} | {r.P99Ms:F2} |"));
            }
        }
    }
    Line("");
    Line("Median over the rounds:");
    Line("");
    Line("| records/s | partitions | CPU µs per record | mock broker | librdkafka clients | .NET threads |");
    Line("| ---: | ---: | ---: | ---: | ---: | ---: |");
    var medians = results.GroupBy(r => (r.Partitions, r.Rate)).OrderBy(g => g.Key.Partitions).ThenBy(g => g.Key.Rate).ToList();
    foreach (var g in medians)
        Line(string.Create(CultureInfo.InvariantCulture,
            $"| {g.Key.Rate:N0} | {g.Key.Partitions} | {Median(g.Select(r => r.TotalUs)):F0} | {Median(g.Select(r => r.MockUs)):F0} | {Median(g.Select(r => r.ClientsUs)):F0} | {Median(g.Select(r => r.DotnetUs)):F0} |"));
    Line("");
    if (plotFile is null) return;
    var plot = new ScottPlot.Plot();
    foreach (var byPartitions in medians.GroupBy(g => g.Key.Partitions))
    {
        var line = plot.Add.Scatter(byPartitions.Select(g => Math.Log10(g.Key.Rate)).ToArray(), byPartitions.Select(g => Median(g.Select(r => r.TotalUs))).ToArray());
        line.LegendText = $"{byPartitions.Key} partition{(byPartitions.Key == 1 ? "" : "s")} (median of {rounds})";
        line.MarkerSize = 8;
    }
    // Issue 8's mark for a whole reserve, which crosses several hops.
    var target = plot.Add.HorizontalLine(300);
    target.LegendText = "300 µs: the target for a whole reserve (all processes)";
    target.LinePattern = ScottPlot.LinePattern.Dashed;
    plot.Axes.Bottom.SetTicks(rates.Select(r => Math.Log10(r)).ToArray(), rates.Select(r => r.ToString("N0", CultureInfo.InvariantCulture)).ToArray());
    plot.Title("One Kafka hop on the local cluster: CPU per record (producer + mock broker + consumer)");
    plot.XLabel("records per second");
    plot.YLabel("µs of CPU per record");
    plot.Axes.Margins(bottom: 0);
    plot.ShowLegend(ScottPlot.Alignment.UpperRight);
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(plotFile))!);
    plot.SavePng(plotFile, 1000, 550);
    Line($"![CPU per record by rate]({Path.GetFileName(plotFile)})");
    Line("");
}

static async Task<HopResult> OneHop(string bootstrap, string topic, int partitions, int rate, TimeSpan perRun)
{
    using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig
    {
        BootstrapServers = bootstrap,
        Acks = Acks.All,
        EnableIdempotence = true,
        LingerMs = 0.5,
    }).Build();
    using var consumer = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
    {
        BootstrapServers = bootstrap,
        GroupId = "hop-bench",
        EnableAutoCommit = false,
        FetchWaitMaxMs = 100,
    }).Build();
    consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));

    var clock = Stopwatch.StartNew();
    var warmUp = TimeSpan.FromSeconds(2);
    var end = warmUp + perRun;
    var latenciesMs = new List<double>();
    long measured = 0;
    using var stop = new CancellationTokenSource();
    var reader = Task.Factory.StartNew(() =>
    {
        while (!stop.IsCancellationRequested)
        {
            var record = consumer.Consume(TimeSpan.FromMilliseconds(100));
            if (record is null) continue;
            var sentAt = BitConverter.ToInt64(record.Message.Value, 0);
            var now = clock.ElapsedTicks;
            if (TimeSpan.FromTicks(sentAt * TimeSpan.TicksPerSecond / Stopwatch.Frequency) >= warmUp)
            {
                latenciesMs.Add((now - sentAt) * 1000.0 / Stopwatch.Frequency);
                measured++;
            }
        }
    }, TaskCreationOptions.LongRunning);

    var payload = new byte[100];
    long sent = 0;
    Dictionary<string, long>? before = null;
    // Open loop: every pass writes the records due by now, then sleeps about one interval.
    var pause = Math.Max(1, 1000 / rate);
    while (clock.Elapsed < end)
    {
        if (before is null && clock.Elapsed >= warmUp) before = ThreadTicks();
        var due = (long)(clock.Elapsed.TotalSeconds * rate);
        for (; sent < due; sent++)
        {
            var value = (byte[])payload.Clone();
            BitConverter.TryWriteBytes(value, clock.ElapsedTicks);
            producer.Produce(topic, new Message<string, byte[]> { Key = $"k{sent % 500}", Value = value });
        }
        Thread.Sleep(pause);
    }
    producer.Flush(TimeSpan.FromSeconds(10));
    var after = ThreadTicks();
    await Task.Delay(500);
    await stop.CancelAsync();
    await reader;
    consumer.Close();

    // /proc counts CPU in USER_HZ ticks, 100 a second on Linux.
    const double ClockTicksPerSecond = 100;
    var used = after.ToDictionary(t => t.Key, t => t.Value - (before ?? []).GetValueOrDefault(t.Key));
    double Share(Func<string, bool> kind) => used.Where(t => kind(t.Key)).Sum(t => t.Value) * 1e6 / ClockTicksPerSecond / Math.Max(1, measured);
    var mock = Share(n => n.StartsWith("mock|", StringComparison.Ordinal));
    var clients = Share(n => n.StartsWith("rdk|", StringComparison.Ordinal));
    var dotnet = Share(n => n.StartsWith("net|", StringComparison.Ordinal));
    latenciesMs.Sort();
    return new HopResult(rate, partitions, measured, mock + clients + dotnet, mock, clients, dotnet, Percentile(latenciesMs, 0.5), Percentile(latenciesMs, 0.99));
}

// The value at quantile q of an ascending list (NaN when it is empty).
static double Percentile(IReadOnlyList<double> sorted, double q) =>
    sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)(q * sorted.Count))];

// The middle value, or the mean of the two middle ones (NaN when there are none).
static double Median(IEnumerable<double> values)
{
    var v = values.Order().ToList();
    return v.Count == 0 ? double.NaN : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
}

// CPU ticks (utime + stime) of every thread of this process, keyed "kind|tid": mock = the mock cluster's
// threads, rdk = the clients' librdkafka threads, net = the rest.
static Dictionary<string, long> ThreadTicks()
{
    var ticks = new Dictionary<string, long>();
    foreach (var task in Directory.GetDirectories("/proc/self/task"))
    {
        try
        {
            var name = File.ReadAllText(Path.Combine(task, "comm")).Trim();
            var stat = File.ReadAllText(Path.Combine(task, "stat"));
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var kind = name.StartsWith("rdk:mock", StringComparison.Ordinal) ? "mock" : name.StartsWith("rdk:", StringComparison.Ordinal) ? "rdk" : "net";
            ticks[$"{kind}|{Path.GetFileName(task)}"] = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            // The thread ended between the listing and the read.
        }
    }
    return ticks;
}

// The warehouse loader's write path (WarehouseStore.Write, one transaction per batch, the file opened
// and closed for each as the loader does): CPU of this process per event, batch after batch into one
// growing DuckDB file. 12 batches of 2,500 RESERVATION_BOOKED events = make run's 5 s batch at 10x.
void WarehouseBenchmark()
{
    const int batches = 12, perBatch = 2_500;
    var folder = Directory.CreateTempSubdirectory("bench-warehouse-").FullName;
    try
    {
        var store = SlotCapacity.Warehouse.WarehouseStore.DuckDb(Path.Combine(folder, "bench.duckdb"));
        store.EnsureSchema();
        var slot = SlotKey.Create("bench-warehouse", new DateTimeOffset(2030, 5, 6, 10, 0, 0, TimeSpan.Zero));
        Line($"## Warehouse: CPU per event loaded into DuckDB ({batches} batches of {perBatch:N0} events, one file)");
        Line("");
        Line("| batch | events in the file after it | wall ms | CPU ms | CPU µs per event |");
        Line("| ---: | ---: | ---: | ---: | ---: |");
        var me = Process.GetCurrentProcess();
        long n = 0;
        for (var b = 1; b <= batches; b++)
        {
            var rows = Enumerable.Range(0, perBatch).Select(_ => n++).Select(i => new SlotCapacity.Warehouse.EventRow(new SlotEvent
            {
                EventId = $"{i % 12}:{i}:0", Slot = slot.ToString(), Kind = SlotEventKind.ReservationBooked, ReservationId = $"r{i}",
                OrderId = $"o{i}", Zone = "north", FleetCounter = "vans", FleetUnits = 1, CommandId = $"c{i}",
                OccurredUnixMs = 1_900_000_000_000 + i,
            }, slot, (int)(i % 12), i)).ToList();
            me.Refresh();
            var cpu = me.TotalProcessorTime;
            var wall = Stopwatch.StartNew();
            store.Write(rows, []);
            me.Refresh();
            var used = (me.TotalProcessorTime - cpu).TotalMilliseconds;
            Line($"| {b} | {n:N0} | {wall.ElapsedMilliseconds} | {used:F0} | {used * 1000 / perBatch:F0} |");
        }
        Line("");
    }
    finally
    {
        Directory.Delete(folder, recursive: true);
    }
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
    var keys = new MemorySlot();
    var records = keys.Records;
    SlotState Apply(SlotState? current, SlotCommand command, long at, long position)
    {
        var decision = SlotDecisions.Decide(current, keys, command, at, 0, position);
        keys.Write(decision);
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
    Measure("re-delivered command (answered from state)", 1, () => SlotDecisions.Decide(state, keys, duplicate, t0 + 10_000, 0, 5));
    Measure("processor path, nothing cached: parse state and record + decide + serialize both", 1, () =>
    {
        var loaded = SlotState.Parser.ParseFrom(stored);
        var decided = SlotDecisions.Decide(loaded, new ParsedRecord(keys, storedRecord), confirm, t0 + 10_000, 0, ++offset);
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

// The processor's topology on Streamiz's TopologyTestDriver (RocksDB store and its changelog, no
// broker), one slot already holding N holds: per Reserve (a new hold) and per Confirm (of that
// hold), the time to process the command and the bytes it wrote to the state changelog (key +
// value of every put and delete; the store gets the same writes). Every case has the same
// number of holds in the store: the measured slot's N, and the rest on another slot.
void HoldsBenchmark(int[] holdCounts, int pairs)
{
    var storeHolds = holdCounts.Max();
    Line($"## Processor cost per command on a slot with many holds ({pairs} Reserve + Confirm pairs after {pairs / 5} for warm-up; "
        + $"{storeHolds:N0} holds in the store in every case; TopologyTestDriver, RocksDB store)");
    Line("");
    Line("| holds in the slot | slot state bytes | Reserve median µs | Reserve p90 µs | Confirm median µs | Confirm p90 µs | changelog bytes per Reserve | per Confirm |");
    Line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    foreach (var holds in holdCounts) OneSlot(holds, storeHolds - holds);
    Line("");

    void OneSlot(int holds, int elsewhere)
    {
        var topics = new TopicNames("holds.");
        var stateDirectory = Path.Combine(Path.GetTempPath(), "engine-bench", Guid.NewGuid().ToString("N"));
        var settings = new ProcessorSettings("127.0.0.1:1", topics, stateDirectory, "bench-holds");
        var clock = new DateTime(2030, 5, 6, 6, 0, 0, DateTimeKind.Utc);
        var expiry = new DateTimeOffset(clock).AddHours(1).ToUnixTimeMilliseconds();
        var start = new DateTimeOffset(2030, 5, 6, 10, 0, 0, TimeSpan.Zero);
        var model = SlotKey.Create("bench-model", start).ToString();
        var slot = SlotKey.Create("bench-holds", start).ToString();
        var other = SlotKey.Create("bench-other", start).ToString();
        var offset = 0L;
        SlotCommand Command(string slotKey, string id, Action<SlotCommand> body)
        {
            var command = new SlotCommand { CommandId = id, Slot = slotKey, ReplyPartition = 0, CorrelationId = "corr-" + id };
            body(command);
            return command;
        }
        SlotCommand Reserve(string slotKey, string id) => Command(slotKey, "reserve-" + id, c => c.Reserve = new Reserve
        {
            ReservationId = id, OrderId = "order-" + id, Zone = "north", Needs = new OrderNeeds(), HoldExpiresUnixMs = expiry,
        });
        SlotCommand Confirm(string slotKey, string id) => Command(slotKey, "confirm-" + id, c => c.Confirm = new Confirm { ReservationId = id });
        using var checkpoints = new ChangelogCheckpoints(settings, loggers);
        var streamConfig = SlotTopology.Config(settings, checkpoints, loggers);
        // The test driver has no broker to check a changelog against: Streamiz's plain checkpoint files.
        streamConfig.OffsetCheckpointManager = null;
        // The output topics below are read from their end: the test driver reads a topic in a time
        // that grows with what it has to skip (a cost of the harness), and the seeding is not measured.
        streamConfig.AutoOffsetReset = AutoOffsetReset.Latest;
        try
        {
            using var driver = new TopologyTestDriver(SlotTopology.Build(topics, 12, checkpoints, loggers), streamConfig);
            var commands = driver.CreateInputTopic<string, byte[], StringSerDes, ByteArraySerDes>(topics.Commands);
            {
                void Send(SlotCommand command) => commands.PipeInput(command.Slot, command.ToByteArray(), clock.AddMilliseconds(offset++));
                // Written to the store directly (sending them all costs O(holds²) bytes with the hold
                // list inside the slot state): each slot as a processor before the hold index stored
                // it, which both versions read. A model slot made by the processor gives every field
                // its real value.
                var config = new SlotConfig { Open = true, Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = 10_000_000 } } };
                Send(Command(model, "configure-model", c => c.Configure = new ConfigureSlot { Config = config }));
                Send(Reserve(model, "model-hold"));
                var store = (IKeyValueStore<string, byte[]>)driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);
                var record = ReservationRecord.Parser.ParseFrom(store.Get(SlotCommandProcessor.RecordKey(model, "model-hold")));
                foreach (var (key, count) in new[] { (slot, holds), (other, elsewhere) })
                {
                    var state = SlotState.Parser.ParseFrom(store.Get(model));
                    state.Slot = key;
                    state.FleetUsed["vans"] = state.FleetHeld["vans"] = state.ZoneUsed["north"] = count;
                    for (var i = 0; i < count; i++)
                    {
                        var id = $"held-{i:D6}";
                        record.ReservationId = id;
                        record.OrderId = "order-" + id;
                        store.Put(SlotCommandProcessor.RecordKey(key, id), record.ToByteArray());
                        state.LegacyHeld[id] = expiry + i;
                    }
                    state.NextHoldExpiryUnixMs = count == 0 ? 0 : expiry;
                    store.Put(key, state.ToByteArray());
                    // One command reads the slot the way the running version does (moving its holds to the index).
                    Send(Command(key, "tick-" + key, c => c.ExpireHolds = new ExpireHolds()));
                }
            }

            var changelog = driver.CreateOutputTopic<string, byte[], StringSerDes, ByteArraySerDes>(topics.StateChangelog);
            var replies = driver.CreateOutputTopic<string, byte[], StringSerDes, ByteArraySerDes>(topics.Replies);
            var events = driver.CreateOutputTopic<string, byte[], StringSerDes, ByteArraySerDes>(topics.Events);
            var availability = driver.CreateOutputTopic<string, byte[], StringSerDes, ByteArraySerDes>(topics.Availability);
            TimeSpan Timed(SlotCommand command)
            {
                var bytes = command.ToByteArray();
                var watch = Stopwatch.StartNew();
                commands.PipeInput(command.Slot, bytes, clock.AddMilliseconds(offset++));
                return watch.Elapsed;
            }
            long Written()
            {
                if (!replies.ReadKeyValueList().All(r => SlotReply.Parser.ParseFrom(r.Message.Value).Accepted))
                    throw new InvalidOperationException("a benchmark command was rejected: the seeded slot did not survive the restart");
                events.ReadKeyValueList();
                availability.ReadKeyValueList();
                return changelog.ReadKeyValueList().Sum(r => (long)Encoding.UTF8.GetByteCount(r.Message.Key) + (r.Message.Value?.Length ?? 0));
            }

            var reserveTimes = new List<double>();
            var confirmTimes = new List<double>();
            long reserveBytes = 0, confirmBytes = 0;
            var warmUp = pairs / 5;
            for (var i = 0; i < warmUp + pairs; i++)
            {
                var id = $"new-{i:D6}";
                var reserve = Timed(Reserve(slot, id));
                var reserveWritten = Written();
                var confirm = Timed(Confirm(slot, id));
                var confirmWritten = Written();
                if (i < warmUp) continue;
                reserveTimes.Add(reserve.TotalMicroseconds);
                confirmTimes.Add(confirm.TotalMicroseconds);
                reserveBytes += reserveWritten;
                confirmBytes += confirmWritten;
            }
            var stateBytes = driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore).Get(slot).Length;
            reserveTimes.Sort();
            confirmTimes.Sort();
            Line($"| {holds:N0} | {stateBytes:N0} | {Percentile(reserveTimes, 0.5):F0} | {Percentile(reserveTimes, 0.9):F0} | {Percentile(confirmTimes, 0.5):F0} | {Percentile(confirmTimes, 0.9):F0} "
                + $"| {reserveBytes / pairs:N0} | {confirmBytes / pairs:N0} |");
        }
        finally
        {
            if (Directory.Exists(stateDirectory)) Directory.Delete(stateDirectory, recursive: true);
        }
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
    var bootstrap = KafkaEndpoint.ProcessConfiguration[KafkaEndpoint.BootstrapVariable];
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
        if (!warmUp)
            Line($"| {rate} | {sent} | {sorted.Length} | {Percentile(sorted, 0.5):F1} | {Percentile(sorted, 0.99):F1} | {Percentile(sorted, 0.999):F1} | {(sorted.Length == 0 ? double.NaN : sorted[^1]):F1} |");
    }
    Line("");
    await stopReading.CancelAsync();
    await reader;
}

/// <summary>A slot's stored keys in memory (records, hold index, expired-hold marks), written as the processor writes them.</summary>
internal sealed class MemorySlot : ISlotReader
{
    private readonly SortedSet<(long Expiry, string Id)> _holds = new(Comparer<(long Expiry, string Id)>.Create(
        (a, b) => a.Expiry != b.Expiry ? a.Expiry.CompareTo(b.Expiry) : string.CompareOrdinal(a.Id, b.Id)));
    private readonly SortedDictionary<(long Offset, string Id), ExpiredHold> _expired = new(Comparer<(long Offset, string Id)>.Create(
        (a, b) => a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : string.CompareOrdinal(a.Id, b.Id)));

    public Dictionary<string, ReservationRecord> Records { get; } = new(StringComparer.Ordinal);

    public void Write(Decision decision)
    {
        if (decision.State is null) return;
        foreach (var record in decision.Reservations) Records[record.ReservationId] = record;
        foreach (var hold in decision.Index.HoldsAdded) _holds.Add((hold.ExpiresUnixMs, hold.ReservationId));
        foreach (var mark in decision.Index.ExpiredAdded) _expired[(mark.Offset, mark.ReservationId)] = mark;
        foreach (var hold in decision.Index.HoldsRemoved) _holds.Remove((hold.ExpiresUnixMs, hold.ReservationId));
        foreach (var mark in decision.Index.ExpiredRemoved) _expired.Remove((mark.Offset, mark.ReservationId));
    }

    public ReservationRecord? Reservation(string reservationId) => Records.TryGetValue(reservationId, out var r) ? r : null;

    public IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs) =>
        _holds.TakeWhile(h => h.Expiry <= unixMs).Select(h => new HoldIndexEntry { ExpiresUnixMs = h.Expiry, ReservationId = h.Id });

    public IEnumerable<ExpiredHold> ExpiredFrom(long offset) => _expired.Where(e => e.Key.Offset >= offset).Select(e => e.Value);
}

/// <summary>Every reservation record parsed from the same bytes (as when nothing is cached); the index from memory.</summary>
internal sealed class ParsedRecord(ISlotReader index, byte[] record) : ISlotReader
{
    public ReservationRecord? Reservation(string reservationId) => ReservationRecord.Parser.ParseFrom(record);
    public IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs) => index.HoldsDueBy(unixMs);
    public IEnumerable<ExpiredHold> ExpiredFrom(long offset) => index.ExpiredFrom(offset);
}

/// <summary>One rate of the hop benchmark: CPU µs per record in all and by kind of thread, and latency.</summary>
internal sealed record HopResult(int Rate, int Partitions, long Records, double TotalUs, double MockUs, double ClientsUs, double DotnetUs, double P50Ms, double P99Ms);
