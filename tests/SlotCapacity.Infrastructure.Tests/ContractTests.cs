using System.Reflection;
using Confluent.Kafka;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;

namespace SlotCapacity.Infrastructure.Tests;

public sealed class ContractTests
{
    public static TheoryData<string> EveryMessage()
    {
        var data = new TheoryData<string>();
        foreach (var type in MessageTypes()) data.Add(type.FullName!);
        return data;
    }

    [Theory]
    [MemberData(nameof(EveryMessage))]
    public void Every_message_round_trips_through_its_serde_with_every_field_set(string typeName)
    {
        var type = MessageTypes().Single(t => t.FullName == typeName);
        var message = (IMessage)Activator.CreateInstance(type)!;
        Fill(message, depth: 0);

        var serde = Activator.CreateInstance(typeof(ProtobufSerde<>).MakeGenericType(type))!;
        var context = new SerializationContext(MessageComponentType.Value, "contract-test");
        var bytes = (byte[])serde.GetType().GetMethod("Serialize")!.Invoke(serde, [message, context])!;
        var deserialize = serde.GetType().GetMethod("Deserialize")!;
        var back = InvokeDeserialize(deserialize, serde, bytes, context);

        if (message.Descriptor.Fields.InDeclarationOrder().Count > 0) Assert.NotEmpty(bytes);
        Assert.Equal(message, back);
    }

    [Fact]
    public void Every_field_of_every_message_is_covered_by_the_round_trip()
    {
        foreach (var type in MessageTypes())
        {
            var message = (IMessage)Activator.CreateInstance(type)!;
            Fill(message, depth: 0);
            foreach (var field in message.Descriptor.Fields.InDeclarationOrder())
            {
                if (field.RealContainingOneof is not null) continue; // one member of a oneof at a time
                var value = field.Accessor.GetValue(message);
                var set = value switch
                {
                    System.Collections.ICollection c => c.Count > 0,
                    Enum e => Convert.ToInt32(e, System.Globalization.CultureInfo.InvariantCulture) != 0,
                    _ => field.HasPresence ? field.Accessor.HasValue(message) : !Equals(value, DefaultOf(field)),
                };
                Assert.True(set, $"{type.Name}.{field.Name} was left at its default");
            }
        }
    }

    [Fact]
    public void A_malformed_record_is_rejected_with_an_error_that_names_topic_and_type()
    {
        var context = new SerializationContext(MessageComponentType.Value, "slot-commands");
        var garbage = new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01 };

        var error = Assert.Throws<MalformedRecordException>(() => ProtobufSerde<SlotCommand>.Instance.Deserialize(garbage, false, context));

