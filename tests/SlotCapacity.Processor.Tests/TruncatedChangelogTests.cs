using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;
using Xunit;
using Xunit.Abstractions;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>
/// A changelog partition whose oldest records are gone (the local cluster keeps only the last
/// 5 MiB of a partition) cannot rebuild a slot's state. A processor that would need them refuses
/// the partition instead of serving a state with bookings missing, and holds its commands back
/// (neither answered nor committed); one whose checkpoint is past the gap then decides them exactly.
/// </summary>
public sealed class TruncatedChangelogTests(ITestOutputHelper output)
{
    private const int Partitions = 2;
    private const int Vans = 3;

    [Fact]
    public async Task A_processor_that_would_restore_past_dropped_changelog_records_refuses_the_partition_and_never_oversells()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var ownerState = NewStateDirectory();
        var newcomerState = NewStateDirectory();
        using var kafka = new Kafka(broker.BootstrapServers);
        try
        {
            int full;
            string fullSlot, intactSlot;
            await using (var owner = await StartAsync(broker, topics, ownerState, "owner"))
            {
                fullSlot = Slot("trunc-full");
                full = (await kafka.SendAsync(topics.Commands, Configure(fullSlot, Config(vans: Vans), replyPartition: null))).Partition.Value;
                intactSlot = await ConfigureWhereAsync(kafka, topics, "trunc-intact", p => p != full);
                var neighbour = await ConfigureWhereAsync(kafka, topics, "trunc-neighbour", p => p == full);
                for (var i = 0; i < Vans; i++)
                    Assert.True((await ReserveAsync(kafka, topics, fullSlot, $"booked-{i}")).Accepted);

                var changelog = new TopicPartition(topics.StateChangelog, full);
                await DropOldestChangelogRecordsAsync(broker, changelog);
                // The owner writes the partition again after the gap (another slot), so its checkpoint lies
                // past it, while the full slot's configuration and bookings are only in the dropped records.
                Assert.True((await ReserveAsync(kafka, topics, neighbour, "after-gap")).Accepted);
                output.WriteLine($"changelog {changelog} now starts at {StartOffset(broker, changelog)}");
            }

            // An empty processor would restore the full slot without its configuration and bookings: it
            // refuses the partition, and holds its commands back instead of deciding them.
            var heldBack = Reserve(fullSlot, "while-refused", replyPartition: 0);
            long heldBackOffset;
            await using (var newcomer = await StartAsync(broker, topics, newcomerState, "newcomer"))
            {
                heldBackOffset = (await kafka.SendAsync(topics.Commands, heldBack)).Offset.Value;
                var other = await ReserveAsync(kafka, topics, intactSlot, "other-partition");
                Assert.True(other.Accepted);
                // Past a commit interval (1 s): the intact partition's offsets are committed, the refused one's are not.
                await Task.Delay(TimeSpan.FromSeconds(3));
                Assert.DoesNotContain(ReadReplies(kafka, topics, TimeSpan.FromSeconds(1)), r => r.Message.Key == heldBack.CorrelationId);
                var committed = Committed(broker, topics, full);
                output.WriteLine($"held back at offset {heldBackOffset}; committed offset of the refused partition: {committed}");
                Assert.True(committed <= heldBackOffset, $"the refused partition's offset was committed past its held-back command ({committed} > {heldBackOffset})");
            }
            // The refusal leaves no checkpoint that would vouch for the partial state on the next start.
            Assert.False(File.Exists(Path.Combine(newcomerState, topics.ProcessorApplicationId, $"0-{full}", ".checkpoint")));

            await using (var owner = await StartAsync(broker, topics, ownerState, "owner-again"))
            {
                // The owner, whose state is complete, decides the held-back command: the full slot is full.
                var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions,
                    read => read.Any(r => r.Message.Key == heldBack.CorrelationId), TimeSpan.FromSeconds(60));
                Assert.Equal(RejectReason.SlotFull, replies.First(r => r.Message.Key == heldBack.CorrelationId).Message.Value.Reason);
                var reply = await ReserveAsync(kafka, topics, fullSlot, "owner-back");
                Assert.Equal(RejectReason.SlotFull, reply.Reason);
            }
        }
        finally
        {
            foreach (var directory in new[] { ownerState, newcomerState })
                if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_task_without_a_checkpoint_restores_from_the_changelogs_start_offset_not_from_a_logical_beginning()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var state = NewStateDirectory();
        try
        {
            using var checkpoints = new ChangelogCheckpoints(new ProcessorSettings(broker.BootstrapServers, topics, state, "first-start"), NullLoggerFactory.Instance);
            var restoreFrom = checkpoints.Read(new Streamiz.Kafka.Net.Processors.Internal.TaskId { Id = 0, Partition = 1 });
            // An absolute offset: librdkafka fetches from it at once, where Offset.Beginning costs a lookup
            // that Streamiz's resume makes outdated and librdkafka retries 500 ms later.
            Assert.Equal(0, Assert.Single(restoreFrom, c => c.Key == new TopicPartition(topics.StateChangelog, 1)).Value);
            Assert.Null(checkpoints.Refusal(1));
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task A_running_task_checkpoints_its_changelog_every_few_seconds_not_only_when_closed()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(Partitions, Partitions);
        var state = NewStateDirectory();
        using var kafka = new Kafka(broker.BootstrapServers);
        try
        {
            await using var processor = await StartAsync(broker, topics, state, "checkpointing");
            var slot = Slot("checkpointed");
            var partition = (await kafka.SendAsync(topics.Commands, Configure(slot, Config(vans: Vans), replyPartition: null))).Partition.Value;
            Assert.True((await ReserveAsync(kafka, topics, slot, "before-checkpoint")).Accepted);
            var changelog = new TopicPartition(topics.StateChangelog, partition);
            var end = broker.Watermarks(changelog).High.Value;
            var task = new Streamiz.Kafka.Net.Processors.Internal.TaskId { Id = 0, Partition = partition };
            var file = new Streamiz.Kafka.Net.State.OffsetCheckpointFile(Path.Combine(state, topics.ProcessorApplicationId, $"0-{partition}"));
            var waited = System.Diagnostics.Stopwatch.StartNew();
            long checkpoint = -1;
            while (waited.Elapsed < SlotCommandProcessor.CheckpointInterval * 4
                   && (checkpoint = file.Read(task).TryGetValue(changelog, out var offset) ? offset : -1) < end)
                await Task.Delay(200);
            output.WriteLine($"changelog {changelog} ends at {end}; the running task's checkpoint: {checkpoint} after {waited.Elapsed.TotalSeconds:F1} s");
            // At least as far as the changelog reached once the reserve was answered (its last record may land just after).
            Assert.True(checkpoint >= end, $"no checkpoint of the running task at or past offset {end} (found {checkpoint})");
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
        }
    }

    private static string NewStateDirectory() => Path.Combine(Path.GetTempPath(), "slot-trunc", Guid.NewGuid().ToString("N"));

    private static Task<IAsyncDisposable> StartAsync(TestBroker broker, TopicNames topics, string stateDirectory, string name) =>
        SlotProcessor.StartAsync(new ProcessorSettings(broker.BootstrapServers, topics, stateDirectory, name),
            NullLoggerFactory.Instance, CancellationToken.None);

    /// <summary>Configures slots named hub-0, hub-1... until one lands on a partition that <paramref name="wanted"/> accepts.</summary>
    private static async Task<string> ConfigureWhereAsync(Kafka kafka, TopicNames topics, string hub, Func<int, bool> wanted)
    {
        for (var i = 0; i < 50; i++)
        {
            var slot = Slot($"{hub}-{i}");
            var sent = await kafka.SendAsync(topics.Commands, Configure(slot, Config(vans: Vans), replyPartition: null));
            if (wanted(sent.Partition.Value)) return slot;
        }
        throw new InvalidOperationException($"none of 50 slot keys landed on a wanted partition");
    }

    private static async Task<SlotReply> ReserveAsync(Kafka kafka, TopicNames topics, string slot, string reservationId)
    {
        var command = Reserve(slot, reservationId, replyPartition: 0);
        await kafka.SendAsync(topics.Commands, command);
        var replies = kafka.ReadUntil<SlotReply>(topics.Replies, Partitions,
            read => read.Any(r => r.Message.Key == command.CorrelationId), TimeSpan.FromSeconds(60));
        return replies.First(r => r.Message.Key == command.CorrelationId).Message.Value;
    }

    private static async Task DropOldestChangelogRecordsAsync(TestBroker broker, TopicPartition changelog)
    {
        await broker.DropOldestRecordsAsync(changelog);
        Assert.True(StartOffset(broker, changelog) > 0, "the changelog partition should have lost its oldest records");
    }

    private static long StartOffset(TestBroker broker, TopicPartition partition) => broker.Watermarks(partition).Low.Value;

    private static List<ConsumeResult<string, SlotReply>> ReadReplies(Kafka kafka, TopicNames topics, TimeSpan during) =>
        kafka.ReadUntil<SlotReply>(topics.Replies, Partitions, _ => false, during);

    /// <summary>The processors' committed offset of a commands partition (-1 when none).</summary>
    private static long Committed(TestBroker broker, TopicNames topics, int partition)
    {
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = broker.BootstrapServers, GroupId = topics.ProcessorApplicationId })
            .SetLogHandler((_, _) => { }).Build();
        return consumer.Committed([new TopicPartition(topics.Commands, partition)], TimeSpan.FromSeconds(10)).Single().Offset.Value;
    }
}
