using Confluent.Kafka;
using Google.Protobuf;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;
using Grpc.Core;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

/// <summary>Faults around the write path and restarts: callers that give up, Abandons that fail to
/// write, replies for an earlier incarnation, a restart with a static reply share and a view checkpoint.</summary>
public partial class EndToEndTests
{
    [Fact]
    public async Task A_caller_whose_deadline_fires_or_who_cancels_before_the_reply_leaves_nothing_held()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        // The gateway's own deadline is far away: only the callers end these calls.
        var gateway = await system.StartGatewayAsync("gw-a", deadline: TimeSpan.FromSeconds(10));
        var checkout = system.Checkout(gateway);
        var slot = EngineAndGateways.Slot("LON2", Start);
        await system.ConfigureAsync(gateway, slot, Config(vans: 2));

        // A warm connection, and deadlines long enough for the calls to reach the gateway on a busy
        // machine: a call that arrives with its deadline already passed is refused unwritten.
        await checkout.QueryAvailabilityAsync(new AvailabilityRequest
        {
            Hub = "LON2", From = Timestamp.FromDateTimeOffset(Start), To = Timestamp.FromDateTimeOffset(Start.AddHours(2)),
        });
        await system.StopProcessorsAsync();
        // The gateway stops waiting just before the caller's deadline, so the caller sees either its
        // own DEADLINE_EXCEEDED or the gateway's ABANDONED answer; never an accept.
        try
        {
            var answer = await checkout.ReserveAsync(Reserve("deadline-fired", slot), deadline: DateTime.UtcNow.AddSeconds(1));
            Assert.False(answer.Accepted);
            Assert.Equal(ReservationStatus.Abandoned, answer.Status);
        }
        catch (RpcException e)
        {
            Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        }
        using (var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
        {
            var cancelled = await Assert.ThrowsAsync<RpcException>(async () => await checkout.ReserveAsync(Reserve("cancelled", slot), cancellationToken: cancel.Token));
            Assert.Equal(StatusCode.Cancelled, cancelled.StatusCode);
        }
        // A call's Abandon is written before the call leaves the in-flight count.
        await WaitAsync(() => gateway.Status().InFlight == 0, TimeSpan.FromSeconds(5), () => $"calls still in flight: {gateway.Status()}");
        using (var http = new HttpClient { BaseAddress = gateway.AdminAddress })
        {
            var metrics = await http.GetStringAsync("/metrics");
            Assert.Contains("cause=\"caller_gone\"", metrics, StringComparison.Ordinal);
        }

        await system.StartProcessorAsync("processor-back");
        // Both units are free: the engine applies the two Reserves late and the Abandons behind them.
        var (first, _) = await RetryUntilAnsweredAsync(checkout, Reserve("after", slot));
        Assert.True(first.Accepted, first.Detail);
        var second = await checkout.ReserveAsync(Reserve("after-second", slot));
        Assert.True(second.Accepted, second.Detail);
        Assert.Equal(RejectReason.SlotFull, (await checkout.ReserveAsync(Reserve("after-third", slot))).Reason);

        // The client contract: the same reservation id again, on any gateway, is told it is abandoned.
        foreach (var id in new[] { "deadline-fired", "cancelled" })
        {
            var again = await checkout.ReserveAsync(Reserve(id, slot));
            output.WriteLine($"{id} retried: {again}");
            Assert.False(again.Accepted);
            Assert.Equal((RejectReason.Unavailable, ReservationStatus.Abandoned), (again.Reason, again.Status));
        }
    }

    [Fact]
    public async Task An_abandon_whose_write_fails_is_written_again_and_the_reservation_holds_nothing()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        if (system.Broker.Cluster is not { } cluster)
        {
            output.WriteLine($"needs the local cluster's fault injection; not run on {system.Broker.Kind}");
            return;
        }
        var gateway = await system.StartGatewayAsync("gw-a", deadline: TimeSpan.FromSeconds(2));
        var checkout = system.Checkout(gateway);
        var slot = EngineAndGateways.Slot("LDS1", Start.AddHours(2));
        await system.ConfigureAsync(gateway, slot, Config(vans: 1));
        await system.StopProcessorsAsync();

