using Google.Protobuf;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Mock;
using Streamiz.Kafka.Net.SerDes;
using Streamiz.Kafka.Net.State;
using Xunit;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>The processor's topology on Streamiz's TopologyTestDriver (no broker).</summary>
public sealed class TopologyTests : IDisposable
{
    private static readonly DateTime Now = TopologyDriver.Now;
    private readonly TopologyDriver _ttd = new();
    private readonly TopicNames _topics;
    private readonly TopologyTestDriver _driver;
    private readonly TestInputTopic<string, byte[]> _commands;
    private readonly TestOutputTopic<string, SlotReply> _replies;
    private readonly TestOutputTopic<string, SlotEvent> _events;
    private readonly TestOutputTopic<string, AvailabilitySnapshot> _availability;

    public TopologyTests() =>
        (_topics, _driver, _commands, _replies, _events, _availability) = (_ttd.Topics, _ttd.Driver, _ttd.Commands, _ttd.Replies, _ttd.Events, _ttd.Availability);

    public void Dispose() => _ttd.Dispose();

    private void Send(SlotCommand command, DateTime? at = null) => _ttd.Send(command, at);

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
    public void Holds_are_index_keys_beside_a_slot_state_that_does_not_list_them_and_expire_by_expiry_then_id()
    {
        var slot = Slot();
        Send(Configure(slot, Config()));
        var expiry = new DateTimeOffset(Now).AddMinutes(5).ToUnixTimeMilliseconds();
        // UTF-8 bytes sort "\uE000" before "\U0001F600"; ordinal (UTF-16) order is the other way round.
        string[] ids = ["\uE000", "\U0001F600", "b", "a"];
        foreach (var id in ids) Send(Reserve(slot, id, holdExpiresUnixMs: id == "b" ? expiry - 1 : expiry));
        var store = _driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);
        var state = SlotState.Parser.ParseFrom(store.Get(slot));
        Assert.Empty(state.LegacyHeld);
        Assert.Equal(expiry - 1, state.NextHoldExpiryUnixMs);
        foreach (var id in ids)
        {
            var entry = HoldIndexEntry.Parser.ParseFrom(store.Get(SlotCommandProcessor.HoldKey(slot, id == "b" ? expiry - 1 : expiry, id)));
            Assert.Equal(id, entry.ReservationId);
        }

