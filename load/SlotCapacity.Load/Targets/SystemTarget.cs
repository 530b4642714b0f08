using System.Text;
using Confluent.Kafka;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;
using SerializationContext = Confluent.Kafka.SerializationContext;
using Grpc.Core;
using Grpc.Net.Client;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// How the harness connects to each gateway: its own HTTP/2 client (h2c) or Grpc.Net.Client; clients
/// per gateway (Grpc.Net.Client: each channel has its own connection pool, whose locks are taken
/// on every call, so one channel per gateway made the calls contend for them), and whether one
/// Grpc.Net.Client channel may open more HTTP/2 connections once 100 streams are in flight on one.
/// </summary>
/// <param name="DirectHttpClient">give the channel an HttpClient rather than the handler: Grpc.Net.Client
/// then skips its client-side balancer (subchannel picks, locks per call), which one fixed address does not need</param>
/// <param name="H2c">checkout calls through the harness's own HTTP/2 client (<see cref="H2cCallInvoker"/>, one per
/// channel, opening connections as streams need them) instead of Grpc.Net.Client; the other settings then do not apply</param>
public sealed record ChannelShape(int ChannelsPerGateway = 1, bool MultipleHttp2Connections = true, bool DirectHttpClient = true, bool H2c = true)
{
    public static readonly ChannelShape Default = new();
    public override string ToString() => H2c
        ? $"the harness's own HTTP/2 client, {ChannelsPerGateway} per gateway, more connections past 75 streams"
        : $"Grpc.Net.Client, {ChannelsPerGateway} channel(s) per gateway, {(MultipleHttp2Connections ? "more HTTP/2 connections past 100 streams" : "one HTTP/2 connection each")}" +
          (DirectHttpClient ? ", HttpClient without the gRPC balancer" : "");
}

/// <summary>
/// This project's system, driven as checkout drives it: gRPC calls to the gateways (round robin,
/// a retry fails over to the next gateway with the same request), slots configured through the
/// Planning API. The audit reads back what the processors wrote:
/// the events topic (every HELD/BOOKED, and the running total of every counter in partition
/// order) and the compacted availability snapshots, straight from Kafka, plus GetUtilisation.
/// </summary>
public sealed class SystemTarget : IHoldingTarget
{
    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(5);
    private readonly IReadOnlyList<Uri> _gateways;
    private readonly string? _bootstrap;
    private readonly TopicNames _topics;
    private readonly ChannelShape _shape;
    private readonly Func<IReadOnlyList<WatchedProcess>> _findProcesses;
    private readonly List<GrpcChannel> _channels = [];
    private readonly List<H2cCallInvoker> _invokers = [];
    // Per gateway, its channels' clients: call n goes to gateway (n + attempt) % gateways.
    private readonly List<Checkout.CheckoutClient[]> _checkout = [];
    private readonly List<Planning.PlanningClient> _planning = [];
    private string _processesFoundBy = "";

    /// <param name="findProcesses">the processes of the system for CPU accounting; null: none</param>
    /// <param name="tokens">what the calls present: checkout calls the checkout token, slot configuration and utilisation the planner's</param>
    public SystemTarget(IReadOnlyList<Uri> gateways, string? kafkaBootstrap, TopicNames topics, ChannelShape? shape = null,
        Func<SystemProcesses.Found>? findProcesses = null, GatewayTokens? tokens = null)
    {
        foreach (var g in gateways) RequireLoopback(g);
        _gateways = gateways;
        _bootstrap = kafkaBootstrap;
        _topics = topics;
        _shape = shape ?? ChannelShape.Default;
        _findProcesses = () =>
        {
            var found = findProcesses?.Invoke();
            _processesFoundBy = found?.How ?? "";
            return found?.Processes ?? [];
        };
        foreach (var g in gateways)
        {
            var clients = new Checkout.CheckoutClient[_shape.ChannelsPerGateway];
            for (var c = 0; c < clients.Length; c++)
            {
                if (_shape.H2c)
                {
                    var invoker = new H2cCallInvoker(g, tokens?.Checkout);
                    _invokers.Add(invoker);
                    clients[c] = new Checkout.CheckoutClient(invoker);
                    continue;
                }
                var handler = new SocketsHttpHandler
                {
                    EnableMultipleHttp2Connections = _shape.MultipleHttp2Connections,
                    ConnectTimeout = TimeSpan.FromSeconds(5),
                    PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                    // gRPC has no redirects, cookies or proxies on loopback: each would be a stage every call passes.
                    AllowAutoRedirect = false,
                    UseCookies = false,
                    UseProxy = false,
                };
                var options = new GrpcChannelOptions
                {
                    // Retries are the harness's own (ClientPolicy): counted, and sent to the next gateway.
                    MaxRetryAttempts = 0,
                    DisposeHttpClient = true,
                };
                GrpcChannel channel;
                if (_shape.DirectHttpClient)
                {
                    var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
                    // The token as a default header of the client: the same header on every call, without
                    // gRPC's per-call credentials callback (an async step and a metadata copy per call).
                    if (!string.IsNullOrEmpty(tokens?.Checkout))
                        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", tokens.Checkout);
                    options.HttpClient = http;
                    channel = GrpcChannel.ForAddress(g, options);
                }
                else
                {
                    options.HttpHandler = handler;
                    channel = SlotChannel.ForAddress(g, tokens?.Checkout, options);
                }
                _channels.Add(channel);
                clients[c] = new Checkout.CheckoutClient(channel);
            }
            var planning = SlotChannel.ForAddress(g, tokens?.Planner);
            _channels.Add(planning);
            _planning.Add(new Planning.PlanningClient(planning));
            _checkout.Add(clients);
        }
    }