        using var probe = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = system.Broker.BootstrapServers, GroupId = "probe" }).Build();
        long CommandsWritten() => Enumerable.Range(0, 4).Sum(p => probe.QueryWatermarkOffsets(new TopicPartition(system.Topics.Commands, p), TimeSpan.FromSeconds(5)).High.Value);
        var before = CommandsWritten();
        var call = checkout.ReserveAsync(Reserve("abandon-retried", slot)).ResponseAsync;
        // Once the Reserve is in the topic, the next Produce request (the Abandon, at the deadline)
        // is refused with an error the Kafka client does not retry by itself.
        await WaitAsync(() => CommandsWritten() > before, TimeSpan.FromSeconds(1.5), () => "the Reserve was not written before the deadline");
        cluster.PushRequestErrors(apiKey: 0, error: (int)ErrorCode.TopicAuthorizationFailed, count: 1);
        var missed = await call;
        Assert.Equal(ReservationStatus.Abandoned, missed.Status);
        // The idempotent producer also fails the records behind a refused one until it has reset its
        // sequence, so the Abandon may take more than one retry; it is written once.
        await WaitAsync(() => gateway.Status().AbandonRetries >= 1 && CommandsWritten() == before + 2, TimeSpan.FromSeconds(10),
            () => $"the Abandon was not written again: {gateway.Status()}");
        Assert.Equal(0, gateway.Status().AbandonsFailed);

        await system.StartProcessorAsync("processor-back");
        var (retried, _) = await RetryUntilAnsweredAsync(checkout, Reserve("after", slot));
        Assert.True(retried.Accepted, retried.Detail);
        Assert.Equal(RejectReason.SlotFull, (await checkout.ReserveAsync(Reserve("after-second", slot))).Reason);
    }

    [Fact]
    public async Task An_accept_for_an_earlier_incarnations_call_is_reported_and_left_to_the_callers_retry()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        var gateway = await system.StartGatewayAsync("gw-a", deadline: TimeSpan.FromSeconds(2), share: new ReplyShare(0, 1));
        var checkout = system.Checkout(gateway);
        var slot = EngineAndGateways.Slot("BHX1", Start.AddHours(4));
        await system.ConfigureAsync(gateway, slot, Config(vans: 2));

        // What a crashed incarnation of this gateway leaves behind: its Reserve, naming this reply partition.
        var id = CorrelationId.New("0ld1ncar", reserve: true).ToString();
        var request = Reserve("orphan", slot);
        var command = new SlotCommand
        {
            CommandId = id, CorrelationId = id, ReplyPartition = 0,
            Slot = SlotKey.Create("BHX1", Start.AddHours(4)).ToString(),
            DeadlineUnixMs = DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds(),
            Reserve = new Contracts.Reserve { ReservationId = request.ReservationId, OrderId = request.OrderId, Zone = request.Zone, Needs = request.Needs },
        };
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = system.Broker.BootstrapServers }).Build())
            await producer.ProduceAsync(system.Topics.Commands, new Message<string, byte[]> { Key = command.Slot, Value = command.ToByteArray() });
        await WaitAsync(() => gateway.Status().OrphanedAccepts == 1, TimeSpan.FromSeconds(10), () => $"orphaned accept not seen: {gateway.Status()}");

        // Not abandoned: the caller's retry with the same reservation id is told it holds the place.
        var retried = await checkout.ReserveAsync(request);
        Assert.True(retried.Accepted, retried.Detail);
        Assert.True((await checkout.ReserveAsync(Reserve("other", slot))).Accepted);
        Assert.Equal(RejectReason.SlotFull, (await checkout.ReserveAsync(Reserve("third", slot))).Reason);
    }

    [Fact]
    public async Task A_gateway_restarted_with_its_reply_share_and_view_checkpoint_serves_again_while_the_other_keeps_answering()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        var deadline = TimeSpan.FromSeconds(2);
        var checkpoint = system.StatePath("gw-a.view");
        var a = await system.StartGatewayAsync("gw-a", deadline, share: new ReplyShare(0, 2), viewCheckpoint: checkpoint);
        var b = await system.StartGatewayAsync("gw-b", deadline, share: new ReplyShare(1, 2));
        Assert.Equal([0, 2], a.Status().ReplyPartitions);
        Assert.Equal([1, 3], b.Status().ReplyPartitions);
        var slots = Enumerable.Range(0, 7).Select(i => EngineAndGateways.Slot("MAN1", Start.AddHours(2 * i))).ToList();
        foreach (var slot in slots) await system.ConfigureAsync(a, slot, Config(vans: 100_000));
        await WaitAsync(() => a.Status().ViewSlots == 7, TimeSpan.FromSeconds(5), () => $"view not filled: {a.Status()}");

        var toB = system.Checkout(b);
        var restarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var streams = Enumerable.Range(0, 3).Select(async stream =>
        {
            var answers = new List<ReservationReply>();
            for (var i = 0; !restarted.Task.IsCompleted && i < 5_000; i++)
            {
                answers.Add(await toB.ReserveAsync(Reserve($"b{stream}-{i}", slots[i % slots.Count])));
                await Task.Delay(5);
            }
            return answers;
        }).ToArray();

        await Task.Delay(300);
        await a.StopAsync();
        var a2 = await system.StartGatewayAsync("gw-a2", deadline, share: new ReplyShare(0, 2), viewCheckpoint: checkpoint);
        var toA2 = system.Checkout(a2);
        for (var i = 0; i < 20; i++)
        {
            var reply = await toA2.ReserveAsync(Reserve($"a2-{i}", slots[i % slots.Count]));
            Assert.True(reply.Accepted, reply.Detail);
        }
        await Task.Delay(300);
        restarted.SetResult();

        var answers = (await Task.WhenAll(streams)).SelectMany(x => x).ToList();
        output.WriteLine($"gw-b answered {answers.Count} calls while gw-a restarted; gw-a2: {a2.Status()}");
        Assert.All(answers, r => Assert.True(r.Accepted, $"{r.ReservationId}: {r.Reason} {r.Detail}"));
        Assert.Equal([1, 3], b.Status().ReplyPartitions);
        Assert.Equal([0, 2], a2.Status().ReplyPartitions);
        Assert.Equal(7, a2.Status().ViewSlotsFromCheckpoint);
        Assert.Equal(7, a2.Status().ViewSlots);
    }

    [Fact]
    public async Task A_view_whose_records_were_dropped_from_the_topic_says_it_is_incomplete()
    {
        await using var system = await EngineAndGateways.StartAsync(output, processors: 0);
        if (system.Broker.Cluster is null)
        {
            output.WriteLine($"needs the local cluster's 5 MiB partition cap; not run on {system.Broker.Kind}");
            return;
        }
        // The local cluster keeps at most 5 MiB per partition: 7 MB pushes the oldest batches out.
        using (var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = system.Broker.BootstrapServers }).Build())
        {
            for (var i = 0; i < 70; i++)
                producer.Produce(new TopicPartition(system.Topics.Availability, 0), new Message<string, byte[]> { Key = "LON1@2030-06-03T10:00Z", Value = new byte[100_000] });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }
        var gateway = await system.StartGatewayAsync("gw-a");
        Assert.StartsWith($"records were dropped from {system.Topics.Availability} before this gateway read them, partitions 0 (offsets 0..",
            gateway.Status().ViewIncomplete, StringComparison.Ordinal);
        using var http = new HttpClient { BaseAddress = gateway.AdminAddress };
        Assert.Contains("\"viewIncomplete\": \"records were dropped", await http.GetStringAsync("/health"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_view_that_falls_behind_records_the_broker_drops_says_it_is_incomplete()
    {
        await using var system = await EngineAndGateways.StartAsync(output, processors: 0);
        if (system.Broker.Cluster is not { } cluster)
        {
            output.WriteLine($"needs the local cluster's 5 MiB partition cap; not run on {system.Broker.Kind}");
            return;
        }
        var gateway = await system.StartGatewayAsync("gw-a");
        Assert.Null(gateway.Status().ViewIncomplete);
        void Rtt(int ms)
        {
            for (var broker = 1; broker <= cluster.Brokers; broker++) cluster.SetBrokerRtt(broker, ms);
        }
        try
        {
            // Slow brokers: the producer keeps 5 batches of 1 MB in flight per round trip, the view
            // fetches one batch per round trip, so it falls behind while 12 MB push the oldest out.
            Rtt(300);
            using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig
            {
                BootstrapServers = system.Broker.BootstrapServers, LingerMs = 50, BatchSize = 1_000_000,
            }).Build();
            for (var i = 0; i < 120; i++)
                producer.Produce(new TopicPartition(system.Topics.Availability, 0), new Message<string, byte[]> { Key = "LON1@2030-06-03T10:00Z", Value = new byte[100_000] });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            Rtt(0);
        }
        await WaitAsync(() => gateway.Status().ViewIncomplete is not null, TimeSpan.FromSeconds(20), () => $"drop not noticed: {gateway.Status()}");
        Assert.StartsWith($"records were dropped from {system.Topics.Availability} before this gateway read them, partitions 0 (offsets ",
            gateway.Status().ViewIncomplete, StringComparison.Ordinal);
        await WaitAsync(() => gateway.Status().ViewLagRecords == 0, TimeSpan.FromSeconds(20), () => $"view not caught up again: {gateway.Status()}");
    }
}
