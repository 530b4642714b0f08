using System.Globalization;
using System.Text;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net.Processors.Public;
using Streamiz.Kafka.Net.State;

namespace SlotCapacity.Processor;

/// <summary>
/// The Kafka adapter around <see cref="SlotDecisions"/>, one instance per stream task (partition):
/// decode the command, load the slot's state, decide, store the changed records and index keys and
/// the new state (with the command's offset), and forward the reply, events and snapshot. Bad
/// input is answered and logged, never thrown, so the stream never stops on it. A store failure
/// is thrown (<see cref="SlotStoreException"/>): the task fails, the process exits and the command
/// is delivered again, which is answered from state if it was applied (the offset is in the state).
/// <para>
/// Hold expiry without traffic: a wall-clock punctuator writes an ExpireHolds command for every
/// slot with a due hold back into the commands topic, on the slot's own partition. The expiry is
/// then applied in partition order with that record's timestamp, like any other command, and a
/// re-processing gives the same result.
/// </para>
/// </summary>
public sealed class SlotCommandProcessor : ITransformer<byte[], byte[], string, Outbound>
{
    /// <summary>How often due holds are looked for, and how long before the same slot is asked again.</summary>
    public static readonly TimeSpan ExpiryTick = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ExpiryRetry = TimeSpan.FromSeconds(3);

    /// <summary>How often a running task's checkpoint is written (when it wrote anything since): a restore
    /// after a crash replays about this much of its changelog, and the local cluster keeps ~40 s of it at 10x.</summary>
    public static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(5);

    private readonly TopicNames _topics;
    private readonly int _replyPartitions;
    private readonly ChangelogCheckpoints _checkpoints;
    private readonly ILogger _log;
    private readonly Func<IKeyValueStore<string, byte[]>, IKeyValueStore<string, byte[]>> _storeAccess;
    private long _refusedCommands;
    private long _lateReserves;
    private long _replayedCommands;
    private ProcessorContext<string, Outbound> _context = null!;
    private IKeyValueStore<string, byte[]> _store = null!;
    // Earliest hold expiry per slot of this task; built from the store on the first tick.
    private Dictionary<string, long>? _nextExpiry;
    private readonly Dictionary<string, long> _expiryRequestedAt = new(StringComparer.Ordinal);
    private long _checkpointedAt;
    // Decoded slot states and reservation records of this task, equal to what was last put: this
    // task is the store's only writer while it lives, and parsing costs more than deciding.
    private readonly Dictionary<string, SlotState> _states = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ReservationRecord> _records = new(StringComparer.Ordinal);
    private const int MaxCached = 10_000;

    /// <summary>Streamiz's builder (a new() constraint) makes one instance this way only to learn
    /// the type; every task's instance is made with the parameters given in <see cref="SlotTopology.Build"/>.</summary>
    public SlotCommandProcessor() : this(new TopicNames(), 0, null!, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, store => store) { }

    /// <param name="storeAccess">How the task reaches its store: the store itself, or a wrapper
    /// around it (tests inject failures this way).</param>
    public SlotCommandProcessor(TopicNames topics, int replyPartitions, ChangelogCheckpoints checkpoints, ILoggerFactory loggers,
        Func<IKeyValueStore<string, byte[]>, IKeyValueStore<string, byte[]>> storeAccess)
    {
        _storeAccess = storeAccess;
        _topics = topics;
        _replyPartitions = replyPartitions;
        _checkpoints = checkpoints;
        _log = loggers.CreateLogger<SlotCommandProcessor>();
    }

    public void Init(ProcessorContext<string, Outbound> context)
    {
        _context = context;
        _store = _storeAccess((IKeyValueStore<string, byte[]>)context.GetStateStore(TopicNames.SlotStateStore));
        context.Schedule(ExpiryTick, PunctuationType.PROCESSING_TIME, Tick);
    }

