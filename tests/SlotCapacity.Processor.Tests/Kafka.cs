using Confluent.Kafka;
using Google.Protobuf;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Processor.Tests;

/// <summary>Plain clients for end-to-end tests: send commands, read whole topics.</summary>
internal sealed class Kafka(string bootstrap) : IDisposable
{
    private readonly IProducer<string, byte[]> _producer = new ProducerBuilder<string, byte[]>(new ProducerConfig
    {
        BootstrapServers = bootstrap,
        Acks = Acks.All,
        EnableIdempotence = true,
        LingerMs = 1,
    }).SetLogHandler((_, _) => { }).Build();

    public Task<DeliveryResult<string, byte[]>> SendAsync(string topic, SlotCommand command) => SendRawAsync(topic, command.Slot, command.ToByteArray());

    public Task<DeliveryResult<string, byte[]>> SendRawAsync(string topic, string key, byte[] value) =>
        _producer.ProduceAsync(topic, new Message<string, byte[]> { Key = key, Value = value });

    public Task<DeliveryResult<string, byte[]>> SendRawAsync(TopicPartition partition, string key, byte[] value) =>
        _producer.ProduceAsync(partition, new Message<string, byte[]> { Key = key, Value = value });

    public void Dispose() => _producer.Dispose();

    /// <summary>
    /// Reads every partition of a topic from the beginning until <paramref name="done"/> holds for
    /// what was read, then for <paramref name="settle"/> more (to catch anything extra), or until the timeout.
    /// </summary>
    public List<ConsumeResult<string, T>> ReadUntil<T>(string topic, int partitions, Func<List<ConsumeResult<string, T>>, bool> done,
        TimeSpan timeout, TimeSpan? settle = null) where T : IMessage<T>, new()
    {
        using var consumer = new ConsumerBuilder<string, T>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "test-reader-" + Guid.NewGuid().ToString("N"),
            EnableAutoCommit = false,
            FetchWaitMaxMs = 5,
        }).SetValueDeserializer(ProtobufSerde<T>.Instance).SetLogHandler((_, _) => { }).Build();
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var read = new List<ConsumeResult<string, T>>();
        var deadline = DateTime.UtcNow + timeout;
        DateTime? settleUntil = null;
        while (DateTime.UtcNow < deadline && (settleUntil is null || DateTime.UtcNow < settleUntil))
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(100));
            if (result is { IsPartitionEOF: false, Message: not null }) read.Add(result);
            if (settleUntil is null && done(read)) settleUntil = DateTime.UtcNow + (settle ?? TimeSpan.Zero);
        }
        return read;
    }
}
