using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace SlotCapacity.Kafka;

/// <summary>
/// librdkafka's mock cluster, hosted in this process: brokers listening on loopback TCP ports that
/// any process can connect to. It keeps everything in memory and has no admin API, so topics are
/// created here, before any client uses them.
/// </summary>
public sealed class LocalCluster : IDisposable
{
    private readonly IntPtr _handle;
    private readonly IntPtr _cluster;
    private readonly Lock _gate = new();
    private bool _disposed;
    private bool _countingRequests;

    public string BootstrapServers { get; }
    public int Brokers { get; }

    private LocalCluster(IntPtr handle, IntPtr cluster, int brokers)
    {
        _handle = handle;
        _cluster = cluster;
        Brokers = brokers;
        BootstrapServers = Marshal.PtrToStringAnsi(Native.rd_kafka_mock_cluster_bootstraps(cluster))
            ?? throw new InvalidOperationException("the mock cluster returned no bootstrap list");
    }

    /// <summary>How long a new group waits for more members before its first generation.</summary>
    public const int InitialRebalanceDelayMs = 500;

    /// <param name="brokers">mock brokers to start</param>
    /// <param name="debug">librdkafka debug contexts (e.g. "cgrp,mock") the mock logs to stderr; none when null</param>
    public static LocalCluster Start(int brokers = 3, string? debug = null)
    {
        if (brokers < 1) throw new ArgumentOutOfRangeException(nameof(brokers), brokers, "a cluster needs at least one broker");
        var conf = Native.rd_kafka_conf_new();
        var error = new byte[512];
        // The handle only anchors the mock cluster; it never produces. Quiet its logs unless asked.
        var settings = new List<(string Name, string Value)> { ("log_level", string.IsNullOrEmpty(debug) ? "3" : "7") };
        if (!string.IsNullOrEmpty(debug)) settings.Add(("debug", debug));
        foreach (var (name, value) in settings)
        {
            if (Native.rd_kafka_conf_set(conf, name, value, error, (UIntPtr)error.Length) != 0)
                throw new StartupException($"cannot configure the local cluster: {name}={value}: {Text(error)}");
        }
        var handle = Native.rd_kafka_new(0, conf, error, (UIntPtr)error.Length);
        if (handle == IntPtr.Zero)
            throw new StartupException($"cannot start the local cluster: rd_kafka_new failed ({Text(error)})");
        var cluster = Native.rd_kafka_mock_cluster_new(handle, brokers);
        if (cluster == IntPtr.Zero)
        {
            Native.rd_kafka_destroy(handle);
            throw new StartupException("cannot start the local cluster: rd_kafka_mock_cluster_new failed (no free loopback ports?)");
        }
        // The mock waits group.initial.rebalance.delay.ms (3 s) before answering a new group's first
        // JoinGroup, but expires a member that has been silent for its session timeout, checked every
        // second: a member waiting for that answer sends no heartbeats. With the 2 s processor session
        // of `make run`, the first processor to join was dropped with its JoinGroup unanswered, and
        // sat without partitions until librdkafka gave up on the request (minutes). 500 ms is below
        // any session timeout the project uses and still lets members that start together meet.
        Native.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, InitialRebalanceDelayMs);
        return new LocalCluster(handle, cluster, brokers);
    }

    public void CreateTopics(IEnumerable<TopicSpec> topics)
    {
        ArgumentNullException.ThrowIfNull(topics);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var topic in topics)
            {
                var replication = Math.Min(3, Brokers);
                var err = Native.rd_kafka_mock_topic_create(_cluster, topic.Name, topic.Partitions, replication);
                if (err != 0)
                    throw new StartupException($"cannot create topic '{topic.Name}' on the local cluster: {ErrorName(err)}");
            }
        }
    }

    /// <summary>Fault injection: the broker stops answering (ids are 1..Brokers).</summary>
    public void SetBrokerDown(int brokerId) => Mock(() => Native.rd_kafka_mock_broker_set_down(_cluster, brokerId), $"set broker {brokerId} down");

    public void SetBrokerUp(int brokerId) => Mock(() => Native.rd_kafka_mock_broker_set_up(_cluster, brokerId), $"set broker {brokerId} up");

    /// <summary>Fault injection: adds round-trip time to every request the broker answers.</summary>
    public void SetBrokerRtt(int brokerId, int rttMs) => Mock(() => Native.rd_kafka_mock_broker_set_rtt(_cluster, brokerId, rttMs), $"set broker {brokerId} rtt");

    /// <summary>Fault injection: the next <paramref name="count"/> requests of Kafka API <paramref name="apiKey"/>
    /// (0 = Produce), to whichever broker, are answered with error code <paramref name="error"/>.</summary>
    public void PushRequestErrors(short apiKey, int error, int count) => Mock(() =>
    {
        Native.rd_kafka_mock_push_request_errors_array(_cluster, apiKey, (UIntPtr)count, Enumerable.Repeat(error, count).ToArray());
        return 0;
    }, $"push {count} errors {error} for API {apiKey}");

    /// <summary>Moves a partition's leadership, as a controlled broker restart does.</summary>
    public void SetPartitionLeader(string topic, int partition, int brokerId) =>
        Mock(() => Native.rd_kafka_mock_partition_set_leader(_cluster, topic, partition, brokerId), $"move {topic}[{partition}] to broker {brokerId}");

    /// <summary>
    /// Removes a partition's records before <paramref name="beforeOffset"/> (its start offset moves there), as
    /// retention does on a real broker. The caller makes sure the offset is past the current start.
    /// </summary>
    public void DeleteRecords(string topic, int partition, long beforeOffset) =>
        Mock(() => Native.rd_kafka_mock_partition_delete_records(_cluster, topic, partition, beforeOffset), $"delete {topic}[{partition}] before offset {beforeOffset}");

    /// <summary>
    /// The requests the cluster received since the previous call, per broker and Kafka API key (1 = Fetch),
    /// the cost that matters on the local cluster. The first call starts counting and returns nothing:
    /// the mock keeps every request it counts until the next call takes them. Requests that arrive while
    /// one call takes them may go uncounted.
    /// </summary>
    public IReadOnlyDictionary<(int Broker, short ApiKey), int> TakeRequestCounts()
    {
        var counts = new Dictionary<(int Broker, short ApiKey), int>();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_countingRequests)
            {
                Native.rd_kafka_mock_start_request_tracking(_cluster);
                _countingRequests = true;
                return counts;
            }
            var requests = Native.rd_kafka_mock_get_requests(_cluster, out var count);
            Native.rd_kafka_mock_clear_requests(_cluster);
            for (var i = 0; i < (int)count; i++)
            {
                var request = Marshal.ReadIntPtr(requests, i * IntPtr.Size);
                var key = (Native.rd_kafka_mock_request_id(request), Native.rd_kafka_mock_request_api_key(request));
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
            if (requests != IntPtr.Zero) Native.rd_kafka_mock_request_destroy_array(requests, count);
        }
        return counts;
    }

    /// <summary>Calls the mock API under the lock that Dispose takes, so it never reaches a destroyed cluster.</summary>
    private void Mock(Func<int> call, string what)
    {
        int err;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            err = call();
        }
        if (err != 0) throw new InvalidOperationException($"local cluster: cannot {what}: {ErrorName(err)}");
    }

    private static string Text(byte[] buffer)
    {
        var end = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, end < 0 ? buffer.Length : end);
    }

    private static string ErrorName(int err) => Marshal.PtrToStringAnsi(Native.rd_kafka_err2str(err)) ?? $"error {err}";

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            Native.rd_kafka_mock_cluster_destroy(_cluster);
            Native.rd_kafka_destroy(_handle);
        }
    }

    /// <summary>The librdkafka file to host the mock in, instead of Confluent.Kafka's.</summary>
    public const string LibraryVariable = "LOCAL_CLUSTER_LIBRDKAFKA";

    /// <summary>The librdkafka version the mock runs on, and the file when <see cref="LibraryVariable"/> chose it.</summary>
    public static string LibraryDescription =>
        (Marshal.PtrToStringAnsi(Native.rd_kafka_version_str()) ?? "unknown version") +
        (Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } chosen ? $" from {Path.GetFileName(chosen)}" : " (Confluent.Kafka's)");

    private static class Native
    {
        private const string Library = "librdkafka";

        static Native() => NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve);

        /// <summary>
        /// <see cref="LibraryVariable"/> first when set (`make run` builds a mock whose fetches do not walk
        /// every batch, compose/LocalCluster/mock/build.sh). Else Confluent.Kafka's: librdkafka.so needs
        /// libsasl2.so.3, which a bare machine lacks; Confluent.Kafka then falls back to the CentOS 8
        /// build, which links it statically. Resolve the same way.
        /// </summary>
        private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name != Library) return IntPtr.Zero;
            if (Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } chosen)
            {
                if (!File.Exists(chosen))
                    throw new StartupException($"{LibraryVariable} names {chosen}, which does not exist: build it with compose/LocalCluster/mock/build.sh, or unset the variable");
                return NativeLibrary.Load(Path.GetFullPath(chosen));
            }
            var candidates = new List<string>();
            foreach (var root in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(Confluent.Kafka.Library).Assembly.Location) ?? "" })
            {
                var dir = Path.Combine(root, "runtimes", "linux-x64", "native");
                candidates.Add(Path.Combine(dir, "librdkafka.so"));
                candidates.Add(Path.Combine(dir, "centos8-librdkafka.so"));
                candidates.Add(Path.Combine(root, "librdkafka.so"));
            }
            foreach (var candidate in candidates)
            {
                if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle)) return handle;
            }
            throw new StartupException(
                $"cannot load librdkafka for the local cluster (tried {string.Join(", ", candidates)}): build the project so runtimes/linux-x64/native is copied next to it");
        }

        [DllImport(Library)] public static extern IntPtr rd_kafka_version_str();
        [DllImport(Library)] public static extern IntPtr rd_kafka_conf_new();
        [DllImport(Library)] public static extern int rd_kafka_conf_set(IntPtr conf, string name, string value, byte[] errstr, UIntPtr errstrSize);
        [DllImport(Library)] public static extern IntPtr rd_kafka_new(int type, IntPtr conf, byte[] errstr, UIntPtr errstrSize);
        [DllImport(Library)] public static extern void rd_kafka_destroy(IntPtr rk);
        [DllImport(Library)] public static extern IntPtr rd_kafka_err2str(int err);
        [DllImport(Library)] public static extern IntPtr rd_kafka_mock_cluster_new(IntPtr rk, int brokerCount);
        [DllImport(Library)] public static extern void rd_kafka_mock_cluster_destroy(IntPtr cluster);
        [DllImport(Library)] public static extern void rd_kafka_mock_group_initial_rebalance_delay_ms(IntPtr cluster, int delayMs);
        [DllImport(Library)] public static extern IntPtr rd_kafka_mock_cluster_bootstraps(IntPtr cluster);
        [DllImport(Library)] public static extern int rd_kafka_mock_topic_create(IntPtr cluster, string topic, int partitions, int replicationFactor);
        [DllImport(Library)] public static extern int rd_kafka_mock_broker_set_down(IntPtr cluster, int brokerId);
        [DllImport(Library)] public static extern int rd_kafka_mock_broker_set_up(IntPtr cluster, int brokerId);
        [DllImport(Library)] public static extern int rd_kafka_mock_broker_set_rtt(IntPtr cluster, int brokerId, int rttMs);
        [DllImport(Library)] public static extern void rd_kafka_mock_push_request_errors_array(IntPtr cluster, short apiKey, UIntPtr count, int[] errors);
        [DllImport(Library)] public static extern int rd_kafka_mock_partition_set_leader(IntPtr cluster, string topic, int partition, int brokerId);
        [DllImport(Library)] public static extern int rd_kafka_mock_partition_delete_records(IntPtr cluster, string topic, int partition, long beforeOffset);
        [DllImport(Library)] public static extern void rd_kafka_mock_start_request_tracking(IntPtr cluster);
        [DllImport(Library)] public static extern IntPtr rd_kafka_mock_get_requests(IntPtr cluster, out UIntPtr count);
        [DllImport(Library)] public static extern void rd_kafka_mock_clear_requests(IntPtr cluster);
        [DllImport(Library)] public static extern int rd_kafka_mock_request_id(IntPtr request);
        [DllImport(Library)] public static extern short rd_kafka_mock_request_api_key(IntPtr request);
        [DllImport(Library)] public static extern void rd_kafka_mock_request_destroy_array(IntPtr requests, UIntPtr count);
    }
}
