using System.Text;
using Confluent.Kafka;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;
using Grpc.Core;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>Authentication, roles, who-changed-what and the abuse limits, end to end through a gateway.</summary>
[Collection(WholeSystemCollection.Name)]
public sealed class SecurityTests(ITestOutputHelper output)
{
    private static readonly DateTimeOffset Start = new(2030, 7, 1, 10, 0, 0, TimeSpan.Zero);

    private static SlotConfig Vans(long capacity) => new()
    {
        Open = true,
        Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = capacity, Zones = { "north" } } },
    };

    [Fact]
    public async Task Only_a_valid_token_with_the_right_role_gets_through_and_a_planners_change_names_the_planner()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        var gateway = await system.StartGatewayAsync("gw-sec");
        var slot = EngineAndGateways.Slot("SEC1", Start);
        var reserve = new ReserveRequest { ReservationId = "r-1", OrderId = "o-1", Slot = slot, Zone = "north", Needs = new OrderNeeds() };
        var configure = new ConfigureSlotRequest { Slot = slot, Config = Vans(2) };

        // A planner configures the slot: applied, and the event says who did it.
        var planner = system.Planning(gateway);
        Assert.True((await planner.ConfigureSlotAsync(configure)).Applied);
        var commands = CommandsWritten(system);

        // No token, an expired one, a forged one, an unsigned one, a checkout token edited to say planner:
        // UNAUTHENTICATED with a one-line reason, and nothing written to Kafka.
        var key = EngineAndGateways.SigningKey;
        var refused = new (string? Token, string Reason)[]
        {
            (null, "no bearer token"),
            (SlotTokens.Issue(key, "eve", [SlotRoles.Planner], TimeSpan.FromMinutes(10), issuedAt: DateTime.UtcNow.AddHours(-1)), "token expired"),
            (SlotTokens.Issue(SlotTokens.NewKey(), "eve", [SlotRoles.Planner], TimeSpan.FromHours(1)), "signature"),
            (Unsigned(EngineAndGateways.Token(SlotRoles.Planner, "eve")), "token"),
            (WithRole(EngineAndGateways.Token(SlotRoles.Checkout, "eve"), SlotRoles.Planner), "signature"),
            (SlotTokens.Issue(key, "eve", [SlotRoles.Planner], TimeSpan.FromHours(1), audience: "another-service"), "audience"),
            ("not-a-jwt", "token"),
        };
        foreach (var (token, reason) in refused)
        {
            var channel = system.Channel(gateway, token);
            var denied = await Assert.ThrowsAsync<RpcException>(async () => await new Planning.PlanningClient(channel).ConfigureSlotAsync(configure));
            output.WriteLine($"{denied.StatusCode}: {denied.Status.Detail}");
            Assert.Equal(StatusCode.Unauthenticated, denied.StatusCode);
            Assert.Contains(reason, denied.Status.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', denied.Status.Detail);
            var reserveDenied = await Assert.ThrowsAsync<RpcException>(async () => await new Checkout.CheckoutClient(channel).ReserveAsync(reserve));
            Assert.Equal(StatusCode.Unauthenticated, reserveDenied.StatusCode);
        }

        // The wrong role: PERMISSION_DENIED naming the role needed.
        var checkoutPlanning = new Planning.PlanningClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Checkout, "shop")));
        var wrongRole = await Assert.ThrowsAsync<RpcException>(async () =>
            await checkoutPlanning.ConfigureSlotAsync(new ConfigureSlotRequest { Slot = slot, Config = Vans(500) }));
        output.WriteLine($"{wrongRole.StatusCode}: {wrongRole.Status.Detail}");
        Assert.Equal(StatusCode.PermissionDenied, wrongRole.StatusCode);
        Assert.Contains("needs role planner", wrongRole.Status.Detail, StringComparison.Ordinal);
        var viewer = new Planning.PlanningClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Viewer, "analyst")));
        Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(async () =>
            await viewer.SetSlotOpenAsync(new SetSlotOpenRequest { Slot = slot, Open = false }))).StatusCode);
        Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(async () =>
            await new Checkout.CheckoutClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Planner))).ReserveAsync(reserve))).StatusCode);
        Assert.Equal(commands, CommandsWritten(system));

        // A viewer reads utilisation; the slot still has the planner's 2 vans, not the checkout token's 500.
        // It is read from the gateway's view, which follows the engine: on a loaded machine it can show
        // the planner's change a moment after the change is answered.
        var request = new UtilisationRequest
        {
            Hub = "SEC1", From = Timestamp.FromDateTimeOffset(Start.Date), To = Timestamp.FromDateTimeOffset(Start.Date.AddDays(1)),
        };
        var utilisation = await viewer.GetUtilisationAsync(request);
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); utilisation.Days.Count == 0 && waited.Elapsed < TimeSpan.FromSeconds(10);)
        {
            await Task.Delay(50);
            utilisation = await viewer.GetUtilisationAsync(request);
        }
        Assert.Equal(2, Assert.Single(utilisation.Days).CapacityOrders);
        var checkout = system.Checkout(gateway);
        Assert.True((await checkout.ReserveAsync(reserve)).Accepted);

        // The planner closes the slot: the configured and the closed events both name the planner.
        Assert.True((await planner.SetSlotOpenAsync(new SetSlotOpenRequest { Slot = slot, Open = false })).Applied);
        var events = ConfiguredEvents(system, new SlotKey("SEC1", Start).ToString(), count: 2);
        Assert.Equal([(true, EngineAndGateways.PlannerName), (false, EngineAndGateways.PlannerName)],
            events.Select(e => (e.Config.Open, e.ChangedBy)).ToList());
    }

    [Fact]
    public async Task Planning_calls_over_the_callers_rate_and_messages_over_the_size_limit_get_RESOURCE_EXHAUSTED()
    {
        await using var system = await EngineAndGateways.StartAsync(output, processors: 0);
        var gateway = await system.StartGatewayAsync("gw-limits",
            security: EngineAndGateways.Security with { PlanningCallsPerSecond = 1, PlanningBurst = 2, MaxMessageBytes = 2_048 });
        var request = new UtilisationRequest { Hub = "LIM1", From = Timestamp.FromDateTimeOffset(Start), To = Timestamp.FromDateTimeOffset(Start.AddDays(1)) };

        // A burst of 2, one more per second: 10 calls back to back go over whatever the machine's pace.
        var alice = new Planning.PlanningClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Planner, "alice")));
        RpcException? limited = null;
        for (var i = 0; i < 10 && limited is null; i++)
        {
            try
            {
                await alice.GetUtilisationAsync(request);
            }
            catch (RpcException e)
            {
                limited = e;
            }
        }
        Assert.NotNull(limited);
        output.WriteLine($"{limited.StatusCode}: {limited.Status.Detail}");
        Assert.Equal(StatusCode.ResourceExhausted, limited.StatusCode);
        Assert.Contains("planning rate limit: alice", limited.Status.Detail, StringComparison.Ordinal);
        // Another caller has a bucket of its own.
        var bob = new Planning.PlanningClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Viewer, "bob")));
        Assert.NotNull(await bob.GetUtilisationAsync(request));

        // A plan bigger than the largest message the gateway takes (2 KiB here): refused unread, nothing written.
        var big = new ApplyPlanRequest
        {
            Slots = { Enumerable.Range(0, 100).Select(i => new ConfigureSlotRequest { Slot = EngineAndGateways.Slot("LIM1", Start.AddHours(i)), Config = Vans(1) }) },
        };
        var commands = CommandsWritten(system);
        var carol = new Planning.PlanningClient(system.Channel(gateway, EngineAndGateways.Token(SlotRoles.Planner, "carol")));
        var tooBig = await Assert.ThrowsAsync<RpcException>(async () => await carol.ApplyPlanAsync(big));
        output.WriteLine($"{tooBig.StatusCode}: {tooBig.Status.Detail}");
        Assert.Equal(StatusCode.ResourceExhausted, tooBig.StatusCode);
        Assert.True(big.CalculateSize() > 2_048);
        Assert.Equal(commands, CommandsWritten(system));
    }

    /// <summary>Records written to the commands topic so far, every partition.</summary>
    private static long CommandsWritten(EngineAndGateways system) =>
        Enumerable.Range(0, 4).Sum(p => system.Broker.Watermarks(new TopicPartition(system.Topics.Commands, p)).High.Value);

    /// <summary>The slot's SLOT_CONFIGURED events, in order, once <paramref name="count"/> are there (bounded wait).</summary>
    private static List<SlotEvent> ConfiguredEvents(EngineAndGateways system, string slot, int count)
    {
        using var consumer = new ConsumerBuilder<string, SlotEvent>(new ConsumerConfig
        {
            BootstrapServers = system.Broker.BootstrapServers,
            GroupId = "security-test-" + Guid.NewGuid().ToString("N"),
            EnableAutoCommit = false,
        }).SetValueDeserializer(ProtobufSerde<SlotEvent>.Instance).SetLogHandler((_, _) => { }).Build();
        consumer.Assign(Enumerable.Range(0, 4).Select(p => new TopicPartitionOffset(system.Topics.Events, p, Offset.Beginning)));
        var found = new List<SlotEvent>();
        var until = DateTime.UtcNow.AddSeconds(30);
        while (found.Count < count && DateTime.UtcNow < until)
        {
            if (consumer.Consume(TimeSpan.FromMilliseconds(100)) is { Message.Value: { } e } && e.Slot == slot && e.Kind == SlotEventKind.SlotConfigured)
                found.Add(e);
        }
        return found;
    }

    /// <summary>The token's header and claims with "alg: none" and no signature.</summary>
    private static string Unsigned(string token)
    {
        var parts = token.Split('.');
        return $"{Base64Url("{\"alg\":\"none\",\"typ\":\"JWT\"}")}.{parts[1]}.";
    }

    /// <summary>The token with its role claim rewritten, keeping the original signature.</summary>
    private static string WithRole(string token, string role)
    {
        var parts = token.Split('.');
        var claims = Encoding.UTF8.GetString(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.DecodeBytes(parts[1]));
        Assert.Contains("\"role\":\"checkout\"", claims, StringComparison.Ordinal);
        return $"{parts[0]}.{Base64Url(claims.Replace("\"role\":\"checkout\"", $"\"role\":\"{role}\"", StringComparison.Ordinal))}.{parts[2]}";
    }

    private static string Base64Url(string text) => Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(text);
}
