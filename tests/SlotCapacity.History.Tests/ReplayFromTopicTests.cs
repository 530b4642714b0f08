using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;

namespace SlotCapacity.History.Tests;

/// <summary>The replay reading the real events topic: progress, malformed records, and a history the cluster has partly dropped.</summary>
public sealed class ReplayFromTopicTests
{
    [Fact]
    public async Task A_replay_reads_every_partition_reports_progress_and_skips_what_is_not_an_event()
    {
        var written = await TopicEvents.WriteAsync((0, [0xFF, 0xFF, 0xFF]), (1, EngineEvents.Bytes(new SlotEvent { Slot = "hub-a@2030-05-06T10:00Z" })));
        var reports = new List<ReplayProgress>();
        var replay = new UtilisationReplay(written.Broker.BootstrapServers, written.Topics, NullLogger.Instance);

        var slots = await replay.ReplayAsync("", DateTimeOffset.MaxValue, new Synchronous(reports), CancellationToken.None);

        Assert.Equal(written.Events.Count, slots.Applied);
        Assert.Equal(2, slots.Skipped);
        Assert.Contains(slots.Problems, p => p.Contains($"{written.Topics.Events}[0]@", StringComparison.Ordinal));
        Assert.Contains(slots.Problems, p => p.Contains("no event id", StringComparison.Ordinal));
        var last = reports[^1];
        Assert.Equal((written.Events.Count + 2L, written.Events.Count + 2L, 2, 2), (last.Read, last.Total, last.PartitionsDone, last.Partitions));
        var reply = await replay.RebuildAsync("", DateTimeOffset.MaxValue, null, CancellationToken.None);
        Assert.Equal(["hub-a", "hub-b"], reply.Days.Select(d => d.Hub));
        Assert.Equal(reply.Days[0].UsedOrders, reply.Days[1].UsedOrders);
    }

    [Fact]
    public async Task A_replay_refuses_an_events_topic_whose_oldest_events_are_gone()
    {
        var written = await TopicEvents.WriteAsync();
        await written.Broker.DropOldestRecordsAsync(new TopicPartition(written.Topics.Events, 1));
        var replay = new UtilisationReplay(written.Broker.BootstrapServers, written.Topics, NullLogger.Instance);

        var refused = await Assert.ThrowsAsync<IncompleteHistoryException>(() => replay.RebuildAsync("hub-a", DateTimeOffset.MaxValue, null, CancellationToken.None));

        Assert.Contains($"{written.Topics.Events}[1] starts at offset", refused.Message, StringComparison.Ordinal);
        Assert.StartsWith("refusing to replay", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>Records each report as it is made (Progress&lt;T&gt; would post them to the thread pool).</summary>
    private sealed class Synchronous(List<ReplayProgress> reports) : IProgress<ReplayProgress>
    {
        public void Report(ReplayProgress value)
        {
            lock (reports) reports.Add(value);
        }
    }
}
