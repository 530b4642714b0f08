using Confluent.Kafka;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;

namespace SlotCapacity.History.Tests;

/// <summary>Fresh topics on the test broker with the engine's events of two slots written to the events topic.</summary>
internal sealed record TopicEvents(TestBroker Broker, TopicNames Topics, List<SlotEvent> Events)
{
    public const string SecondSlot = "hub-b@2030-05-06T12:00Z";

    /// <summary>Slot hub-a on partition 0, hub-b on partition 1, each event once, then <paramref name="extra"/>
    /// records (partition, bytes) as they come.</summary>
    public static async Task<TopicEvents> WriteAsync(params (int Partition, byte[] Value)[] extra)
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(slotPartitions: 2, replyPartitions: 2);
        var first = EngineEvents.Events(EngineEvents.Day());
        var events = first.Concat(EngineEvents.Moved(first, SecondSlot, 1)).ToList();
        using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = broker.BootstrapServers }).Build();
        foreach (var e in events)
            await producer.ProduceAsync(new TopicPartition(topics.Events, e.Slot == SecondSlot ? 1 : 0),
                new Message<string, byte[]> { Key = e.Slot, Value = EngineEvents.Bytes(e) });
        foreach (var (partition, value) in extra)
            await producer.ProduceAsync(new TopicPartition(topics.Events, partition), new Message<string, byte[]> { Key = "x", Value = value });
        return new TopicEvents(broker, topics, events);
    }
}
