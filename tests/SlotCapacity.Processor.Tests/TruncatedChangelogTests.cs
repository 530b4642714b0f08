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
/// the partition instead of serving a state with bookings missing; one whose checkpoint is past the
/// gap serves it exactly.
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

            // An empty processor would restore the full slot without its configuration and bookings.
            await using (var newcomer = await StartAsync(broker, topics, newcomerState, "newcomer"))
            {
                var refused = await ReserveAsync(kafka, topics, fullSlot, "while-refused");
                Assert.False(refused.Accepted);
                Assert.Equal(RejectReason.Unavailable, refused.Reason);
                Assert.Contains($"refuses slot partition {full}", refused.Detail, StringComparison.Ordinal);
                Assert.Contains("has no local state", refused.Detail, StringComparison.Ordinal);
                output.WriteLine(refused.Detail);
                Assert.True((await ReserveAsync(kafka, topics, intactSlot, "other-partition")).Accepted);
            }
            // The refusal leaves no checkpoint that would vouch for the partial state on the next start.
            Assert.False(File.Exists(Path.Combine(newcomerState, topics.ProcessorApplicationId, $"0-{full}", ".checkpoint")));

            await using (var owner = await StartAsync(broker, topics, ownerState, "owner-again"))
            {
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
}