    public IReadOnlyList<WatchedProcess> Processes { get; private set; } = [];

    /// <summary>Bearer tokens for the gateways: role checkout, and role planner.</summary>
    public sealed record GatewayTokens(string? Checkout, string? Planner)
    {
        /// <summary>$SLOT_CHECKOUT_TOKEN / $SLOT_PLANNER_TOKEN, else the tokens `make run` wrote in .run/tokens/.</summary>
        public static GatewayTokens FromEnvironment() => new(SlotChannel.TokenFor("checkout"), SlotChannel.TokenFor("planner"));
    }

    /// <summary>The harness sends load only to this machine.</summary>
    public static void RequireLoopback(Uri uri)
    {
        if (uri.Host is not ("127.0.0.1" or "localhost" or "[::1]" or "::1"))
            throw new ArgumentException($"gateway {uri} is not on loopback: the load harness only targets 127.0.0.1");
    }

    public string Name => "system";
    public string Endpoint => string.Join(", ", _gateways);
    public string Notes =>
        $"{_gateways.Count} gateways (round robin; a transport failure is retried on the next one, same reservation id), gRPC over h2c, {_shape}; " +
        $"audit from Kafka topics '{_topics.Events}' and '{_topics.Availability}'" +
        (Processes.Count > 0 ? $"; CPU of {string.Join(", ", Processes.Select(p => p.Name))} (found by {_processesFoundBy})" : "; no process of the system found for CPU accounting");

    private Checkout.CheckoutClient Client(long sequence, int attempt)
    {
        var clients = _checkout[(int)((ulong)(sequence + attempt) % (ulong)_checkout.Count)];
        return clients[(int)((ulong)(sequence / _checkout.Count) % (ulong)clients.Length)];
    }

    /// <summary>Throws with a clear message when no gateway answers.</summary>
    public async Task CheckReachableAsync(CancellationToken ct)
    {
        for (var i = 0; i < _checkout.Count; i++)
        {
            try
            {
                var now = DateTimeOffset.UtcNow;
                await _checkout[i][0].QueryAvailabilityAsync(new AvailabilityRequest
                {
                    Hub = "load-probe",
                    From = Timestamp.FromDateTimeOffset(now),
                    To = Timestamp.FromDateTimeOffset(now.AddHours(2)),
                }, deadline: DateTime.UtcNow.AddSeconds(3), cancellationToken: ct);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown)
            {
                throw new InvalidOperationException($"gateway {_gateways[i]} does not answer ({e.StatusCode}: {e.Status.Detail}); start the system with `make run`");
            }
        }
    }