        Assert.Contains("SlotCommand on topic 'slot-commands'", error.Message);
        Assert.Contains("7 bytes are not a valid SlotCommand", error.Message);
    }

    [Fact]
    public async Task A_consumer_reading_a_malformed_record_gets_a_clear_error_and_goes_on_to_the_next_record()
    {
        var broker = await TestBroker.SharedAsync();
        var names = await broker.CreateTopicsAsync(slotPartitions: 1, replyPartitions: 1);
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = broker.BootstrapServers }).Build())
        {
            await producer.ProduceAsync(names.Commands, new Message<string, byte[]> { Key = "a", Value = [0x0A, 0xFF, 0xFF] });
            var good = new SlotCommand { CommandId = "c-2", Slot = "hub-1@2026-11-26T10:00Z" };
            await producer.ProduceAsync(names.Commands, new Message<string, byte[]> { Key = "b", Value = good.ToByteArray() });
        }

        using var consumer = new ConsumerBuilder<string, SlotCommand>(new ConsumerConfig
        {
            BootstrapServers = broker.BootstrapServers,
            GroupId = "malformed-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = 5,
        }).SetValueDeserializer(ProtobufSerde<SlotCommand>.Instance).Build();
        consumer.Subscribe(names.Commands);

        var error = Assert.Throws<ConsumeException>(() => consumer.Consume(TimeSpan.FromSeconds(20)));
        Assert.IsType<MalformedRecordException>(error.InnerException);
        Assert.Equal(0, error.ConsumerRecord.Offset.Value);
        var next = consumer.Consume(TimeSpan.FromSeconds(20));
        consumer.Close();

        Assert.NotNull(next);
        Assert.Equal("c-2", next.Message.Value.CommandId);
    }

    private static object InvokeDeserialize(MethodInfo deserialize, object serde, byte[] bytes, SerializationContext context)
    {
        // ReadOnlySpan cannot be boxed for reflection; call through a generic helper instead.
        var helper = typeof(ContractTests).GetMethod(nameof(DeserializeAs), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(deserialize.DeclaringType!.GetGenericArguments()[0]);
        return helper.Invoke(null, [bytes, context])!;
    }

    private static T DeserializeAs<T>(byte[] bytes, SerializationContext context) where T : IMessage<T>, new() =>
        ProtobufSerde<T>.Instance.Deserialize(bytes, false, context);

    /// <summary>The public contracts and the processors' stored state (compiled into the domain
    /// assembly): a rolling restart reads state written by the previous version.</summary>
    private static IEnumerable<Type> MessageTypes() =>
        new[] { typeof(SlotCommand).Assembly, typeof(SlotState).Assembly }.SelectMany(a => a.GetTypes())
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IMessage).IsAssignableFrom(t)
                        && t.Namespace is "SlotCapacity.Contracts" or "SlotCapacity.Domain" && t.GetConstructor(Type.EmptyTypes) is not null)
            .OrderBy(t => t.FullName, StringComparer.Ordinal);

    private static object? DefaultOf(FieldDescriptor field) => field.FieldType switch
    {
        FieldType.String => "",
        FieldType.Bool => false,
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => 0,
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => 0L,
        FieldType.UInt32 or FieldType.Fixed32 => 0u,
        FieldType.UInt64 or FieldType.Fixed64 => 0UL,
        FieldType.Double => 0d,
        FieldType.Float => 0f,
        FieldType.Bytes => ByteString.Empty,
        _ => null,
    };

    /// <summary>Gives every field a value other than its default; for a oneof, its first member.</summary>
    private static void Fill(IMessage message, int depth)
    {
        var seenOneofs = new HashSet<string>();
        var n = 1;
        foreach (var field in message.Descriptor.Fields.InDeclarationOrder())
        {
            if (field.RealContainingOneof is { } oneof && !seenOneofs.Add(oneof.Name)) continue;
            n++;
            if (field.IsMap)
            {
                var map = (System.Collections.IDictionary)field.Accessor.GetValue(message);
                var keyField = field.MessageType.FindFieldByNumber(1);
                var valueField = field.MessageType.FindFieldByNumber(2);
                map[Sample(keyField, n, depth)!] = Sample(valueField, n, depth);
            }
            else if (field.IsRepeated)
            {
                var list = (System.Collections.IList)field.Accessor.GetValue(message);
                list.Add(Sample(field, n, depth));
                list.Add(Sample(field, n + 1, depth));
            }
            else
            {
                field.Accessor.SetValue(message, Sample(field, n, depth));
            }
        }
    }

    private static object? Sample(FieldDescriptor field, int n, int depth) => field.FieldType switch
    {
        FieldType.String => $"{field.Name}-{n}",
        FieldType.Bool => true,
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => n,
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => 1_000_000_000_000L + n,
        FieldType.UInt32 or FieldType.Fixed32 => (uint)n,
        FieldType.UInt64 or FieldType.Fixed64 => (ulong)n,
        FieldType.Double => n + 0.5,
        FieldType.Float => n + 0.5f,
        FieldType.Bytes => ByteString.CopyFromUtf8(field.Name),
        FieldType.Enum => field.EnumType.Values.Last().Number is var v && v != 0
            ? Enum.ToObject(field.EnumType.ClrType, v) : Enum.ToObject(field.EnumType.ClrType, 0),
        FieldType.Message when depth < 3 => NewFilled(field.MessageType, depth + 1),
        FieldType.Message => Activator.CreateInstance(field.MessageType.ClrType),
        _ => throw new NotSupportedException($"{field.FullName}: {field.FieldType}"),
    };

    private static IMessage NewFilled(MessageDescriptor descriptor, int depth)
    {
        var message = (IMessage)Activator.CreateInstance(descriptor.ClrType)!;
        Fill(message, depth);
        return message;
    }
}
