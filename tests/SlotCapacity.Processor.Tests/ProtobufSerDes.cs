using Confluent.Kafka;
using Google.Protobuf;
using Streamiz.Kafka.Net.SerDes;

namespace SlotCapacity.Processor.Tests;

/// <summary>Streamiz serde over plain protobuf bytes, for reading the topology's output topics on
/// the test driver; the topology itself writes with its own outbound serde and its store holds raw bytes.</summary>
internal sealed class ProtobufSerDes<T> : AbstractSerDes<T> where T : IMessage<T>, new()
{
    private static readonly MessageParser<T> Parser = new(() => new T());

    public override byte[] Serialize(T data, SerializationContext context) => data.ToByteArray();

    public override T Deserialize(byte[] data, SerializationContext context) => Parser.ParseFrom(data);
}
