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
/// went unanswered is released unless the call ends holding it, and it sends the experiment's slots
/// again when a system that has just started did not take them. Against scripted Checkout and Planning services.
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

    [Fact]
    public async Task Slots_a_just_started_system_did_not_take_are_sent_again_and_only_those()
    {
        await using var planning = await ScriptedPlanning.StartAsync(attempt => attempt == 1 ? i => i % 2 == 0 : _ => true);
        using var client = new CheckoutClient([planning.Url], null, null);

        var slots = await client.ConfigureSlotsAsync("FAULT-T", 6, 10);

        Assert.Equal(6, slots.Count);
        Assert.Equal([6, 3], planning.SlotsPerRequest);
    }

    [Fact]
    public async Task Slots_never_taken_end_the_run_before_it_starts_naming_how_many_and_why()
    {
        await using var planning = await ScriptedPlanning.StartAsync(_ => _ => false);
        using var client = new CheckoutClient([planning.Url], null, null);

        var refused = await Assert.ThrowsAsync<SlotsNotConfiguredException>(() => client.ConfigureSlotsAsync("FAULT-T", 4, 10));

        Assert.StartsWith("4 of the experiment's 4 slots were not configured after 3 attempts: no reply within the deadline", refused.Message, StringComparison.Ordinal);
        Assert.Equal([4, 4, 4], planning.SlotsPerRequest);
    }

    /// <summary>A Planning service on a loopback port whose ApplyPlan applies a slot when the script, given
    /// the attempt (from 1), says so for the slot's index in the request.</summary>
    private sealed class ScriptedPlanning : Planning.PlanningBase, IAsyncDisposable
    {
        private readonly Func<int, Func<int, bool>> _applies;
        private readonly ConcurrentQueue<int> _requests = new();
        private WebApplication? _app;
        private int _attempts;

        private ScriptedPlanning(Func<int, Func<int, bool>> applies) => _applies = applies;

        public string Url { get; private set; } = "";
        public IReadOnlyList<int> SlotsPerRequest => [.. _requests];

        public static async Task<ScriptedPlanning> StartAsync(Func<int, Func<int, bool>> applies)
        {
            var service = new ScriptedPlanning(applies);
            (service._app, service.Url) = await Host(service, app => app.MapGrpcService<ScriptedPlanning>());
            return service;
        }

        public override Task<ApplyPlanReply> ApplyPlan(ApplyPlanRequest request, ServerCallContext context)
        {
            _requests.Enqueue(request.Slots.Count);
            var applies = _applies(Interlocked.Increment(ref _attempts));
            var reply = new ApplyPlanReply
            {
                Results =
                {
                    request.Slots.Select((s, i) => applies(i)
                        ? new SlotChangeResult { Slot = s.Slot, Applied = true }
                        : new SlotChangeResult { Slot = s.Slot, Reason = RejectReason.Unavailable, Detail = "no reply within the deadline; re-sending the change is safe" }),
                },
            };
            reply.Applied = reply.Results.Count(r => r.Applied);
            reply.Failed = reply.Results.Count - reply.Applied;
            return Task.FromResult(reply);
        }

        public async ValueTask DisposeAsync()
        {
            if (_app is not null) await _app.DisposeAsync();
        }
    }

    /// <summary>Serves <paramref name="service"/> over HTTP/2 on a free loopback port; returns the app and its address.</summary>
    private static async Task<(WebApplication App, string Url)> Host<T>(T service, Action<WebApplication> map) where T : class
    {
        var builder = WebApplication.CreateBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(service);
        var app = builder.Build();
        map(app);
        await app.StartAsync();
        return (app, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());
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
            (service._app, service.Url) = await Host(service, app => app.MapGrpcService<ScriptedCheckout>());
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
