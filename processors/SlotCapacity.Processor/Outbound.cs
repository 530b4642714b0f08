using Confluent.Kafka;
using Google.Protobuf;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.SerDes;

namespace SlotCapacity.Processor;

/// <summary>
/// A record the slot processor writes: a reply, an event, a snapshot or an ExpireHolds command.
/// It names its topic and partition itself, because a reply must reach the partition its sender
/// reads, and everything about a slot stays on the slot's partition.
/// </summary>
public sealed record Outbound(string Topic, int Partition, long TimestampMs, IMessage Message);

/// <summary>Routes each outbound record to the topic it names.</summary>
internal sealed class OutboundTopic : ITopicNameExtractor<string, Outbound>
{
    public string Extract(string key, Outbound value, IRecordContext recordContext) => value.Topic;
}

/// <summary>Routes each outbound record to the partition it names.</summary>
internal sealed class OutboundPartition : IStreamPartitioner<string, Outbound>
{
    public void Initialize(IStreamConfig config) { }

    public Partition Partition(string topic, string key, Outbound value, Partition sourcePartition, int numPartitions) =>
        new(value.Partition);
}

/// <summary>Stamps each outbound record with the time it carries (the command's record timestamp).</summary>
internal sealed class OutboundTimestamp : IRecordTimestampExtractor<string, Outbound>
{
    public long Extract(string key, Outbound value, IRecordContext recordContext) => value.TimestampMs;
}

/// <summary>Writes the carried protobuf message as plain bytes, like every other writer.</summary>
internal sealed class OutboundSerDes : AbstractSerDes<Outbound>
{
    public override byte[] Serialize(Outbound data, SerializationContext context) => data.Message.ToByteArray();

    public override Outbound Deserialize(byte[] data, SerializationContext context) =>
        throw new NotSupportedException("outbound records are only written by the slot processor");
}
