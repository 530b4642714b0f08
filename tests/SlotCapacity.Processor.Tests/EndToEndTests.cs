using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;
using Xunit;
using Xunit.Abstractions;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>The processor on a broker (TestBroker: real Kafka if configured, else the local cluster).</summary>
public sealed class EndToEndTests(ITestOutputHelper output)
{
    private const int Partitions = 4;

    private static async Task<(TestBroker Broker, TopicNames Topics, IAsyncDisposable Processor)> StartAsync()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var stateDirectory = Path.Combine(Path.GetTempPath(), "slot-e2e", Guid.NewGuid().ToString("N"));
        var settings = new ProcessorSettings(broker.BootstrapServers, topics, stateDirectory, "e2e");
        var processor = await SlotProcessor.StartAsync(settings, NullLoggerFactory.Instance, CancellationToken.None);
        return (broker, topics, new DeletingStateOnStop(processor, stateDirectory));
    }

    private sealed class DeletingStateOnStop(IAsyncDisposable processor, string stateDirectory) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await processor.DisposeAsync();
            if (Directory.Exists(stateDirectory)) Directory.Delete(stateDirectory, recursive: true);
        }
    }

    [Fact]
    public async Task Two_hundred_concurrent_reservations_race_for_37_units_and_exactly_37_win()
    {
        var (broker, topics, processor) = await StartAsync();
        await using var _ = processor;
        using var kafka = new Kafka(broker.BootstrapServers);
        var slot = Slot("race");
        await kafka.SendAsync(topics.Commands, Configure(slot, Config(vans: 37), replyPartition: null));

        var reserves = Enumerable.Range(0, 200).Select(i => Reserve(slot, $"race-{i:D3}", replyPartition: i % Partitions)).ToList();
        await Task.WhenAll(reserves.Select(r => kafka.SendAsync(topics.Commands, r)));

        var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions,
            read => read.Select(r => r.Message.Key).Distinct().Count() >= 200, TimeSpan.FromSeconds(60));
        var byCorrelation = replies.GroupBy(r => r.Message.Key).ToDictionary(g => g.Key, g => g.First().Message.Value);
        Assert.Equal(200, byCorrelation.Count);
        Assert.All(reserves, r => Assert.Equal(r.ReplyPartition, replies.First(x => x.Message.Key == r.CorrelationId).Partition.Value));
        Assert.Equal(37, byCorrelation.Values.Count(r => r.Accepted));
        Assert.Equal(163, byCorrelation.Values.Count(r => !r.Accepted && r.Reason == RejectReason.SlotFull));

        var events = kafka.ReadUntil<SlotEvent>(topics.Events, Partitions,
            read => read.Count(e => e.Message.Value.Kind == SlotEventKind.ReservationBooked) >= 37,
            TimeSpan.FromSeconds(30), settle: TimeSpan.FromSeconds(1));
        var booked = events.Where(e => e.Message.Value.Kind == SlotEventKind.ReservationBooked).Select(e => e.Message.Value).ToList();
        Assert.Equal(37, booked.Count);
        Assert.Equal(byCorrelation.Values.Where(r => r.Accepted).Select(r => r.ReservationId).Order(),
            booked.Select(e => e.ReservationId).Order());
        output.WriteLine($"broker {broker.Kind}: {replies.Count} replies, {events.Count} events");
    }

    [Fact]
    public async Task A_processor_holds_its_pid_in_its_ready_file_once_every_assigned_task_is_restored_and_removes_it_when_it_stops()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var folder = Directory.CreateTempSubdirectory("slot-ready-").FullName;
        try
        {
            var readyFile = Path.Combine(folder, "processor.ready");
            // Left by a processor that was killed: it names a process that is gone.
            await File.WriteAllTextAsync(readyFile, "1\n");
            var restoring = 0;
            var restoringWhileReady = new System.Collections.Concurrent.ConcurrentQueue<string>();
            // Logged when a task's store is opened, before its restore: no task may be that far behind
            // once the file exists.
            var loggers = new EachMessage(message =>
            {
                if (!message.Contains("checked before restoring", StringComparison.Ordinal)) return;
                Interlocked.Increment(ref restoring);
                if (File.Exists(readyFile)) restoringWhileReady.Enqueue(message);
            });
            var settings = new ProcessorSettings(broker.BootstrapServers, topics, Path.Combine(folder, "state"), "ready") { ReadyFile = readyFile };
            await using (await SlotProcessor.StartAsync(settings, loggers, CancellationToken.None))
            {
                Assert.Equal(Partitions, Volatile.Read(ref restoring));
                Assert.Empty(restoringWhileReady);
                Assert.Equal(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), (await File.ReadAllTextAsync(readyFile)).Trim());
            }
            Assert.False(File.Exists(readyFile), "the ready file outlived the processor's stop");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Every message, to a callback. Streamiz keeps the last logger factory it was given in a
    /// static, so this one outlives its test and has nothing to dispose.</summary>
    private sealed class EachMessage(Action<string> onMessage) : ILoggerFactory, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;
        public void AddProvider(ILoggerProvider provider) { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) onMessage(formatter(state, exception));
        }
        public void Dispose() { }
    }

    [Fact]
    public async Task A_static_processor_that_stops_leaves_the_group_alone_so_the_other_keeps_serving_without_a_rebalance()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var folder = Directory.CreateTempSubdirectory("slot-static-").FullName;
        try
        {
            ProcessorSettings Member(string name) => new(broker.BootstrapServers, topics, Path.Combine(folder, name), name)
            {
                StaticMembership = true,
                SessionTimeoutMs = 30_000,
                // A member learns of a rebalance from its next heartbeat.
                HeartbeatIntervalMs = 100,
                ReadyFile = Path.Combine(folder, name + ".ready"),
            };
            var (staying, stopping) = (Member("static-a"), Member("static-b"));
            await using var survivor = await SlotProcessor.StartAsync(staying, NullLoggerFactory.Instance, CancellationToken.None);
            var stopped = await SlotProcessor.StartAsync(stopping, NullLoggerFactory.Instance, CancellationToken.None);
            // The second one's join rebalanced the first: both serve once both files have stayed for a second.
            var settled = DateTime.UtcNow.AddSeconds(60);
            var steadySince = DateTime.UtcNow;
            while (DateTime.UtcNow - steadySince < TimeSpan.FromSeconds(1))
            {
                Assert.True(DateTime.UtcNow < settled, "the two processors never both served for a second");
                if (!File.Exists(staying.ReadyFile) || !File.Exists(stopping.ReadyFile)) steadySince = DateTime.UtcNow;
                await Task.Delay(20);
            }

            await stopped.DisposeAsync();
            // A member that left would rebalance the group at once (the survivor's ready file goes while it
            // takes the partitions over); a static member's stop leaves them waiting for its return.
            var watched = DateTime.UtcNow.AddSeconds(3);
            var gone = 0;
            while (DateTime.UtcNow < watched)
            {
                if (!File.Exists(staying.ReadyFile)) gone++;
                await Task.Delay(5);
            }
            Assert.Equal(0, gone);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task A_malformed_record_gets_an_INVALID_reply_and_the_stream_continues()
    {
        var (broker, topics, processor) = await StartAsync();
        await using var _ = processor;
        using var kafka = new Kafka(broker.BootstrapServers);
        var slot = Slot("malformed");
        await kafka.SendAsync(topics.Commands, Configure(slot, Config(), replyPartition: null));
        var address = new SlotCommand { CommandId = "bad", Slot = slot, ReplyPartition = 1, CorrelationId = "corr-bad" };
        await kafka.SendRawAsync(topics.Commands, slot, [.. Google.Protobuf.MessageExtensions.ToByteArray(address), 0x52, 100, 1]);
        await kafka.SendRawAsync(topics.Commands, slot, [0xff, 0xff]);
        await kafka.SendAsync(topics.Commands, Reserve(slot, "after-bad", replyPartition: 1));

        var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, read => read.Count >= 2, TimeSpan.FromSeconds(30));
        Assert.Equal(RejectReason.Invalid, replies.Single(r => r.Message.Key == "corr-bad").Message.Value.Reason);
        Assert.True(replies.Single(r => r.Message.Value.ReservationId == "after-bad").Message.Value.Accepted);
    }

    [Fact]
    public async Task An_expired_hold_is_freed_in_the_availability_snapshot_without_further_traffic()
    {
        var (broker, topics, processor) = await StartAsync();
        await using var _ = processor;
        using var kafka = new Kafka(broker.BootstrapServers);
        var slot = Slot("hold");
        await kafka.SendAsync(topics.Commands, Configure(slot, Config(vans: 5), replyPartition: null));
        await kafka.SendAsync(topics.Commands, Reserve(slot, "held", replyPartition: 0,
            holdExpiresUnixMs: DateTimeOffset.UtcNow.AddSeconds(1).ToUnixTimeMilliseconds()));

        var snapshots = kafka.ReadUntil<AvailabilitySnapshot>(topics.Availability, Partitions,
            read => read.Any(s => s.Message.Value.Fleet.Single().UsedOrders == 1)
                    && read.Last().Message.Value.Fleet.Single().UsedOrders == 0,
            TimeSpan.FromSeconds(15));
        Assert.Equal(0, snapshots.Last().Message.Value.Fleet.Single().UsedOrders);
        var events = kafka.ReadUntil<SlotEvent>(topics.Events, Partitions,
            read => read.Any(e => e.Message.Value.Kind == SlotEventKind.HoldExpired), TimeSpan.FromSeconds(5));
        Assert.Contains(events, e => e.Message.Value is { Kind: SlotEventKind.HoldExpired, ReservationId: "held" });
    }
}
