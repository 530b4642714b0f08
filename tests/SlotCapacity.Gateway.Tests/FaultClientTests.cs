using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Faults;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// The fault suite's client keeps the client contract (gateway/README.md): an id with an attempt that
/// went unanswered is released unless the call ends holding it. Against a scripted Checkout service.
/// </summary>
public sealed class FaultClientTests
{
    private static readonly SlotId Slot = new() { Hub = "LON1", Start = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(new DateTime(2030, 5, 6, 10, 0, 0, DateTimeKind.Utc)) };

    private static ReservationReply Accepted(ReserveRequest r) => new() { ReservationId = r.ReservationId, Accepted = true, Status = ReservationStatus.Booked };

    private static ReservationReply Abandoned(ReserveRequest r) =>
        new() { ReservationId = r.ReservationId, Reason = RejectReason.Unavailable, Retryable = true, Status = ReservationStatus.Abandoned };

    private static ReservationReply Released(ReleaseRequest r) => new() { ReservationId = r.ReservationId, Accepted = true, Status = ReservationStatus.Released };

    private static Task<ReservationReply> NoAnswer() => Task.FromException<ReservationReply>(new RpcException(new Status(StatusCode.Unavailable, "connection reset")));

    [Fact]
    public async Task A_call_that_ends_without_an_answer_releases_its_id_and_an_unanswered_release_is_retried_after_the_calls()
    {
        // The release goes unanswered for the six attempts the call makes, and is answered on the seventh.
        await using var checkout = await ScriptedCheckout.StartAsync((_, _) => NoAnswer(), (r, n) => n <= 6 ? NoAnswer() : Task.FromResult(Released(r)));
        using var client = new CheckoutClient([checkout.Url], null, null);

        var call = await client.ReserveAsync(Slot, "r-1", 0, Stopwatch.StartNew());

        Assert.True(call.Lost);
        Assert.Equal(Enumerable.Repeat("r-1", 6), checkout.Released);
        Assert.Equal((1, 1), (call.Released, call.ReleasesUnanswered));
        Assert.Equal((1, 0), await client.SettleReleasesAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(Enumerable.Repeat("r-1", 7), checkout.Released);
        Assert.Equal((0, 0), await client.SettleReleasesAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task An_id_abandoned_after_an_unanswered_attempt_is_released_and_the_new_id_that_was_accepted_is_kept()
    {
        await using var checkout = await ScriptedCheckout.StartAsync((r, n) => n switch
        {
            1 => NoAnswer(),
            2 => Task.FromResult(Abandoned(r)),
            _ => Task.FromResult(Accepted(r)),
        });
        using var client = new CheckoutClient([checkout.Url], null, null);

        var call = await client.ReserveAsync(Slot, "r-2", 0, Stopwatch.StartNew());

        Assert.True(call.Accepted);
        Assert.Equal(["r-2", "r-2", "r-2-r2"], checkout.Reserved);
        Assert.Equal(["r-2"], checkout.Released);
    }

    [Fact]
    public async Task An_id_accepted_on_a_retry_is_not_released_and_a_call_answered_at_once_releases_nothing()
    {
        await using var checkout = await ScriptedCheckout.StartAsync((r, n) => n == 1 ? NoAnswer() : Task.FromResult(Accepted(r)));
        using var client = new CheckoutClient([checkout.Url], null, null);

        var retried = await client.ReserveAsync(Slot, "r-3", 0, Stopwatch.StartNew());
        var atOnce = await client.ReserveAsync(Slot, "r-4", 0, Stopwatch.StartNew());

        Assert.True(retried.Accepted && atOnce.Accepted);
        Assert.Empty(checkout.Released);
        Assert.Equal(0, retried.Released + atOnce.Released);
    }

    /// <summary>A Checkout service on a loopback port whose Reserve answers as the script says (n counts
    /// calls from 1); Release is recorded and answers as its script says (accepted without one).</summary>
    private sealed class ScriptedCheckout : Checkout.CheckoutBase, IAsyncDisposable
    {
        private readonly Func<ReserveRequest, int, Task<ReservationReply>> _reserve;
        private readonly Func<ReleaseRequest, int, Task<ReservationReply>> _release;
        private readonly ConcurrentQueue<string> _reserved = new();
        private readonly ConcurrentQueue<string> _released = new();
        private WebApplication? _app;
        private int _calls;
        private int _releases;

        private ScriptedCheckout(Func<ReserveRequest, int, Task<ReservationReply>> reserve, Func<ReleaseRequest, int, Task<ReservationReply>> release) =>
            (_reserve, _release) = (reserve, release);

        public string Url { get; private set; } = "";
        public IReadOnlyList<string> Reserved => [.. _reserved];
        public IReadOnlyList<string> Released => [.. _released];

        public static async Task<ScriptedCheckout> StartAsync(Func<ReserveRequest, int, Task<ReservationReply>> reserve,
            Func<ReleaseRequest, int, Task<ReservationReply>>? release = null)
        {
            var service = new ScriptedCheckout(reserve, release ?? ((r, _) => Task.FromResult(Released(r))));
            var builder = WebApplication.CreateBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(service);
            var app = builder.Build();
            app.MapGrpcService<ScriptedCheckout>();
            await app.StartAsync();
            service._app = app;
            service.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
            return service;
        }

        public override Task<ReservationReply> Reserve(ReserveRequest request, ServerCallContext context)
        {
            _reserved.Enqueue(request.ReservationId);
            return _reserve(request, Interlocked.Increment(ref _calls));
        }

        public override Task<ReservationReply> Release(ReleaseRequest request, ServerCallContext context)
        {
            _released.Enqueue(request.ReservationId);
            return _release(request, Interlocked.Increment(ref _releases));
        }

        public async ValueTask DisposeAsync()
        {
            if (_app is not null) await _app.DisposeAsync();
        }
    }
}
