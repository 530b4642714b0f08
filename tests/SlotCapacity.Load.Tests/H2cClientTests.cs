using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using SlotCapacity.Contracts;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

/// <summary>The harness's own HTTP/2 client against a real Kestrel gRPC server (the self-check's echo server).</summary>
public sealed class H2cClientTests
{
    [Fact]
    public async Task Thousands_of_calls_at_once_are_each_answered_with_their_own_reply_over_more_connections()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (app, addresses) = await EchoServer.StartAsync([0], cts.Token);
        await using var _ = app;
        using var invoker = new H2cCallInvoker(addresses[0], "a-token");
        var checkout = new Checkout.CheckoutClient(invoker);

        // More calls in flight than one connection's 100 streams allow.
        var calls = Enumerable.Range(0, 3_000).Select(async i =>
        {
            var reply = await checkout.ReserveAsync(new ReserveRequest { ReservationId = $"r{i}", HoldSeconds = i % 2 }, deadline: DateTime.UtcNow.AddSeconds(30));
            return (Id: $"r{i}", Reply: reply, Held: i % 2 == 1);
        }).ToList();
        var answers = await Task.WhenAll(calls);

        Assert.All(answers, a =>
        {
            Assert.Equal(a.Id, a.Reply.ReservationId);
            Assert.Equal(a.Held ? ReservationStatus.Held : ReservationStatus.Booked, a.Reply.Status);
        });
        Assert.True(invoker.OpenConnections > 1, $"{invoker.OpenConnections} connection(s) for 3,000 concurrent calls");
        var day = await checkout.QueryAvailabilityAsync(new AvailabilityRequest { Hub = "h", From = Timestamp.FromDateTime(DateTime.UtcNow), To = Timestamp.FromDateTime(DateTime.UtcNow.AddHours(2)) });
        Assert.Equal(SlotPlan.WindowStartHours.Length, day.Slots.Count);
    }

    [Fact]
    public async Task A_status_the_server_answers_without_a_message_is_the_calls_error_and_the_connection_goes_on()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (app, addresses) = await EchoServer.StartAsync([0], cts.Token);
        await using var _ = app;
        using var invoker = new H2cCallInvoker(addresses[0], null);

        // The echo server does not implement GetUtilisation: a trailers-only UNIMPLEMENTED answer.
        var error = await Assert.ThrowsAsync<RpcException>(async () => await new Planning.PlanningClient(invoker).GetUtilisationAsync(new UtilisationRequest { Hub = "h" }));
        Assert.Equal(StatusCode.Unimplemented, error.StatusCode);
        // The connection still serves calls afterwards (the header tables stayed in step).
        var reply = await new Checkout.CheckoutClient(invoker).ReserveAsync(new ReserveRequest { ReservationId = "after" });
        Assert.Equal("after", reply.ReservationId);
    }

    [Fact]
    public async Task A_server_that_never_answers_fails_the_call_at_its_deadline_and_nothing_listening_is_unavailable()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        using var invoker = new H2cCallInvoker(new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}"), null);
        var clock = Stopwatch.StartNew();
        var late = await Assert.ThrowsAsync<RpcException>(async () =>
            await new Checkout.CheckoutClient(invoker).ReserveAsync(new ReserveRequest { ReservationId = "late" }, deadline: DateTime.UtcNow.AddMilliseconds(300)));
        Assert.Equal(StatusCode.DeadlineExceeded, late.StatusCode);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(290), $"failed after {clock.Elapsed}, before its deadline");
        Assert.True(ClientPolicy.IsTransient(late));

        // A port nothing listens on (the listener stopped): UNAVAILABLE, which the client policy retries.
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;
        silent.Stop();
        using var refused = new H2cCallInvoker(new Uri($"http://127.0.0.1:{port}"), null);
        var down = await Assert.ThrowsAsync<RpcException>(async () => await new Checkout.CheckoutClient(refused).ReserveAsync(new ReserveRequest { ReservationId = "down" }));
        Assert.Equal(StatusCode.Unavailable, down.StatusCode);
        Assert.True(ClientPolicy.IsTransient(down));
    }

    [Fact]
    public async Task A_server_that_stops_fails_the_next_call_unavailable_and_once_it_is_back_a_new_connection_serves()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (first, addresses) = await EchoServer.StartAsync([0], cts.Token);
        using var invoker = new H2cCallInvoker(addresses[0], null);
        var checkout = new Checkout.CheckoutClient(invoker);
        Assert.Equal("before", (await checkout.ReserveAsync(new ReserveRequest { ReservationId = "before" })).ReservationId);

        // A graceful stop: Kestrel sends GOAWAY and closes the connection.
        await first.StopAsync(cts.Token);
        await first.DisposeAsync();
        var down = await Assert.ThrowsAsync<RpcException>(async () => await checkout.ReserveAsync(new ReserveRequest { ReservationId = "down" }, deadline: DateTime.UtcNow.AddSeconds(10)));
        Assert.Equal(StatusCode.Unavailable, down.StatusCode);

        var (again, _) = await EchoServer.StartAsync([addresses[0].Port], cts.Token);
        await using var _ = again;
        Assert.Equal("back", (await checkout.ReserveAsync(new ReserveRequest { ReservationId = "back" }, deadline: DateTime.UtcNow.AddSeconds(10))).ReservationId);
        Assert.Equal(1, invoker.OpenConnections);
    }

    [Fact]
    public async Task A_cancelled_call_fails_cancelled_and_the_connection_goes_on()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        using var invoker = new H2cCallInvoker(new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}"), null);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var cancelled = await Assert.ThrowsAsync<RpcException>(async () =>
            await new Checkout.CheckoutClient(invoker).ReserveAsync(new ReserveRequest { ReservationId = "c" }, cancellationToken: cancel.Token));
        Assert.Equal(StatusCode.Cancelled, cancelled.StatusCode);
    }
}
