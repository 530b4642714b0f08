using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Mock;
using Streamiz.Kafka.Net.SerDes;
using Xunit;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>The processor's topology on Streamiz's TopologyTestDriver (no broker).</summary>
public sealed class TopologyTests : IDisposable
{
    private static readonly DateTime Now = new(2030, 5, 6, 8, 0, 0, DateTimeKind.Utc);
    private readonly TopicNames _topics = new("ttd.");
    private readonly string _stateDirectory = Path.Combine(Path.GetTempPath(), "slot-ttd", Guid.NewGuid().ToString("N"));
    private readonly ChangelogCheckpoints _checkpoints;
    private readonly TopologyTestDriver _driver;
    private readonly TestInputTopic<string, byte[]> _commands;
    private readonly TestOutputTopic<string, SlotReply> _replies;
    private readonly TestOutputTopic<string, SlotEvent> _events;
    private readonly TestOutputTopic<string, AvailabilitySnapshot> _availability;

    public TopologyTests()
    {
        var settings = new ProcessorSettings("127.0.0.1:1", _topics, _stateDirectory, "ttd");
        _checkpoints = new ChangelogCheckpoints(settings, NullLoggerFactory.Instance);
        var config = SlotTopology.Config(settings, _checkpoints, NullLoggerFactory.Instance);
        // The test driver has no broker to check a changelog against: Streamiz's plain checkpoint files.
        config.OffsetCheckpointManager = null;
        _driver = new TopologyTestDriver(SlotTopology.Build(_topics, replyPartitions: 4, _checkpoints, NullLoggerFactory.Instance), config);
        _commands = _driver.CreateInputTopic<string, byte[], StringSerDes, ByteArraySerDes>(_topics.Commands);
        _replies = _driver.CreateOutputTopic<string, SlotReply, StringSerDes, ProtobufSerDes<SlotReply>>(_topics.Replies);
        _events = _driver.CreateOutputTopic<string, SlotEvent, StringSerDes, ProtobufSerDes<SlotEvent>>(_topics.Events);
        _availability = _driver.CreateOutputTopic<string, AvailabilitySnapshot, StringSerDes, ProtobufSerDes<AvailabilitySnapshot>>(_topics.Availability);
    }

    public void Dispose()
    {
        _driver.Dispose();
        _checkpoints.Dispose();
        if (Directory.Exists(_stateDirectory)) Directory.Delete(_stateDirectory, recursive: true);
    }

    private void Send(SlotCommand command, DateTime? at = null) => _commands.PipeInput(command.Slot, command.ToByteArray(), at ?? Now);

    [Fact]
    public void Reserve_is_answered_on_the_reply_topic_keyed_by_correlation_with_an_event_and_a_snapshot()
    {
        var slot = Slot();
        Send(Configure(slot, Config(vans: 2)));
        var reserve = Reserve(slot, "r1");
        Send(reserve);

        var replies = _replies.ReadKeyValueList().ToList();
        Assert.Equal(2, replies.Count);
        var reply = replies[1];
        Assert.Equal(reserve.CorrelationId, reply.Message.Key);
        Assert.True(reply.Message.Value.Accepted);
        Assert.Equal("vans", reply.Message.Value.FleetCounter);
        Assert.Equal(ReservationStatus.Booked, reply.Message.Value.Status);

        var events = _events.ReadKeyValueList().Select(e => e.Message).ToList();
        Assert.Equal([SlotEventKind.SlotConfigured, SlotEventKind.ReservationBooked], events.Select(e => e.Value.Kind));
        Assert.All(events, e => Assert.Equal(slot, e.Key));
        Assert.Equal("r1", events[1].Value.ReservationId);
        Assert.Equal(3, events[1].Value.SharedUnits["picking"]);

        var snapshot = _availability.ReadKeyValueList().Last().Message;
        Assert.Equal(slot, snapshot.Key);
        Assert.Equal(1, snapshot.Value.Fleet.Single().UsedOrders);
        Assert.Equal(2, snapshot.Value.Fleet.Single().CapacityOrders);
    }