    public async Task PrepareAsync(SlotPlan plan, CancellationToken ct)
    {
        await CheckReachableAsync(ct);
        Processes = _findProcesses();
        // A gateway that just started answers UNAVAILABLE until it owns reply partitions; a
        // ConfigureSlot replaces the whole configuration, so re-sending the failed ones is safe.
        var pending = plan.Slots.ToList();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var failed = new List<(PlannedSlot Slot, SlotChangeResult Result)>();
            foreach (var chunk in pending.Chunk(50))
            {
                var request = new ApplyPlanRequest();
                foreach (var slot in chunk)
                    request.Slots.Add(new ConfigureSlotRequest { Slot = SlotIdOf(slot.Key), Config = slot.Config });
                var reply = await WithinPlanningRateAsync(() => _planning[0].ApplyPlanAsync(request, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct).ResponseAsync, ct);
                failed.AddRange(chunk.Zip(reply.Results).Where(x => !x.Second.Applied));
            }
            if (failed.Count == 0) return;
            var retryable = failed.All(f => f.Result.Reason == RejectReason.Unavailable);
            if (!retryable || clock.Elapsed > TimeSpan.FromSeconds(60))
            {
                var failures = failed.Select(f => $"{f.Slot.Id}: {ReasonName(f.Result.Reason)} {f.Result.Detail}").Take(5);
                throw new InvalidOperationException($"ApplyPlan failed for {failed.Count} slots: {string.Join("; ", failures)}");
            }
            pending = failed.Select(f => f.Slot).ToList();
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
        }
    }

    public static SlotId SlotIdOf(SlotKey key) => new() { Hub = key.Hub, Start = Timestamp.FromDateTimeOffset(key.Start) };

    private static OrderNeeds NeedsOf(Needs needs)
    {
        var n = new OrderNeeds();
        n.Quantities.Add("items", needs.Items);
        n.Quantities.Add("totes", needs.Totes);
        n.Requires.AddRange(needs.Requires);
        return n;
    }

    public async Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        var reply = await Client(op.Sequence, attempt).ReserveAsync(new ReserveRequest
        {
            ReservationId = op.ReservationId,
            OrderId = op.OrderId,
            Slot = SlotIdOf(op.Slot.Key),
            Zone = op.Zone,
            Needs = NeedsOf(op.Needs),
            HoldSeconds = op.HoldSeconds,
        }, deadline: DateTime.UtcNow.Add(CallDeadline), cancellationToken: ct);
        return Outcome(reply);
    }

    private static ReserveOutcome Outcome(ReservationReply reply) =>
        reply.Accepted ? ReserveOutcome.Accept(reply.FleetCounter) : ReserveOutcome.Reject(ReasonName(reply.Reason));

    public async Task<ReserveOutcome> ConfirmAsync(ReserveOperation op, int attempt, CancellationToken ct) =>
        Outcome(await Client(op.Sequence, attempt).ConfirmAsync(
            new ConfirmRequest { ReservationId = op.ReservationId, Slot = SlotIdOf(op.Slot.Key) },
            deadline: DateTime.UtcNow.Add(CallDeadline), cancellationToken: ct));

    public async Task<ReserveOutcome> ReleaseAsync(ReserveOperation op, int attempt, CancellationToken ct) =>
        Outcome(await Client(op.Sequence, attempt).ReleaseAsync(
            new ReleaseRequest { ReservationId = op.ReservationId, Slot = SlotIdOf(op.Slot.Key), Reason = "customer cancelled (load harness)" },
            deadline: DateTime.UtcNow.Add(CallDeadline), cancellationToken: ct));

    public async Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct)
    {
        var reply = await Client(op.Sequence, attempt).QueryAvailabilityAsync(new AvailabilityRequest
        {
            Hub = op.Hub,
            From = Timestamp.FromDateTimeOffset(op.From),
            To = Timestamp.FromDateTimeOffset(op.To),
            Zone = op.Zone,
            Needs = NeedsOf(op.Needs),
        }, deadline: DateTime.UtcNow.Add(CallDeadline), cancellationToken: ct);
        return new ReadOutcome(reply.Slots.Count, reply.Slots.Count(s => s.CanTake));
    }

    /// <summary>"REJECT_REASON_SLOT_FULL" style enum -> "SLOT_FULL".</summary>
    public static string ReasonName(RejectReason reason)
    {
        var name = reason.ToString();
        var sb = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i])) sb.Append('_');
            sb.Append(char.ToUpperInvariant(name[i]));
        }
        return sb.ToString();
    }

    public async Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct)
    {
        var problems = new List<string>();
        var counters = new List<CounterReading>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        Dictionary<string, string>? live = null;
        if (string.IsNullOrWhiteSpace(_bootstrap))
        {
            problems.Add("KAFKA_BOOTSTRAP_SERVERS is not set, so the events and availability topics could not be read (pass --kafka or export it)");
        }
        else
        {
            var wanted = accepted.Select(a => a.ReservationId).ToHashSet(StringComparer.Ordinal);
            var events = await Task.Run(() => EventLedger.Read(_bootstrap, _topics.Events, plan, wanted, TimeSpan.FromSeconds(30), ct), ct);
            var snapshots = await Task.Run(() => ReadSnapshots(_bootstrap, _topics.Availability, plan, TimeSpan.FromSeconds(20), ct), ct);
            ids.UnionWith(events.AcceptedIds);
            live = events.Live;
            problems.AddRange(events.Problems);
            problems.AddRange(snapshots.Problems);
            var keys = events.Totals.Keys.Union(snapshots.Used.Keys);
            foreach (var key in keys)
            {
                var net = events.Totals.GetValueOrDefault(key);
                var peak = events.Peaks.GetValueOrDefault(key);
                var used = snapshots.Used.TryGetValue(key, out var s) ? s : net;
                counters.Add(new CounterReading(key.Slot, key.Kind, key.Name, used, peak));
            }
        }
        problems.AddRange(await CheckUtilisationAsync(plan, ct));
        return new Readback("events and availability topics", counters, ids, problems, live);
    }

    private const int PlanningAttempts = 10;

    /// <summary>
    /// A planning call, waiting out the gateway's limit on each planner's calls (a burst of 20, then 5
    /// a second) as the refusal says: an audit over 24 hubs, or the next scenario's plan right after
    /// it, would otherwise be refused RESOURCE_EXHAUSTED.
    /// </summary>
    private static async Task<T> WithinPlanningRateAsync<T>(Func<Task<T>> call, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted && attempt < PlanningAttempts)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }
    }

    private async Task<List<string>> CheckUtilisationAsync(SlotPlan plan, CancellationToken ct)
    {
        var problems = new List<string>();
        var first = plan.Slots.Min(s => s.Key.Start);
        var last = plan.Slots.Max(s => s.Key.End);
        foreach (var hub in plan.Hubs)
        {
            UtilisationReply reply;
            try
            {
                reply = await WithinPlanningRateAsync(() => _planning[0].GetUtilisationAsync(new UtilisationRequest
                {
                    Hub = hub,
                    From = Timestamp.FromDateTimeOffset(first),
                    To = Timestamp.FromDateTimeOffset(last),
                }, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct).ResponseAsync, ct);
            }
            catch (RpcException e)
            {
                problems.Add($"GetUtilisation for {hub} failed: {e.StatusCode} {e.Status.Detail}");
                return problems;
            }
            foreach (var day in reply.Days)
            {
                var capacity = plan.Slots.Where(s => s.Key.Hub == hub && s.Key.Start.UtcDateTime.ToString("yyyy-MM-dd") == day.Date)
                    .Sum(s => s.FleetCapacity);
                if (day.OverCommittedSlots > 0)
                    problems.Add($"GetUtilisation: {hub} {day.Date} has {day.OverCommittedSlots} over-committed slots");
                if (day.UsedOrders > capacity)
                    problems.Add($"GetUtilisation: {hub} {day.Date} used {day.UsedOrders} orders > planned capacity {capacity}");
            }
        }
        return problems;
    }

    private sealed record SnapshotView(Dictionary<(string Slot, CounterKind Kind, string Name), long> Used, List<string> Problems);

    private static SnapshotView ReadSnapshots(string bootstrap, string topic, SlotPlan plan, TimeSpan timeout, CancellationToken ct)
    {
        var latest = new Dictionary<string, AvailabilitySnapshot>(StringComparer.Ordinal);
        var problems = new List<string>();
        TopicReader.ReadToEnd(bootstrap, topic, timeout, problems, (key, value) =>
        {
            if (!plan.ById.ContainsKey(key)) return;
            var snapshot = ProtobufSerde<AvailabilitySnapshot>.Instance.Deserialize(value, false, new SerializationContext(MessageComponentType.Value, topic));
            if (!latest.TryGetValue(key, out var previous) || previous.Version <= snapshot.Version) latest[key] = snapshot;
        }, () => true, ct);
        var used = new Dictionary<(string, CounterKind, string), long>();
        foreach (var (slot, s) in latest)
        {
            foreach (var f in s.Fleet) used[(slot, CounterKind.Fleet, f.Name)] = f.UsedOrders;
            foreach (var sh in s.Shared) used[(slot, CounterKind.Shared, sh.Name)] = sh.Used;
            foreach (var z in s.Zones) used[(slot, CounterKind.Zone, z.Zone)] = z.UsedOrders;
            if (s.OverCommitted) problems.Add($"availability snapshot of {slot} says over-committed");
        }
        return new SnapshotView(used, problems);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _channels) c.Dispose();
        foreach (var i in _invokers) i.Dispose();
        await Task.CompletedTask;
    }
}