    public Record<string, Outbound>? Process(Record<byte[], byte[]> record)
    {
        var position = record.TopicPartitionOffset;
        var partition = position.Partition.Value;
        var offset = position.Offset.Value;
        var timestamp = record.Timestamp.UnixTimestampMs;

        SlotCommand command;
        try
        {
            command = SlotCommand.Parser.ParseFrom(record.Value ?? []);
        }
        catch (InvalidProtocolBufferException e)
        {
            _log.LogWarning("Undecodable command at {Topic}[{Partition}]@{Offset}: {Problem}", position.Topic, partition, offset, e.Message);
            var address = PartialCommand(record.Value ?? []);
            if (address.HasReplyPartition)
                ReplyRejected(address, partition, offset, timestamp, $"command bytes are not a SlotCommand ({e.Message})");
            return null;
        }

        if (_checkpoints.Refusal(partition) is { } refusal)
        {
            // Held back, not answered: its offset is never committed (RebalanceTolerantCommits), so the
            // processor that can restore the partition decides it, in order. An answer now would be
            // one the caller could get contradicted, and an Abandon or Release skipped here would
            // leave capacity held that nobody holds. The gateway answers UNAVAILABLE at its deadline.
            if (_refusedCommands++ % 1000 == 0)
                _log.LogError("Command {CommandId} at {Topic}[{Partition}]@{Offset} held back, not decided ({Refused} so far): {Refusal}",
                    command.CommandId, position.Topic, partition, offset, _refusedCommands, refusal);
            return null;
        }

        if (command.BodyCase == SlotCommand.BodyOneofCase.Reserve && command.DeadlineUnixMs != 0
            && offset >= _checkpoints.TakenOverAt(partition)
            && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() is var now && now > command.DeadlineUnixMs)
        {
            // Its caller was answered UNAVAILABLE at the deadline and the gateway abandons it behind
            // this record: deciding it would book capacity only for the Abandon to free it, at twice
            // the cost, and behind a backlog (after a failover, at 10x) that work is what kept the
            // processor from catching up. Not decided, not answered, nothing stored. The Abandon of
            // an attempt never decided frees nothing (SlotDecisions). Only commands written since
            // this processor took the partition: one written before may have been decided in time
            // and answered by the owner before it, whose state write can be lost with it (SIGKILL
            // between the reply's produce request and the changelog's); skipping it then broke an
            // accept the caller holds, so it is decided again as it was then.
            if (_lateReserves++ % 1000 == 0)
                _log.LogInformation("Reserve {CommandId} at {Topic}[{Partition}]@{Offset} arrived {LateMs} ms after its deadline: not decided, its gateway abandons it ({Late} so far)",
                    command.CommandId, position.Topic, partition, offset, now - command.DeadlineUnixMs, _lateReserves);
            return null;
        }

        var key = record.Key is null ? null : Encoding.UTF8.GetString(record.Key);
        if (command.HasReplyPartition && (command.ReplyPartition < 0 || command.ReplyPartition >= _replyPartitions))
        {
            _log.LogWarning("Command {CommandId} at {Topic}[{Partition}]@{Offset} names reply partition {ReplyPartition}, outside 0..{Last}; not applied",
                command.CommandId, position.Topic, partition, offset, command.ReplyPartition, _replyPartitions - 1);
            return null;
        }
        if (key != command.Slot)
        {
            _log.LogWarning("Command {CommandId} at {Topic}[{Partition}]@{Offset} is for slot {Slot} but keyed {Key}; not applied",
                command.CommandId, position.Topic, partition, offset, command.Slot, key);
            ReplyRejected(command, partition, offset, timestamp,
                $"record key '{key}' differs from the command's slot '{command.Slot}'");
            return null;
        }

        // Only the command can be at fault inside the pure decision: its exception is answered and
        // the command skipped. A store read or write that fails is the infrastructure's: it fails
        // the task, so the command comes again and is answered from state if it was applied.
        var slot = command.Slot;
        Decision decision;
        try
        {
            decision = SlotDecisions.Decide(LoadState(slot), new StoredSlot(this, slot), command, timestamp, partition, offset);
        }
        catch (Exception e) when (e is not SlotStoreException)
        {
            // Decide updates the slot state in place: drop the cached copy, the store has the last good one.
            _states.Remove(slot);
            _log.LogError(e, "Command {CommandId} at {Topic}[{Partition}]@{Offset} for slot {Slot} could not be decided",
                command.CommandId, position.Topic, partition, offset, slot);
            ReplyRejected(command, partition, offset, timestamp, $"the processor could not decide this command ({e.Message})");
            return null;
        }
        catch (SlotStoreException)
        {
            _states.Remove(slot);
            throw;
        }

        if (decision.State is not null)
        {
            try
            {
                Write(slot, decision.State, decision);
            }
            catch (Exception e)
            {
                // Whatever reached the store is undone or completed by the re-delivery (Settle).
                _states.Remove(slot);
                throw new SlotStoreException($"storing the decision of command {command.CommandId} at {position.Topic}[{partition}]@{offset} failed", e);
            }
        }
        if (decision.Reply.Replayed)
        {
            // After a rebalance whole seconds of commands can come again: one line per thousand.
            if (_replayedCommands++ % 1000 == 0)
                _log.LogInformation("Re-delivered command {CommandId} at {Topic}[{Partition}]@{Offset} answered from state ({Replayed} so far)",
                    command.CommandId, position.Topic, partition, offset, _replayedCommands);
        }
        else if (decision.Reply is { Accepted: false, Reason: RejectReason.Invalid or RejectReason.UnknownSlot })
            _log.LogWarning("Command {CommandId} at {Topic}[{Partition}]@{Offset} rejected {Reason}: {Detail}",
                command.CommandId, position.Topic, partition, offset, decision.Reply.Reason, decision.Reply.Detail);

        if (command.HasReplyPartition)
            _context.Forward(command.CorrelationId, new Outbound(_topics.Replies, command.ReplyPartition, timestamp, decision.Reply));
        foreach (var slotEvent in decision.Events)
            _context.Forward(command.Slot, new Outbound(_topics.Events, partition, timestamp, slotEvent));
        if (decision.Snapshot is not null)
            _context.Forward(command.Slot, new Outbound(_topics.Availability, partition, timestamp, decision.Snapshot));
        return null;
    }

