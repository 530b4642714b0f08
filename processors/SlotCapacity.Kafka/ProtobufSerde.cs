using Confluent.Kafka;
using Google.Protobuf;

namespace SlotCapacity.Kafka;

/// <summary>A record whose bytes are not the message its topic carries.</summary>
public sealed class MalformedRecordException : Exception
{
    public MalformedRecordException() { }
    public MalformedRecordException(string message) : base(message) { }
    public MalformedRecordException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// Plain protobuf bytes on the wire, no schema-registry framing: the contracts evolve by the rules
/// in schemas/proto (additive only, field numbers never reused), so any reader can decode any
/// writer's records.
/// </summary>
public sealed class ProtobufSerde<T> : ISerializer<T>, IDeserializer<T> where T : IMessage<T>, new()
{
    private static readonly MessageParser<T> Parser = new(() => new T());

    public static readonly ProtobufSerde<T> Instance = new();

    public byte[] Serialize(T data, SerializationContext context) => data.ToByteArray();

    public T Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context)
    {
        if (isNull)
            throw new MalformedRecordException($"{typeof(T).Name} on topic '{context.Topic}': the {context.Component.ToString().ToLowerInvariant()} is null");
        try
        {
            return Parser.ParseFrom(data);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new MalformedRecordException(
                $"{typeof(T).Name} on topic '{context.Topic}': {data.Length} bytes are not a valid {typeof(T).Name} ({e.Message})", e);
        }
    }
}
