using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.History;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// Time travel against the whole system: the utilisation rebuilt from `slot-events` alone equals
/// what the live view (GetUtilisation) answered, now and at an earlier instant, and the `replay`
/// verb prints the same table as `plan utilisation`.
/// </summary>
[Collection(WholeSystemCollection.Name)]
public sealed class ReplayTests(ITestOutputHelper output)
{
    private static readonly DateTimeOffset Day = new(2030, 7, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly Timestamp From = Timestamp.FromDateTimeOffset(Day);
    private static readonly Timestamp To = Timestamp.FromDateTimeOffset(Day.AddDays(3));

    [Fact]
    public async Task A_view_rebuilt_from_the_events_equals_the_live_view_now_and_at_an_earlier_instant()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        var gateway = await system.StartGatewayAsync("gw-replay", deadline: TimeSpan.FromSeconds(2));
        var checkout = system.Checkout(gateway);
        var planning = system.Planning(gateway);
        var morning = EngineAndGateways.Slot("LON1", Day.AddHours(8));
        var noon = EngineAndGateways.Slot("LON1", Day.AddHours(12));
        var tomorrow = EngineAndGateways.Slot("LON1", Day.AddDays(1).AddHours(10));
        var elsewhere = EngineAndGateways.Slot("MAN1", Day.AddHours(8));
        foreach (var slot in new[] { morning, noon, tomorrow, elsewhere }) await system.ConfigureAsync(gateway, slot, EndToEndTests.Config(vans: 3, bikes: 2));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a1", morning)));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a2", morning, holdSeconds: 600)));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a3", noon, holdSeconds: 600)));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a4", elsewhere)));
        var replay = new UtilisationReplay(system.Broker.BootstrapServers, system.Topics, NullLogger.Instance);
        var earlier = await Converged(planning, replay);
        var earlierAt = DateTimeOffset.UtcNow;
        // Record timestamps are in ms: the changes below must be stamped after `earlierAt`.
        await Task.Delay(50);

        await Accepted(checkout.ConfirmAsync(new ConfirmRequest { ReservationId = "a2", Slot = morning }));
        await Accepted(checkout.ReleaseAsync(new ReleaseRequest { ReservationId = "a1", Slot = morning, Reason = "customer cancelled" }));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a5", tomorrow, holdSeconds: 600)));
        await Accepted(checkout.ReserveAsync(EndToEndTests.Reserve("a6", tomorrow)));
        await Accepted(checkout.ReleaseAsync(new ReleaseRequest { ReservationId = "a3", Slot = noon, Reason = "payment failed" }));
        // Lowered below what it holds (over-committed) and closed: both come from SLOT_CONFIGURED.
        await system.ConfigureAsync(gateway, tomorrow, EndToEndTests.Config(vans: 1, bikes: 0));
        var closed = await planning.SetSlotOpenAsync(new SetSlotOpenRequest { Slot = noon, Open = false });
        Assert.True(closed.Applied, closed.Detail);

        var now = await Converged(planning, replay);
        output.WriteLine(now.ToString());
        var lon1 = now.Days.Where(d => d.Hub == "LON1").ToList();
        Assert.Equal([1L, 2L], lon1.Select(d => d.UsedOrders));
        Assert.Equal(1, lon1.Sum(d => d.HeldOrders));
        Assert.Equal(1, lon1.Sum(d => d.OverCommittedSlots));
        Assert.Equal(1, lon1.Sum(d => d.ClosedSlots));

        var rebuiltEarlier = await replay.RebuildAsync("", earlierAt, null, CancellationToken.None);
        Assert.Equal(earlier.Days, rebuiltEarlier.Days);
        Assert.NotEqual(now.Days, rebuiltEarlier.Days);
        var oneHub = await replay.RebuildAsync("MAN1", DateTimeOffset.UtcNow, null, CancellationToken.None);
        Assert.Equal(now.Days.Where(d => d.Hub == "MAN1"), oneHub.Days);

        // The CLI: `replay` prints the table `plan utilisation` prints.
        var live = new StringWriter();
        Assert.Equal(0, await GatewayCli.RunAsync(["plan", "utilisation", "--gateway", gateway.Address.ToString(), "--token", EngineAndGateways.Token(SlotRoles.Viewer), "--from", "2030-07-01", "--days", "3"], live));
        var replayed = new StringWriter();
        Assert.Equal(0, await GatewayCli.RunAsync(["replay", "--bootstrap", system.Broker.BootstrapServers, "--topic-prefix", system.Topics.Prefix,
            "--from", "2030-07-01", "--days", "3"], replayed));
        output.WriteLine(replayed.ToString());
        Assert.Equal(Table(live.ToString()), Table(replayed.ToString()));
        // The header and three hub-days.
        Assert.Equal(4, Table(replayed.ToString()).Count);
    }

    /// <summary>The live view and the replay, asked again until they agree (the view and the events
    /// topic are written by the same command, read by different consumers); returns the live one.</summary>
    private async Task<UtilisationReply> Converged(Planning.PlanningClient planning, UtilisationReplay replay)
    {
        UtilisationReply live = new(), rebuilt = new();
        for (var attempt = 0; attempt < 30; attempt++)
        {
            live = await planning.GetUtilisationAsync(new UtilisationRequest { From = From, To = To });
            rebuilt = await replay.RebuildAsync("", DateTimeOffset.UtcNow, null, CancellationToken.None);
            if (live.Days.Equals(rebuilt.Days)) return live;
            await Task.Delay(500);
        }
        Assert.Equal(live.Days, rebuilt.Days);
        return live;
    }

    private static List<string> Table(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('(')).ToList();

    private static async Task Accepted(Grpc.Core.AsyncUnaryCall<ReservationReply> call)
    {
        var reply = await call;
        Assert.True(reply.Accepted, $"{reply.Reason} {reply.Detail}");
    }
}
