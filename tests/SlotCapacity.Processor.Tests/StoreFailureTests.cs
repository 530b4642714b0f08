using SlotCapacity.Contracts;
using SlotCapacity.Domain;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.State;
using Streamiz.Kafka.Net.State.Enumerator;
using Xunit;
using static SlotCapacity.Processor.Tests.Commands;

namespace SlotCapacity.Processor.Tests;

/// <summary>
/// A failing slot-state store (RocksDB, say) must fail the command, not answer and skip it: a
/// command without a reply (Abandon, ExpireHolds) would otherwise lose its effect silently.
/// </summary>
public sealed class StoreFailureTests : IDisposable
{
    private readonly TopologyDriver _ttd;
    private FailingStore? _store;

    public StoreFailureTests() => _ttd = new TopologyDriver(store => _store = new FailingStore(store));

    public void Dispose() => _ttd.Dispose();

    private void Send(SlotCommand command) => _ttd.Send(command);

    private long UsedVans(string slot) =>
        SlotState.Parser.ParseFrom(_ttd.Driver.GetKeyValueStore<string, byte[]>(TopicNames.SlotStateStore).Get(slot)).FleetUsed.GetValueOrDefault("vans");

    [Fact]
    public void An_Abandon_whose_slot_state_write_fails_fails_the_task_and_frees_the_capacity_when_it_comes_again()
    {
        var slot = Slot();
        Send(Configure(slot, Config(vans: 1)));
        Send(Reserve(slot, "r1"));
        Assert.Equal(1, UsedVans(slot));
        _ttd.Replies.ReadKeyValueList();

        var abandon = Envelope(slot, "abandon-r1", replyPartition: null, c => c.Abandon = new Abandon { ReservationId = "r1" });
        _store!.FailNextPutOf(slot);
        var failure = Assert.ThrowsAny<Exception>(() => Send(abandon));
        Assert.Contains(failure.FlattenMessages(), m => m.Contains("storing the decision of command abandon-r1", StringComparison.Ordinal));
        // Not answered, not applied: the record written before the state is undone by the next decision.
        Assert.Empty(_ttd.Replies.ReadKeyValueList());
        Assert.Equal(1, UsedVans(slot));

        // The broker delivers it again (at-least-once: its offset was never committed).
        Send(abandon);
        Assert.Equal(0, UsedVans(slot));
        Assert.Equal(0, _ttd.Availability.ReadKeyValueList().Last().Message.Value.Fleet.Single().UsedOrders);
        Send(Reserve(slot, "r2"));
        Assert.True(_ttd.Replies.ReadKeyValueList().Single().Message.Value.Accepted);
    }

    [Fact]
    public void An_Abandon_whose_store_read_fails_is_not_answered_and_skipped_so_the_late_Reserve_still_finds_it()
    {
        var slot = Slot();
        Send(Configure(slot, Config(vans: 1)));
        _ttd.Replies.ReadKeyValueList();

        // The gateway gave up on r1 before its Reserve arrived; reading r1's record fails.
        var abandon = Envelope(slot, "abandon-r1", replyPartition: null, c => c.Abandon = new Abandon { ReservationId = "r1" });
        _store!.FailNextGetOf(SlotCommandProcessor.RecordKey(slot, "r1"));
        var failure = Assert.ThrowsAny<Exception>(() => Send(abandon));
        Assert.Contains(failure.FlattenMessages(), m => m.Contains("reading key", StringComparison.Ordinal));

        Send(abandon);
        Send(Reserve(slot, "r1"));
        var late = _ttd.Replies.ReadKeyValueList().Single().Message.Value;
        Assert.Equal((false, ReservationStatus.Abandoned), (late.Accepted, late.Status));
        Assert.Equal(0, UsedVans(slot));
    }

    /// <summary>The task's store, failing once on the put or get of one key, as RocksDB would on a full disk.</summary>
    private sealed class FailingStore(IKeyValueStore<string, byte[]> inner) : IKeyValueStore<string, byte[]>
    {
        private string? _failPut;
        private string? _failGet;

        public void FailNextPutOf(string key) => _failPut = key;
        public void FailNextGetOf(string key) => _failGet = key;

        public void Put(string key, byte[] value)
        {
            if (key == _failPut)
            {
                _failPut = null;
                throw new IOException($"injected: put of '{key}' failed");
            }
            inner.Put(key, value);
        }

        public byte[] Get(string key)
        {
            if (key == _failGet)
            {
                _failGet = null;
                throw new IOException($"injected: get of '{key}' failed");
            }
            return inner.Get(key);
        }

        public string Name => inner.Name;
        public bool Persistent => inner.Persistent;
        public bool IsLocally => inner.IsLocally;
        public bool IsOpen => inner.IsOpen;
        public void Init(ProcessorContext context, IStateStore root) => inner.Init(context, root);
        public void Flush() => inner.Flush();
        public void Close() => inner.Close();
        public void PutAll(IEnumerable<KeyValuePair<string, byte[]>> entries) => inner.PutAll(entries);
        public byte[] PutIfAbsent(string key, byte[] value) => inner.PutIfAbsent(key, value);
        public byte[] Delete(string key) => inner.Delete(key);
        public IKeyValueEnumerator<string, byte[]> Range(string from, string to) => inner.Range(from, to);
        public IKeyValueEnumerator<string, byte[]> ReverseRange(string from, string to) => inner.ReverseRange(from, to);
        public IEnumerable<KeyValuePair<string, byte[]>> All() => inner.All();
        public IEnumerable<KeyValuePair<string, byte[]>> ReverseAll() => inner.ReverseAll();
        public long ApproximateNumEntries() => inner.ApproximateNumEntries();
    }
}

internal static class ExceptionMessages
{
    /// <summary>The messages of an exception and every inner one (the test driver may wrap what the processor threw).</summary>
    public static IEnumerable<string> FlattenMessages(this Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException) yield return x.Message;
    }
}