    [Fact]
    public void The_slot_state_is_stored_with_the_offset_of_the_last_command_and_each_reservation_under_its_own_key()
    {
        var slot = Slot();
        Send(Configure(slot, Config()));
        Send(Reserve(slot, "r1"));
        var store = _driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);
        var state = SlotState.Parser.ParseFrom(store.Get(slot));
        Assert.Equal(1, state.LastApplied.Offset);
        Assert.Equal(1, state.FleetUsed["vans"]);
        var record = ReservationRecord.Parser.ParseFrom(store.Get(SlotCommandProcessor.RecordKey(slot, "r1")));
        Assert.Equal((ReservationStatus.Booked, "vans", 1L), (record.Status, record.FleetCounter, record.ReservedAt.Offset));
    }

    [Fact]
    public void Undecodable_bytes_with_a_readable_reply_address_get_an_INVALID_reply_and_the_stream_goes_on()
    {
        var slot = Slot();
        Send(Configure(slot, Config()));
        var address = new SlotCommand { CommandId = "bad-1", Slot = slot, ReplyPartition = 2, CorrelationId = "corr-bad-1" }.ToByteArray();
        // A length-delimited field (number 10, reserve) that claims 100 bytes but has 2.
        byte[] garbage = [.. address, 0x52, 100, 1, 2];
        _commands.PipeInput(slot, garbage, Now);
        _commands.PipeInput(slot, [0xff, 0xff, 0xff], Now);
        Send(Reserve(slot, "r-after"));

        var replies = _replies.ReadKeyValueList().Select(r => r.Message).ToList();
        Assert.Equal(3, replies.Count);
        var invalid = replies[1];
        Assert.Equal("corr-bad-1", invalid.Key);
        Assert.Equal(RejectReason.Invalid, invalid.Value.Reason);
        Assert.Contains("not a SlotCommand", invalid.Value.Detail, StringComparison.Ordinal);
        Assert.True(replies[2].Value.Accepted);
    }

    [Fact]
    public void A_command_whose_key_differs_from_its_slot_is_rejected_without_effect()
    {
        var slot = Slot();
        Send(Configure(slot, Config()));
        var reserve = Reserve(slot, "r1");
        _commands.PipeInput(Slot("hub-b"), reserve.ToByteArray(), Now);
        var reply = _replies.ReadKeyValueList().Last().Message.Value;
        Assert.Equal(RejectReason.Invalid, reply.Reason);
        Assert.Empty(SlotState.Parser.ParseFrom(_driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore).Get(slot)).FleetUsed);
    }

    [Fact]
    public void A_command_without_reply_partition_is_applied_but_not_answered()
    {
        var slot = Slot();
        Send(Configure(slot, Config(), replyPartition: null));
        Send(Reserve(slot, "r1", replyPartition: null));
        Assert.Empty(_replies.ReadKeyValueList());
        Assert.Equal(2, _events.ReadKeyValueList().ToList().Count);
    }

    [Fact]
    public void Due_holds_are_expired_by_an_ExpireHolds_command_written_back_to_the_slot_partition()
    {
        // The punctuator runs on the driver's wall clock, which starts at the real time.
        var now = DateTime.UtcNow;
        var slot = Slot();
        Send(Configure(slot, Config(vans: 1)), now);
        Send(Reserve(slot, "held", holdExpiresUnixMs: new DateTimeOffset(now).AddSeconds(2).ToUnixTimeMilliseconds()), now);
        var commandsOut = _driver.CreateOutputTopic<string, SlotCommand, StringSerDes, ProtobufSerDes<SlotCommand>>(_topics.Commands);

        _driver.AdvanceWallClockTime(TimeSpan.FromSeconds(1));
        Assert.Empty(commandsOut.ReadKeyValueList());
        _driver.AdvanceWallClockTime(TimeSpan.FromSeconds(3));
        var expire = Assert.Single(commandsOut.ReadKeyValueList());
        Assert.Equal(slot, expire.Message.Key);
        Assert.Equal(SlotCommand.BodyOneofCase.ExpireHolds, expire.Message.Value.BodyCase);

        _commands.PipeInput(slot, expire.Message.Value.ToByteArray(), expire.Message.Timestamp.UtcDateTime);
        var expired = _events.ReadKeyValueList().Last().Message.Value;
        Assert.Equal(SlotEventKind.HoldExpired, expired.Kind);
        Assert.Equal("held", expired.ReservationId);
        Assert.Equal(0, _availability.ReadKeyValueList().Last().Message.Value.Fleet.Single().UsedOrders);
    }
}
