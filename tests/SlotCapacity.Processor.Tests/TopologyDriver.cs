using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Mock;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;

namespace SlotCapacity.Processor.Tests;

/// <summary>The processor's topology on Streamiz's TopologyTestDriver (no broker), its topics, and
/// a state directory of its own, removed on dispose.</summary>
internal sealed class TopologyDriver : IDisposable
{
    public static readonly DateTime Now = new(2030, 5, 6, 8, 0, 0, DateTimeKind.Utc);
    private readonly string _stateDirectory = Path.Combine(Path.GetTempPath(), "slot-ttd", Guid.NewGuid().ToString("N"));
    private readonly ChangelogCheckpoints _checkpoints;

    public TopicNames Topics { get; } = new("ttd.");

    /// <summary>What the processor knows of its partitions (the test driver has no broker to ask).</summary>
    public ChangelogCheckpoints Checkpoints => _checkpoints;
    public TopologyTestDriver Driver { get; }
    public TestInputTopic<string, byte[]> Commands { get; }
    public TestOutputTopic<string, SlotReply> Replies { get; }
    public TestOutputTopic<string, SlotEvent> Events { get; }
    public TestOutputTopic<string, AvailabilitySnapshot> Availability { get; }

    /// <param name="storeAccess">Wraps the task's store (see <see cref="SlotTopology.Build"/>).</param>
    public TopologyDriver(Func<IKeyValueStore<string, byte[]>, IKeyValueStore<string, byte[]>>? storeAccess = null)
    {
        var settings = new ProcessorSettings("127.0.0.1:1", Topics, _stateDirectory, "ttd");
        _checkpoints = new ChangelogCheckpoints(settings, NullLoggerFactory.Instance);
        Driver = SlotTopology.InMemory(settings, replyPartitions: 4, _checkpoints, NullLoggerFactory.Instance, storeAccess);
        Commands = Driver.CreateInputTopic<string, byte[], StringSerDes, ByteArraySerDes>(Topics.Commands);
        Replies = Driver.CreateOutputTopic<string, SlotReply, StringSerDes, ProtobufSerDes<SlotReply>>(Topics.Replies);
        Events = Driver.CreateOutputTopic<string, SlotEvent, StringSerDes, ProtobufSerDes<SlotEvent>>(Topics.Events);
        Availability = Driver.CreateOutputTopic<string, AvailabilitySnapshot, StringSerDes, ProtobufSerDes<AvailabilitySnapshot>>(Topics.Availability);
    }

    public void Send(SlotCommand command, DateTime? at = null) => Commands.PipeInput(command.Slot, command.ToByteArray(), at ?? Now);

    public void Dispose()
    {
        Driver.Dispose();
        _checkpoints.Dispose();
        if (Directory.Exists(_stateDirectory)) Directory.Delete(_stateDirectory, recursive: true);
    }
}
