using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Streamiz.Kafka.Net;
using Streamiz.Kafka.Net.Kafka;
using Streamiz.Kafka.Net.Metrics;

namespace SlotCapacity.Processor;

/// <summary>
/// Streamiz's Kafka clients, except that an offset commit answered REBALANCE_IN_PROGRESS (or
/// ILLEGAL_GENERATION, see <see cref="Consumer.Commit(IEnumerable{TopicPartitionOffset})"/>) is skipped
/// instead of failing. Streamiz turns every failed commit into "this thread was fenced": it closes
/// every task and rejoins the group, which is a second rebalance, so a processor that survives a
/// crash of its peer went dark too. That answer only means a rebalance is under way (the local
/// cluster gives it for the whole join phase); the member is still in the group. A skipped commit
/// widens the re-delivery window, and re-delivered commands are answered from state (each slot
/// stores the offset of the last command it applied); the next commit covers the skipped offsets.
/// Its polls also wait longer once a poll found nothing (see <see cref="Consumer.Consume(TimeSpan)"/>),
/// and it never commits the offsets of a command partition this processor refused
/// (<see cref="ChangelogCheckpoints"/>): those commands are decided by the processor that can restore it.
/// It also tells which command partitions the stream thread is assigned, for the processor's readiness.
/// </summary>
public sealed class RebalanceTolerantCommits : IKafkaSupplier
{
    private readonly DefaultKafkaClientSupplier _clients;
    private readonly ILogger _log;
    private readonly Func<TopicPartitionOffset, bool> _heldBack;
    private readonly string _commandsTopic;
    // The stream thread's consumer is Streamiz's to close; only its assignment is read here.
    private Func<List<TopicPartition>> _assignment = () => [];

    /// <param name="commandsTopic">the topic whose partitions <paramref name="checkpoints"/> may refuse</param>
    public RebalanceTolerantCommits(IStreamConfig config, ILoggerFactory loggers, ChangelogCheckpoints checkpoints, string commandsTopic)
    {
        ArgumentNullException.ThrowIfNull(loggers);
        ArgumentNullException.ThrowIfNull(checkpoints);
        _clients = new DefaultKafkaClientSupplier(new KafkaLoggerAdapter(config), config);
        _log = loggers.CreateLogger<RebalanceTolerantCommits>();
        _heldBack = offset => offset.Topic == commandsTopic && checkpoints.Refusal(offset.Partition.Value) is not null;
        _commandsTopic = commandsTopic;
    }

    /// <summary>The command partitions the stream thread's consumer is assigned now; none before it
    /// exists or once it is closed.</summary>
    public IReadOnlyList<int> AssignedCommandPartitions()
    {
        try
        {
            return _assignment().Where(p => p.Topic == _commandsTopic).Select(p => p.Partition.Value).ToList();
        }
        catch (ObjectDisposedException)
        {
            return [];
        }
    }

    public StreamMetricsRegistry MetricsRegistry
    {
        get => _clients.MetricsRegistry;
        set => _clients.MetricsRegistry = value;
    }

    public IConsumer<byte[], byte[]> GetConsumer(ConsumerConfig config, IConsumerRebalanceListener rebalanceListener)
    {
        var consumer = new Consumer(_clients.GetConsumer(config, rebalanceListener), _log, _heldBack);
        _assignment = () => consumer.Assignment;
        return consumer;
    }

    public IProducer<byte[], byte[]> GetProducer(ProducerConfig config) => _clients.GetProducer(config);

    public IConsumer<byte[], byte[]> GetRestoreConsumer(ConsumerConfig config) => _clients.GetRestoreConsumer(config);

    public IAdminClient GetAdmin(AdminClientConfig config) => _clients.GetAdmin(config);

    public IConsumer<byte[], byte[]> GetGlobalConsumer(ConsumerConfig config) => _clients.GetGlobalConsumer(config);

    /// <summary>The stream thread's consumer: every call goes to Streamiz's, commits tolerate a rebalance
    /// and leave out the offsets <paramref name="heldBack"/> names.</summary>
    private sealed class Consumer(IConsumer<byte[], byte[]> inner, ILogger log, Func<TopicPartitionOffset, bool> heldBack) : IConsumer<byte[], byte[]>
    {
        /// <summary>How long a poll waits once the previous one found nothing.</summary>
        internal static readonly TimeSpan IdleWait = TimeSpan.FromMilliseconds(100);

        private bool _idle;

