using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using System.Diagnostics;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;
using Xunit;
using Xunit.Abstractions;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>
/// Processor processes killed with SIGKILL in the middle of a steady stream of reservations: the
/// counters, the replies given and the events must agree afterwards, with nothing counted twice
/// and nothing accepted lost.
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    private const int Partitions = 4;
    private const int Slots = 8;
    private const int CapacityPerSlot = 40;
    private const int AttemptsPerSlot = 100;

    [Fact]
    public async Task Killing_a_processor_mid_stream_loses_nothing_and_counts_nothing_twice_three_times_in_a_row()
    {
        var broker = await TestBroker.SharedAsync();
        for (var round = 1; round <= 3; round++)
            await OneRoundAsync(broker, round);
    }

    private async Task OneRoundAsync(TestBroker broker, int round)
    {
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var started = Stopwatch.StartNew();
        using var first = ProcessorProcess.Start(broker.BootstrapServers, topics, $"crash{round}-p1");
        using var second = ProcessorProcess.Start(broker.BootstrapServers, topics, $"crash{round}-p2");
        await Task.WhenAll(first.RunningAsync(), second.RunningAsync());

        using var kafka = new Kafka(broker.BootstrapServers);
        var slots = Enumerable.Range(0, Slots).Select(i => Slot($"crash-{round}-{i}")).ToList();
        foreach (var slot in slots)
            await kafka.SendAsync(topics.Commands, Configure(slot, Config(vans: CapacityPerSlot), replyPartition: null));

        // Interleave the slots so every partition sees a steady stream; kill the first processor halfway.
        var reserves = Enumerable.Range(0, AttemptsPerSlot)
            .SelectMany(i => slots.Select((slot, s) => Reserve(slot, $"{slot}#{i}", replyPartition: (i + s) % Partitions)))
            .ToList();
        ProcessorProcess? third = null;
        try
        {
            for (var batch = 0; batch * 20 < reserves.Count; batch++)
            {
                if (batch == reserves.Count / 40)
                {
                    first.Kill();
                    third = ProcessorProcess.Start(broker.BootstrapServers, topics, $"crash{round}-p3");
                }
                await Task.WhenAll(reserves.Skip(batch * 20).Take(20).Select(r => kafka.SendAsync(topics.Commands, r)));
                await Task.Delay(10);
            }

            var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions,
                read => read.Select(r => r.Message.Key).Distinct().Count() >= reserves.Count, TimeSpan.FromSeconds(60), settle: TimeSpan.FromSeconds(1));
            var events = kafka.ReadUntil<SlotEvent>(topics.Events, Partitions,
                read => read.Select(e => e.Message.Value).Where(e => e.Kind == SlotEventKind.ReservationBooked).Select(e => e.ReservationId)
                    .Distinct().Count() >= Slots * CapacityPerSlot, TimeSpan.FromSeconds(30), settle: TimeSpan.FromSeconds(1));
            var snapshots = kafka.ReadUntil<AvailabilitySnapshot>(topics.Availability, Partitions,
                read => read.Where(s => s.Message.Value.Fleet.Single().UsedOrders == CapacityPerSlot).Select(s => s.Message.Key).Distinct().Count() == Slots,
                TimeSpan.FromSeconds(30), settle: TimeSpan.FromSeconds(1));

            // Every command answered; duplicate replies (re-deliveries) agree with the first.
            var repliesByCorrelation = replies.GroupBy(r => r.Message.Key).ToDictionary(g => g.Key, g => g.Select(r => r.Message.Value).ToList());
            var missing = reserves.Where(r => !repliesByCorrelation.ContainsKey(r.CorrelationId)).ToList();
            Assert.True(missing.Count == 0, $"round {round}: {missing.Count} commands never answered; {first.Tail()} {second.Tail()} {third?.Tail()}");
            foreach (var (correlation, answers) in repliesByCorrelation)
                Assert.All(answers, a => Assert.Equal((answers[0].Accepted, answers[0].FleetCounter), (a.Accepted, a.FleetCounter)));
            var accepted = repliesByCorrelation.Values.Where(a => a[0].Accepted).Select(a => a[0].ReservationId).ToHashSet();

            // Events: each booking applied once (one event id per reservation), none without an accepted reply.
            var booked = events.Select(e => e.Message.Value).Where(e => e.Kind == SlotEventKind.ReservationBooked).ToList();
            Assert.All(booked.GroupBy(e => e.ReservationId), g => Assert.Single(g.Select(e => e.EventId).Distinct()));
            Assert.Equal(accepted.Order(), booked.Select(e => e.ReservationId).Distinct().Order());

            // Counters: every slot exactly full, never above.
            foreach (var slot in slots)
            {
                var latest = snapshots.Where(s => s.Message.Key == slot).MaxBy(s => s.Message.Value.Version)!.Message.Value;
                Assert.Equal(CapacityPerSlot, latest.Fleet.Single().UsedOrders);
                Assert.Equal(CapacityPerSlot, accepted.Count(id => id.StartsWith(slot + "#", StringComparison.Ordinal)));
            }
            output.WriteLine($"round {round}: {reserves.Count} reservations, {accepted.Count} accepted, {replies.Count} replies "
                + $"({replies.Count(r => r.Message.Value.Replayed)} answered from state after re-delivery), {events.Count} events, "
                + $"{started.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            third?.Dispose();
        }
    }

    [Fact]
    public async Task A_successor_stops_its_running_predecessor_once_ready_and_carries_on_from_its_state()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        using var predecessor = await StaticProcessorWithOneBookingAsync(broker, topics, "handover", vans: 2);
        using var kafka = new Kafka(broker.BootstrapServers);
        var slot = Slot("handover");

        var settings = new ProcessorSettings(broker.BootstrapServers, topics, predecessor.StateDirectory, "handover")
        {
            StaticMembership = true,
            SessionTimeoutMs = 2000,
            TakeOverFrom = predecessor.Id,
        };
        await using var successor = await SlotProcessor.StartAsync(settings, NullLoggerFactory.Instance, CancellationToken.None);
        Assert.Equal(0, await predecessor.ExitAsync(TimeSpan.FromSeconds(5)));

        await kafka.SendAsync(topics.Commands, Reserve(slot, "after", replyPartition: 0));
        await kafka.SendAsync(topics.Commands, Reserve(slot, "one-too-many", replyPartition: 0));
        var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, read => read.Count >= 3, TimeSpan.FromSeconds(60))
            .ToDictionary(r => r.Message.Value.ReservationId, r => r.Message.Value);
        Assert.True(replies["after"].Accepted, $"after the handover: {replies["after"]}");
        Assert.Equal(RejectReason.SlotFull, replies["one-too-many"].Reason);
    }

    [Fact]
    public async Task A_standby_leaves_its_processor_alone_until_it_is_killed_then_takes_over_from_its_state()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var readyFile = Path.Combine(Path.GetTempPath(), "slot-crash", $"standby-{Guid.NewGuid():N}.ready");
        using var active = await StaticProcessorWithOneBookingAsync(broker, topics, "standby", vans: 3, readyFile);
        using var kafka = new Kafka(broker.BootstrapServers);
        var slot = Slot("standby");

        var settings = new ProcessorSettings(broker.BootstrapServers, topics, active.StateDirectory, "standby")
        {
            StaticMembership = true,
            SessionTimeoutMs = 2000,
            StandbyFor = active.Id,
            ReadyFile = readyFile,
        };
        var standby = SlotProcessor.StartAsync(settings, NullLoggerFactory.Instance, CancellationToken.None);
        await kafka.SendAsync(topics.Commands, Reserve(slot, "standing-by", replyPartition: 0));
        Assert.Equal(2, kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, read => read.Count >= 2, TimeSpan.FromSeconds(30)).Count(r => r.Message.Value.Accepted));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.False(standby.IsCompleted, "the standby started its stream while the processor it stands by for was running");
        Assert.Equal(active.Id.ToString(CultureInfo.InvariantCulture), (await File.ReadAllTextAsync(readyFile)).Trim());
        // Warm: it says so beside the ready file (a supervisor's handover stops the active one for it).
        var standbyReadyFile = SlotProcessor.StandbyReadyFile(readyFile);
        var warmBy = DateTime.UtcNow.AddSeconds(30);
        while (!File.Exists(standbyReadyFile))
        {
            Assert.True(DateTime.UtcNow < warmBy, "the standby never said it was warm");
            await Task.Delay(50);
        }
        Assert.Equal(Environment.ProcessId.ToString(CultureInfo.InvariantCulture), (await File.ReadAllTextAsync(standbyReadyFile)).Trim());

        active.Kill();
        await using var tookOver = await standby.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Environment.ProcessId.ToString(CultureInfo.InvariantCulture), (await File.ReadAllTextAsync(readyFile)).Trim());
        Assert.False(File.Exists(standbyReadyFile), "the standby that took over still says it stands by");
        await kafka.SendAsync(topics.Commands, Reserve(slot, "after", replyPartition: 0));
        await kafka.SendAsync(topics.Commands, Reserve(slot, "one-too-many", replyPartition: 0));
        var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, read => read.Count >= 4, TimeSpan.FromSeconds(60))
            .ToDictionary(r => r.Message.Value.ReservationId, r => r.Message.Value);
        Assert.True(replies["after"].Accepted, $"after the takeover: {replies["after"]}");
        Assert.Equal(RejectReason.SlotFull, replies["one-too-many"].Reason);
    }

    /// <summary>
    /// A static processor in its own process, serving slot <paramref name="name"/> with <paramref name="vans"/>
    /// vans and one of them booked ("before"). A short session: the in-process local cluster (the stock mock)
    /// takes a successor or standby for a new member and gives the old one's partitions up once it expires.
    /// </summary>
    private static async Task<ProcessorProcess> StaticProcessorWithOneBookingAsync(TestBroker broker, TopicNames topics, string name, int vans, string? readyFile = null)
    {
        var member = new Dictionary<string, string> { ["PROCESSOR_STATIC_MEMBERSHIP"] = "true", ["PROCESSOR_SESSION_TIMEOUT_MS"] = "2000" };
        if (readyFile is not null) member["PROCESSOR_READY_FILE"] = readyFile;
        var processor = ProcessorProcess.Start(broker.BootstrapServers, topics, name, member);
        try
        {
            await processor.RunningAsync();
            using var kafka = new Kafka(broker.BootstrapServers);
            await kafka.SendAsync(topics.Commands, Configure(Slot(name), Config(vans: vans), replyPartition: null));
            await kafka.SendAsync(topics.Commands, Reserve(Slot(name), "before", replyPartition: 0));
            Assert.True(kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, read => read.Count >= 1, TimeSpan.FromSeconds(30)).Single().Message.Value.Accepted);
            return processor;
        }
        catch
        {
            processor.Dispose();
            throw;
        }
    }

    /// <summary>A processor in its own process (the built SlotCapacity.Processor.dll), so it can be SIGKILLed.</summary>
    private sealed class ProcessorProcess : IDisposable
    {
        private readonly Process _process;
        private readonly TaskCompletionSource _running = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Queue<string> _lines = new();
        private readonly string _name;

        private readonly string _stateDirectory;

        private ProcessorProcess(Process process, string name, string stateDirectory)
        {
            _process = process;
            _name = name;
            _stateDirectory = stateDirectory;
        }

        public static ProcessorProcess Start(string bootstrap, TopicNames topics, string name, IReadOnlyDictionary<string, string>? environment = null)
        {
            var dll = Path.Combine(AppContext.BaseDirectory, "SlotCapacity.Processor.dll");
            var info = new ProcessStartInfo("dotnet", [dll])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            info.Environment["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap;
            info.Environment["TOPIC_PREFIX"] = topics.Prefix;
            var stateDirectory = Path.Combine(Path.GetTempPath(), "slot-crash", Guid.NewGuid().ToString("N"));
            info.Environment["PROCESSOR_STATE_DIR"] = stateDirectory;
            info.Environment["PROCESSOR_INSTANCE"] = name;
            foreach (var (variable, value) in environment ?? new Dictionary<string, string>()) info.Environment[variable] = value;
            var process = new Process { StartInfo = info };
            var wrapper = new ProcessorProcess(process, name, stateDirectory);
            process.OutputDataReceived += (_, e) => wrapper.OnLine(e.Data);
            process.ErrorDataReceived += (_, e) => wrapper.OnLine(e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return wrapper;
        }

        private void OnLine(string? line)
        {
            if (line is null) return;
            lock (_lines)
            {
                _lines.Enqueue(line);
                if (_lines.Count > 20) _lines.Dequeue();
            }
            if (line.Contains($"Processor {_name} serves", StringComparison.Ordinal)) _running.TrySetResult();
        }

        public async Task RunningAsync()
        {
            try
            {
                await _running.Task.WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"{_name} did not report running within 60 s: {Tail()}");
            }
        }

        public string Tail()
        {
            lock (_lines) return $"[{_name}: {string.Join(" | ", _lines.TakeLast(5))}]";
        }

        public int Id => _process.Id;

        public string StateDirectory => _stateDirectory;

        /// <summary>The exit code once the process has exited by itself.</summary>
        public async Task<int> ExitAsync(TimeSpan timeout)
        {
            using var limit = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"{_name} had not exited within {timeout.TotalSeconds} s: {Tail()}");
            }
            return _process.ExitCode;
        }

        /// <summary>SIGKILL: no shutdown, no final commit, no flush.</summary>
        public void Kill() => _process.Kill(entireProcessTree: false);

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(10_000);
            }
            _process.Dispose();
            if (Directory.Exists(_stateDirectory)) Directory.Delete(_stateDirectory, recursive: true);
        }
    }
}
