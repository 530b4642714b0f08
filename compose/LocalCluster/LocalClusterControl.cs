using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

/// <summary>
/// Fault injection into the running local cluster from other processes (the fault suite): the mock
/// cluster's API is in-process only. Plain HTTP on 127.0.0.1, its address written to a file in the
/// run directory; it can only do what a broker outage or a controlled restart does anyway.
///   POST /brokers/{id}/down, POST /brokers/{id}/up
///   POST /leaders?broker=ID   (every partition of every topic; &amp;topic=NAME for one topic, &amp;partition=N for one partition)
///   GET /requests             (requests received since the previous GET, one line per broker and API: `broker 1 Fetch 1234`;
///                              the first GET starts counting; for measurements, e.g. a consumer's fetches per second)
/// </summary>
internal sealed class LocalClusterControl : IDisposable
{
    private readonly LocalCluster _cluster;
    private readonly IReadOnlyDictionary<string, int> _partitions;
    private readonly ILogger _log;
    private readonly HttpListener _listener = new();

    private LocalClusterControl(LocalCluster cluster, IReadOnlyDictionary<string, int> partitions, ILogger log)
    {
        _cluster = cluster;
        _partitions = partitions;
        _log = log;
    }

    public string Url { get; private set; } = "";

    /// <summary>Listens on a free loopback port and serves until disposed.</summary>
    public static LocalClusterControl Start(LocalCluster cluster, IEnumerable<TopicSpec> topics, ILogger log)
    {
        var control = new LocalClusterControl(cluster, topics.ToDictionary(t => t.Name, t => t.Partitions), log);
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            control.Url = $"http://127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}/";
        }
        control._listener.Prefixes.Add(control.Url);
        control._listener.Start();
        _ = Task.Run(control.ServeAsync);
        return control;
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            var (status, text) = Handle(context.Request);
            var body = Encoding.UTF8.GetBytes(text + "\n");
            context.Response.StatusCode = status;
            context.Response.ContentType = "text/plain; charset=utf-8";
            await context.Response.OutputStream.WriteAsync(body);
            context.Response.Close();
        }
    }

    private (int Status, string Text) Handle(HttpListenerRequest request)
    {
        var path = request.Url?.AbsolutePath.Trim('/').Split('/') ?? [];
        if (request.HttpMethod == "GET" && path is ["requests"])
            return (200, string.Join("\n", _cluster.TakeRequestCounts().OrderBy(c => c.Key)
                .Select(c => $"broker {c.Key.Broker} {ApiName(c.Key.ApiKey)} {c.Value}")));
        if (request.HttpMethod != "POST")
            return (405, $"{request.HttpMethod} is not served: POST /brokers/ID/down, /brokers/ID/up or /leaders?topic=NAME&broker=ID, GET /requests");
        try
        {
            switch (path)
            {
                case ["brokers", var id, "down" or "up"]:
                    var broker = Broker(id);
                    if (path[2] == "down") _cluster.SetBrokerDown(broker);
                    else _cluster.SetBrokerUp(broker);
                    return Done($"broker {broker} {path[2]}");
                case ["leaders"]:
                    var leader = Broker(request.QueryString["broker"] ?? throw new ArgumentException("broker= is missing"));
                    if (request.QueryString["topic"] is not { } topic)
                    {
                        foreach (var (name, partitionCount) in _partitions)
                            for (var p = 0; p < partitionCount; p++) _cluster.SetPartitionLeader(name, p, leader);
                        return Done($"leader of every partition of every topic moved to broker {leader}");
                    }
                    if (!_partitions.TryGetValue(topic, out var count)) throw new ArgumentException($"topic '{topic}' is not one of the local cluster's");
                    var partitions = request.QueryString["partition"] is { } one ? [Partition(one, count)] : Enumerable.Range(0, count).ToArray();
                    foreach (var partition in partitions) _cluster.SetPartitionLeader(topic, partition, leader);
                    return Done($"leader of {topic} partitions {string.Join(",", partitions)} moved to broker {leader}");
                default:
                    return (404, $"'/{string.Join('/', path)}' is not a control path: POST /brokers/ID/down, /brokers/ID/up or /leaders?topic=NAME&broker=ID");
            }
        }
        catch (ArgumentException e)
        {
            return (400, e.Message);
        }
        catch (InvalidOperationException e)
        {
            return (409, e.Message);
        }
    }

    private (int, string) Done(string what)
    {
        _log.LogWarning("Fault injected: {Fault}", what);
        return (200, what);
    }

    private static string ApiName(short key) => key switch
    {
        0 => "Produce",
        1 => "Fetch",
        2 => "ListOffsets",
        3 => "Metadata",
        8 => "OffsetCommit",
        9 => "OffsetFetch",
        10 => "FindCoordinator",
        11 => "JoinGroup",
        12 => "Heartbeat",
        14 => "SyncGroup",
        _ => $"api-{key}",
    };

    private int Broker(string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id >= 1 && id <= _cluster.Brokers
            ? id
            : throw new ArgumentException($"broker '{text}' is not one of 1..{_cluster.Brokers}");

    private static int Partition(string text, int count) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p < count
            ? p
            : throw new ArgumentException($"partition '{text}' is not one of 0..{count - 1}");

    public void Dispose() => _listener.Close();
}