        /// <summary>
        /// Streamiz polls every PollMs (2 ms, so that a batch is cut short for the checkout path) and,
        /// after an empty poll, with a timeout computed from what is left of its window, which can come
        /// out negative: librdkafka then waits until a record arrives, and punctuation (hold expiry)
        /// and commits stall meanwhile. An idle thread woke 500 times a second. librdkafka returns the
        /// moment a record arrives, so waiting longer once a poll found nothing costs no latency; it
        /// only bounds how late a commit or punctuation check runs while idle.
        /// </summary>
        public ConsumeResult<byte[], byte[]> Consume(TimeSpan timeout)
        {
            var result = inner.Consume(_idle || timeout < TimeSpan.Zero ? IdleWait : timeout);
            _idle = result is null;
            return result!;
        }

        public void Commit(IEnumerable<TopicPartitionOffset> offsets)
        {
            var committed = offsets.Where(o => !heldBack(o)).ToList();
            if (committed.Count == 0) return;
            try
            {
                inner.Commit(committed);
            }
            catch (KafkaException e) when (e.Error.Code is ErrorCode.RebalanceInProgress or ErrorCode.IllegalGeneration)
            {
                // ILLEGAL_GENERATION too: with incremental rebalances a member keeps committing while it
                // rejoins, and a commit sent just before its new generation arrived is refused so.
                // librdkafka itself tells the two apart: unless a rebalance is under way it treats the
                // answer as this member being out of the group and revokes every partition as lost,
                // which closes the tasks through Streamiz's revoke handler. Failing here as well would
                // close every task of a member that is still in the group.
                log.LogInformation("Offset commit skipped ({Reason}) while the group rebalances; the next commit covers it", e.Error.Code);
            }
        }

        public List<TopicPartitionOffset> Commit() => inner.Commit();
        public void Commit(ConsumeResult<byte[], byte[]> result) => inner.Commit(result);
        public ConsumeResult<byte[], byte[]> Consume(int millisecondsTimeout) => inner.Consume(millisecondsTimeout);
        public ConsumeResult<byte[], byte[]> Consume(CancellationToken cancellationToken = default) => inner.Consume(cancellationToken);
        public void Subscribe(IEnumerable<string> topics) => inner.Subscribe(topics);
        public void Subscribe(string topic) => inner.Subscribe(topic);
        public void Unsubscribe() => inner.Unsubscribe();
        public void Assign(TopicPartition partition) => inner.Assign(partition);
        public void Assign(TopicPartitionOffset partition) => inner.Assign(partition);
        public void Assign(IEnumerable<TopicPartitionOffset> partitions) => inner.Assign(partitions);
        public void Assign(IEnumerable<TopicPartition> partitions) => inner.Assign(partitions);
        public void IncrementalAssign(IEnumerable<TopicPartitionOffset> partitions) => inner.IncrementalAssign(partitions);
        public void IncrementalAssign(IEnumerable<TopicPartition> partitions) => inner.IncrementalAssign(partitions);
        public void IncrementalUnassign(IEnumerable<TopicPartition> partitions) => inner.IncrementalUnassign(partitions);
        public void Unassign() => inner.Unassign();
        public void StoreOffset(ConsumeResult<byte[], byte[]> result) => inner.StoreOffset(result);
        public void StoreOffset(TopicPartitionOffset offset) => inner.StoreOffset(offset);
        public void Seek(TopicPartitionOffset offset) => inner.Seek(offset);
        public void Pause(IEnumerable<TopicPartition> partitions) => inner.Pause(partitions);
        public void Resume(IEnumerable<TopicPartition> partitions) => inner.Resume(partitions);
        public List<TopicPartitionOffset> Committed(TimeSpan timeout) => inner.Committed(timeout);
        public List<TopicPartitionOffset> Committed(IEnumerable<TopicPartition> partitions, TimeSpan timeout) => inner.Committed(partitions, timeout);
        public Offset Position(TopicPartition partition) => inner.Position(partition);
        public List<TopicPartitionOffset> OffsetsForTimes(IEnumerable<TopicPartitionTimestamp> timestampsToSearch, TimeSpan timeout) =>
            inner.OffsetsForTimes(timestampsToSearch, timeout);
        public WatermarkOffsets GetWatermarkOffsets(TopicPartition topicPartition) => inner.GetWatermarkOffsets(topicPartition);
        public WatermarkOffsets QueryWatermarkOffsets(TopicPartition topicPartition, TimeSpan timeout) => inner.QueryWatermarkOffsets(topicPartition, timeout);
        public void Close() => inner.Close();
        public string MemberId => inner.MemberId;
        public List<TopicPartition> Assignment => inner.Assignment;
        public List<string> Subscription => inner.Subscription;
        public IConsumerGroupMetadata ConsumerGroupMetadata => inner.ConsumerGroupMetadata;
        public Handle Handle => inner.Handle;
        public string Name => inner.Name;
        public int AddBrokers(string brokers) => inner.AddBrokers(brokers);
        public void SetSaslCredentials(string username, string password) => inner.SetSaslCredentials(username, password);
        public void Dispose() => inner.Dispose();
    }
}
