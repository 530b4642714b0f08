using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Crosscutting;
using Streamiz.Kafka.Net.Processors.Internal;
using Streamiz.Kafka.Net.Processors;
using Streamiz.Kafka.Net.State;
using Streamiz.Kafka.Net.State.Enumerator;
using Streamiz.Kafka.Net.State.Supplier;

namespace SlotCapacity.Processor;

/// <summary>
/// The `slot-state` RocksDB store, flushed only when its checkpoint is written. Streamiz flushes every
/// task's memtable to a new SST file on every commit (once a second per task: most of a processor's
/// RocksDB work at nominal load), yet writes a checkpoint of a running task never (see
/// <see cref="ChangelogCheckpoints.CheckpointRunning"/>), only when it closes it. The commit-time flush
/// buys nothing: the changelog, not the local files, is what a restore trusts, and the local files
/// only have to be at least as new as their checkpoint. So <see cref="Flush"/> is deferred and
/// <see cref="ChangelogCheckpoints"/> flushes right before it writes a checkpoint, as Kafka Streams does
/// since 2.7 (KAFKA-9450). After a crash the memtable is lost (Streamiz writes no WAL) and the restore
/// replays the changelog from the last checkpoint, whose records are whole values: replaying them
/// over newer files gives the same state.
/// </summary>
public sealed class SlotStateStoreSupplier(string name, ChangelogCheckpoints checkpoints) : IKeyValueBytesStoreSupplier
{
    public string Name { get; set; } = name;

    public string MetricsScope => "rocksdb";

    public IKeyValueStore<Bytes, byte[]> Get() => new DeferredFlushStore(new RocksDbKeyValueStore(Name, MetricsScope), checkpoints);
}

/// <summary>A RocksDB store whose Flush waits for the checkpoint (see <see cref="SlotStateStoreSupplier"/>).</summary>
public sealed class DeferredFlushStore(RocksDbKeyValueStore rocks, ChangelogCheckpoints checkpoints) : IKeyValueStore<Bytes, byte[]>
{
    private TaskId? _task;
    private volatile bool _written;

    /// <summary>Whether anything was written since the last call; clears the mark.</summary>
    internal bool TakeWritten()
    {
        var written = _written;
        _written = false;
        return written;
    }

    /// <summary>Sets the mark again: a checkpoint taken with <see cref="TakeWritten"/> was not written.</summary>
    internal void MarkWritten() => _written = true;

    public string Name => rocks.Name;
    public bool Persistent => rocks.Persistent;
    public bool IsLocally => rocks.IsLocally;
    public bool IsOpen => rocks.IsOpen;

    public void Init(ProcessorContext context, IStateStore root)
    {
        ArgumentNullException.ThrowIfNull(context);
        rocks.Init(context, root);
        _task = context.Id;
        checkpoints.Track(context.Id, this);
    }

    /// <summary>Streamiz's commit-time flush: deferred until the checkpoint.</summary>
    public void Flush()
    {
    }

    /// <summary>Moves the memtable to disk, so that a checkpoint written next is not newer than the files.</summary>
    internal void FlushForCheckpoint()
    {
        if (rocks.IsOpen) rocks.Flush();
    }

    public void Close()
    {
        // RocksDB flushes on close when its WAL is off, so the files are at least as new as any checkpoint.
        if (_task is { } task) checkpoints.Untrack(task, this);
        rocks.Close();
    }

    public byte[] Get(Bytes key) => rocks.Get(key);
    public IKeyValueEnumerator<Bytes, byte[]> Range(Bytes from, Bytes to) => rocks.Range(from, to);
    public IKeyValueEnumerator<Bytes, byte[]> ReverseRange(Bytes from, Bytes to) => rocks.ReverseRange(from, to);
    public IEnumerable<KeyValuePair<Bytes, byte[]>> All() => rocks.All();
    public IEnumerable<KeyValuePair<Bytes, byte[]>> ReverseAll() => rocks.ReverseAll();
    public long ApproximateNumEntries() => rocks.ApproximateNumEntries();

    public void Put(Bytes key, byte[] value)
    {
        _written = true;
        rocks.Put(key, value);
    }

    public byte[] PutIfAbsent(Bytes key, byte[] value)
    {
        _written = true;
        return rocks.PutIfAbsent(key, value);
    }

    public void PutAll(IEnumerable<KeyValuePair<Bytes, byte[]>> entries)
    {
        _written = true;
        rocks.PutAll(entries);
    }

    public byte[] Delete(Bytes key)
    {
        _written = true;
        return rocks.Delete(key);
    }
}