    /// <summary>Records and added index keys first, the slot state (with the command's offset) next,
    /// removed index keys last: see Decision.Reservations and IndexChanges.</summary>
    private void Write(string slot, SlotState state, Decision decision)
    {
        foreach (var changed in decision.Reservations)
        {
            var recordKey = RecordKey(slot, changed.ReservationId);
            _store.Put(recordKey, changed.ToByteArray());
            _records[recordKey] = changed;
        }
        var index = decision.Index;
        foreach (var hold in index.HoldsAdded) _store.Put(HoldKey(slot, hold.ExpiresUnixMs, hold.ReservationId), hold.ToByteArray());
        foreach (var mark in index.ExpiredAdded) _store.Put(ExpiredKey(slot, mark.Offset, mark.ReservationId), mark.ToByteArray());
        _store.Put(slot, state.ToByteArray());
        _states[slot] = state;
        foreach (var hold in index.HoldsRemoved) _store.Delete(HoldKey(slot, hold.ExpiresUnixMs, hold.ReservationId));
        foreach (var mark in index.ExpiredRemoved) _store.Delete(ExpiredKey(slot, mark.Offset, mark.ReservationId));
        TrackExpiry(slot, state.NextHoldExpiryUnixMs);
    }

    public void Close()
    {
        // Null when Streamiz closes a processor it never initialised.
        if (_context is not null) _checkpoints.Served.Stopped(_context.Id.Partition);
        _states.Clear();
        _records.Clear();
    }

    /// <summary>Store key of a reservation record; never a valid slot key, so it never meets a slot's own key.</summary>
    public static string RecordKey(string slot, string reservationId) => slot + "|" + reservationId;

    // A slot key is "{hub}@{17-character start}" and a hub has no '@', so "{slot}#..." is never a slot
    // key nor "{some slot}|{id}", whatever the reservation id; and every key that begins with
    // "{slot}#hold|" is one of this slot's hold entries.
    private static string HoldPrefix(string slot) => slot + "#hold|";
    private static string ExpiredPrefix(string slot) => slot + "#expired|";

    /// <summary>Store key of a hold index entry: the slot's held reservations sort by expiry, then id.</summary>
    public static string HoldKey(string slot, long expiresUnixMs, string reservationId) =>
        HoldPrefix(slot) + Digits(expiresUnixMs) + "|" + reservationId;

    /// <summary>Store key of an expired-hold mark: by the offset of the command that expired it, then id.</summary>
    public static string ExpiredKey(string slot, long offset, string reservationId) =>
        ExpiredPrefix(slot) + Digits(offset) + "|" + reservationId;

    // Fixed width, so the keys' byte order is the numbers' order for every non-negative long.
    private static string Digits(long value) => value.ToString("D19", CultureInfo.InvariantCulture);

    /// <summary>The slot's keys other than its state, as the decision reads them. '}' sorts after
    /// '|' and every digit, so it closes a range over a prefix.</summary>
    private sealed class StoredSlot(SlotCommandProcessor processor, string slot) : ISlotReader
    {
        public ReservationRecord? Reservation(string reservationId) => processor.LoadRecord(RecordKey(slot, reservationId));

        public IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs) =>
            processor.Scan(HoldPrefix(slot), HoldPrefix(slot) + Digits(unixMs) + "}", HoldIndexEntry.Parser);