        _events.ReadKeyValueList();
        Send(Envelope(slot, "tick", 0, c => c.ExpireHolds = new ExpireHolds()), Now.AddMinutes(6));
        var expired = _events.ReadKeyValueList().Select(e => e.Message.Value).ToList();
        Assert.All(expired, e => Assert.Equal(SlotEventKind.HoldExpired, e.Kind));
        Assert.Equal(["b", "a", "\U0001F600", "\uE000"], expired.Select(e => e.ReservationId));
        Assert.All(ids, id => Assert.Null(store.Get(SlotCommandProcessor.HoldKey(slot, id == "b" ? expiry - 1 : expiry, id))));
        var tickOffset = SlotState.Parser.ParseFrom(store.Get(slot)).LastApplied.Offset;
        Assert.All(ids, id => Assert.NotNull(store.Get(SlotCommandProcessor.ExpiredKey(slot, tickOffset, id))));
        Assert.Equal(0, SlotState.Parser.ParseFrom(store.Get(slot)).NextHoldExpiryUnixMs);
    }

    [Theory]
    [InlineData("r1")]
    [InlineData("#hold|0000000000000000001|r1")]
    [InlineData("x@2030-05-06T10:00Z")]
    [InlineData("a@2030-05-06T10:00Z|b")]
    [InlineData("|")]
    [InlineData("}")]
    public void Index_keys_never_equal_a_slot_key_or_a_reservation_key_and_stay_inside_their_slots_range(string id)
    {
        var slot = Slot();
        string[] keys = [SlotCommandProcessor.HoldKey(slot, 42, id), SlotCommandProcessor.ExpiredKey(slot, 7, id)];
        foreach (var key in keys)
        {
            Assert.False(SlotKey.TryParse(key, out _));
            // A reservation key is "{slot}|{id}": no prefix of an index key that ends before a '|' is a slot key.
            for (var bar = key.IndexOf('|', StringComparison.Ordinal); bar >= 0; bar = key.IndexOf('|', bar + 1))
                Assert.False(SlotKey.TryParse(key[..bar], out _), key[..bar]);
            Assert.StartsWith(slot + "#", key, StringComparison.Ordinal);
        }
        Assert.NotEqual(keys[0], keys[1]);
        Assert.NotEqual(SlotCommandProcessor.RecordKey(slot, id), keys[0]);
    }

    [Fact]
    public void A_slot_state_written_by_the_previous_version_is_honoured_and_its_holds_move_to_index_keys()
    {
        // The same commands on another slot give the records and counters the previous version stored too.
        var model = Slot("hub-model");
        Send(Configure(model, Config()));
        var expiry = new DateTimeOffset(Now).AddMinutes(5).ToUnixTimeMilliseconds();
        Send(Reserve(model, "h1", holdExpiresUnixMs: expiry));
        Send(Reserve(model, "h2", holdExpiresUnixMs: expiry + 1));
        var store = (IKeyValueStore<string, byte[]>)_driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);

        // As the previous version stored it (a slot this processor has not read yet): the holds
        // inside the slot state, no index keys.
        var slot = Slot();
        var old = SlotState.Parser.ParseFrom(store.Get(model));
        old.Slot = slot;
        old.LegacyHeld.Add(new Dictionary<string, long> { ["h1"] = expiry, ["h2"] = expiry + 1 });
        store.Put(slot, old.ToByteArray());
        foreach (var id in new[] { "h1", "h2" })
            store.Put(SlotCommandProcessor.RecordKey(slot, id), store.Get(SlotCommandProcessor.RecordKey(model, id)));

        Send(Envelope(slot, "confirm-h2", 0, c => c.Confirm = new Confirm { ReservationId = "h2" }));
        var state = SlotState.Parser.ParseFrom(store.Get(slot));
        Assert.Empty(state.LegacyHeld);
        Assert.Equal(expiry, state.NextHoldExpiryUnixMs);
        Assert.NotNull(store.Get(SlotCommandProcessor.HoldKey(slot, expiry, "h1")));
        Assert.Null(store.Get(SlotCommandProcessor.HoldKey(slot, expiry + 1, "h2")));

        _events.ReadKeyValueList();
        Send(Envelope(slot, "tick", 0, c => c.ExpireHolds = new ExpireHolds()), Now.AddMinutes(6));
        Assert.Equal("h1", _events.ReadKeyValueList().Single().Message.Value.ReservationId);
        Assert.Equal(1, _availability.ReadKeyValueList().Last().Message.Value.Fleet.Single().UsedOrders);
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

    [Fact]
    public void A_reserve_processed_after_its_deadline_is_not_decided_and_the_abandon_of_that_attempt_frees_nothing()
    {
        // Written in time (record timestamp before the deadline), processed after it (the real clock).
        var now = DateTime.UtcNow;
        var slot = Slot();
        Send(Configure(slot, Config(vans: 1)), now);
        _replies.ReadKeyValueList();
        _events.ReadKeyValueList();
        _availability.ReadKeyValueList();
        var late = Reserve(slot, "r1");
        late.DeadlineUnixMs = new DateTimeOffset(now).AddSeconds(-1).ToUnixTimeMilliseconds();
        Send(late, now.AddSeconds(-2));

        Assert.Empty(_replies.ReadKeyValueList());
        Assert.Empty(_events.ReadKeyValueList());
        Assert.Empty(_availability.ReadKeyValueList());
        var store = _driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);
        Assert.Null(store.Get(SlotCommandProcessor.RecordKey(slot, "r1")));
        Assert.Equal(0, SlotState.Parser.ParseFrom(store.Get(slot)).LastApplied.Offset);

        // Checkout's retry, same reservation id, in time: decided and booked, the slot's only van.
        var retry = Reserve(slot, "r1");
        retry.CommandId = retry.CorrelationId = "retry-r1";
        retry.DeadlineUnixMs = new DateTimeOffset(now).AddMinutes(5).ToUnixTimeMilliseconds();
        Send(retry, now);
        Assert.True(Assert.Single(_replies.ReadKeyValueList()).Message.Value.Accepted);

        // The first attempt's gateway abandons it: that attempt was never accepted, so the booking stays.
        Send(Envelope(slot, "abandon-r1", null, c => c.Abandon = new Abandon { ReservationId = "r1", ReserveCommandId = late.CommandId }), now);
        Assert.Equal(1, _availability.ReadKeyValueList().Last().Message.Value.Fleet.Single().UsedOrders);
        var booked = ReservationRecord.Parser.ParseFrom(store.Get(SlotCommandProcessor.RecordKey(slot, "r1")));
        Assert.Equal(ReservationStatus.Booked, booked.Status);
    }

    [Fact]
    public void A_late_reserve_written_before_this_processor_took_the_partition_is_decided_as_its_earlier_owner_may_have_answered_it()
    {
        // The owner before this one decided and answered these in time, then died before their state
        // writes reached the changelog: skipping them now would break the accept its caller holds.
        var now = DateTime.UtcNow;
        var slot = Slot();
        Send(Configure(slot, Config(vans: 1)), now);
        _ttd.Checkpoints.TookOver(partition: 0, commandsEnd: 3);
        var answered = Reserve(slot, "r1");
        answered.DeadlineUnixMs = new DateTimeOffset(now).AddSeconds(-1).ToUnixTimeMilliseconds();
        Send(answered, now.AddSeconds(-2));
        var reply = Assert.Single(_replies.ReadKeyValueList(), r => r.Message.Key == answered.CorrelationId);
        Assert.True(reply.Message.Value.Accepted);

        // Offset 2 was also written before: decided (the slot is now full).
        var second = Reserve(slot, "r2");
        second.DeadlineUnixMs = answered.DeadlineUnixMs;
        Send(second, now.AddSeconds(-2));
        Assert.Equal(RejectReason.SlotFull, Assert.Single(_replies.ReadKeyValueList()).Message.Value.Reason);

        // Offset 3 was written after the takeover: late, so skipped undecided as before.
        var third = Reserve(slot, "r3");
        third.DeadlineUnixMs = answered.DeadlineUnixMs;
        Send(third, now.AddSeconds(-2));
        Assert.Empty(_replies.ReadKeyValueList());
        var store = _driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore);
        Assert.Equal(ReservationStatus.Booked, ReservationRecord.Parser.ParseFrom(store.Get(SlotCommandProcessor.RecordKey(slot, "r1"))).Status);
    }
}
