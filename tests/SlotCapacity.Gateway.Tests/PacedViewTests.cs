using Confluent.Kafka;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Gateway;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// The availability follower reading in rounds (GATEWAY_VIEW_FETCH_INTERVAL_MS): a snapshot written
/// between two rounds is applied by the next one, and between rounds it sends no Fetch, counted by a local
/// cluster of its own.
/// </summary>
public sealed class PacedViewTests(ITestOutputHelper output)
{
    private static GatewaySettings Settings(string bootstrap, TopicNames topics, TimeSpan interval) => new()
    {
        BootstrapServers = bootstrap,
        Security = new(),
        Topics = topics,
        Instance = $"paced-{Guid.NewGuid():N}"[..16],
        ViewFetchInterval = interval,
    };

    private static AvailabilitySnapshot Snapshot(string slot, long version) =>
        new() { Slot = slot, Hub = slot.Split('@')[0], Open = true, Version = version };

    private static Task Write(IProducer<string, byte[]> producer, TopicNames topics, AvailabilitySnapshot snapshot) =>
        producer.ProduceAsync(topics.Availability, new Message<string, byte[]> { Key = snapshot.Slot, Value = snapshot.ToByteArray() });

    [Fact]
    public async Task A_snapshot_written_between_two_rounds_is_applied_by_the_next_one()
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync();
        using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = broker.BootstrapServers }).Build();
        const string slot = "LON1@2030-05-06T10:00Z";
        await Write(producer, topics, Snapshot(slot, 1));
        var view = new AvailabilityView();
        using var follower = new AvailabilityFollower(Settings(broker.BootstrapServers, topics, TimeSpan.FromSeconds(2)), view, NullLogger<AvailabilityFollower>.Instance);
        follower.Start(TimeSpan.FromSeconds(30));
        await Until(() => follower.CaughtUp && view.Get(slot)?.Version == 1 && follower.Paused, () => $"first snapshot: version {view.Get(slot)?.Version}, rounds {follower.Rounds}");

        // Written while no partition is assigned (tried again if the write outlasted the pause).
        var version = 1L;
        var between = false;
        for (var attempt = 0; attempt < 5 && !between; attempt++)
        {
            await Until(() => follower.Paused, () => "no pause between rounds");
            var round = follower.Rounds;
            await Write(producer, topics, Snapshot(slot, ++version));
            between = follower.Paused && follower.Rounds == round;
            await Until(() => view.Get(slot)?.Version == version, () => $"snapshot {version} not applied: view has {view.Get(slot)?.Version}, rounds {follower.Rounds}");
        }
        Assert.True(between, "no snapshot was written while the follower paused");

        await Until(() => follower.Lag() == (0, 0), () => $"lag {follower.Lag()}");
        Assert.Null(follower.Incomplete);
        Assert.Equal(0, follower.Malformed);
        output.WriteLine($"{follower.Rounds} rounds, view has version {view.Get(slot)?.Version}");
    }

    [Fact]
    public async Task Between_rounds_an_idle_follower_sends_no_fetch()
    {
        // A cluster of its own: the follower is the only client whose Fetch requests it counts.
        using var cluster = LocalCluster.Start(brokers: 1);
        var topics = new TopicNames("paced.");
        var specs = topics.Specs(4, 4);
        cluster.CreateTopics(specs);
        await TopicProvisioner.VerifyAsync(cluster.BootstrapServers, specs, TimeSpan.FromSeconds(30));
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers }).Build())
            for (var hour = 0; hour < 8; hour++)
                await Write(producer, topics, Snapshot($"LON1@2030-05-06T{hour:00}:00Z", 1));
        var settings = Settings(cluster.BootstrapServers, topics, TimeSpan.FromMilliseconds(500));
        var view = new AvailabilityView();
        using var follower = new AvailabilityFollower(settings, view, NullLogger<AvailabilityFollower>.Instance);
        follower.Start(TimeSpan.FromSeconds(30));
        await Until(() => follower.CaughtUp && follower.Rounds >= 1, () => $"caught up {follower.CaughtUp}, rounds {follower.Rounds}");

        cluster.TakeRequestCounts();
        await Task.Delay(TimeSpan.FromSeconds(3));
        var fetches = cluster.TakeRequestCounts().Where(c => c.Key.ApiKey == 1).Sum(c => c.Value);

        // Following continuously, an idle follower fetches once per fetch wait (the local cluster answers an
        // empty fetch only then): 3 s / 50 ms = 60. In rounds of 500 ms: about two per round, ~12.
        var continuous = 3_000 / settings.ViewFetchWaitMaxMs;
        output.WriteLine($"{fetches} fetches in 3 s ({follower.Rounds} rounds); following continuously: {continuous}");
        Assert.True(fetches < continuous / 2, $"{fetches} fetches in 3 s");
        Assert.Equal(8, view.SlotCount);
    }

    /// <summary>Polls <paramref name="condition"/> for up to 30 s.</summary>
    private static async Task Until(Func<bool> condition, Func<string> state)
    {
        for (var i = 0; i < 300 && !condition(); i++) await Task.Delay(100);
        Assert.True(condition(), state());
    }
}