        public IEnumerable<ExpiredHold> ExpiredFrom(long offset) =>
            processor.Scan(ExpiredPrefix(slot) + Digits(offset), ExpiredPrefix(slot) + "}", ExpiredHold.Parser);
    }

    /// <summary>Values of the keys from <paramref name="from"/> to <paramref name="to"/> (inclusive), in byte order, read lazily.</summary>
    private IEnumerable<T> Scan<T>(string from, string to, MessageParser<T> parser) where T : IMessage<T>
    {
        using var range = Read(from, () => _store.Range(from, to));
        while (Read(from, range.MoveNext))
            if (range.Current is { Value: { } bytes }) yield return Read(from, () => parser.ParseFrom(bytes));
    }

    private SlotState? LoadState(string slot)
    {
        if (_states.TryGetValue(slot, out var cached)) return cached;
        if (_states.Count >= MaxCached) _states.Clear();
        return Read(slot, () => _store.Get(slot) is { } bytes ? SlotState.Parser.ParseFrom(bytes) : null);
    }

    private ReservationRecord? LoadRecord(string key)
    {
        if (_records.TryGetValue(key, out var cached)) return cached;
        if (_records.Count >= MaxCached) _records.Clear();
        if (Read(key, () => _store.Get(key) is { } bytes ? ReservationRecord.Parser.ParseFrom(bytes) : null) is not { } record) return null;
        _records[key] = record;
        return record;
    }

    /// <summary>A store read: whatever goes wrong in it (RocksDB, a value that does not parse) is the store's failure.</summary>
    private static T Read<T>(string key, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e)
        {
            throw new SlotStoreException($"reading key '{key}' of the slot-state store failed", e);
        }
    }

    private void ReplyRejected(SlotCommand address, int partition, long offset, long timestamp, string detail,
        RejectReason reason = RejectReason.Invalid)
    {
        if (!address.HasReplyPartition || address.ReplyPartition < 0 || address.ReplyPartition >= _replyPartitions) return;
        var reply = new SlotReply
        {
            CorrelationId = address.CorrelationId,
            CommandId = address.CommandId,
            Slot = address.Slot,
            Reason = reason,
            Detail = detail,
            Status = ReservationStatus.Rejected,
            CommandPartition = partition,
            CommandOffset = offset,
        };
        _context.Forward(address.CorrelationId, new Outbound(_topics.Replies, address.ReplyPartition, timestamp, reply));
    }

    /// <summary>
    /// The envelope fields that can be read before the bytes go bad, so that a corrupt command
    /// whose reply address survived still gets its INVALID reply.
    /// </summary>
    private static SlotCommand PartialCommand(byte[] bytes)
    {
        var address = new SlotCommand();
        var input = new CodedInputStream(bytes);
        try
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case SlotCommand.CommandIdFieldNumber: address.CommandId = input.ReadString(); break;
                    case SlotCommand.SlotFieldNumber: address.Slot = input.ReadString(); break;
                    case SlotCommand.ReplyPartitionFieldNumber: address.ReplyPartition = input.ReadInt32(); break;
                    case SlotCommand.CorrelationIdFieldNumber: address.CorrelationId = input.ReadString(); break;
                    default: input.SkipLastField(); break;
                }
            }
        }
        catch (InvalidProtocolBufferException)
        {
            // Keep what was read before the damage.
        }
        return address;
    }

    private void TrackExpiry(string slot, long nextExpiry)
    {
        if (_nextExpiry is null) return;
        if (nextExpiry == 0)
        {
            _nextExpiry.Remove(slot);
            _expiryRequestedAt.Remove(slot);
        }
        else
        {
            _nextExpiry[slot] = nextExpiry;
        }
    }

    /// <summary>The task's wall-clock tick: hold expiries due, and the running task's checkpoint.</summary>
    private void Tick(long now)
    {
        if (_checkpoints.Refusal(_context.Id.Partition) is not null) return;
        RequestDueExpiries(now);
        if (now - _checkpointedAt < CheckpointInterval.TotalMilliseconds) return;
        _checkpointedAt = now;
        _checkpoints.CheckpointRunning(_context.Id);
    }

    private void RequestDueExpiries(long now)
    {
        if (_nextExpiry is null)
        {
            _nextExpiry = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var (key, bytes) in _store.All())
            {
                // Most keys are records and index entries: only a key with '@' 18 characters from its
                // end can be a slot key, which saves parsing a date for the others.
                if (key.Length < 19 || key[^18] != '@' || !SlotKey.TryParse(key, out _)) continue;
                var state = SlotState.Parser.ParseFrom(bytes);
                if (state.NextHoldExpiryUnixMs > 0) _nextExpiry[key] = state.NextHoldExpiryUnixMs;
            }
        }
        foreach (var (slot, expiry) in _nextExpiry)
        {
            if (expiry > now) continue;
            if (_expiryRequestedAt.TryGetValue(slot, out var asked) && now - asked < ExpiryRetry.TotalMilliseconds) continue;
            _expiryRequestedAt[slot] = now;
            var command = new SlotCommand { CommandId = $"expire-holds:{slot}:{now}", Slot = slot, ExpireHolds = new ExpireHolds() };
            _context.Forward(slot, new Outbound(_topics.Commands, _context.Id.Partition, now, command));
        }
    }
}

/// <summary>The slot-state store failed to read or write: the task fails and the command comes
/// again, instead of being answered and skipped.</summary>
public sealed class SlotStoreException(string message, Exception inner) : Exception(message, inner);
