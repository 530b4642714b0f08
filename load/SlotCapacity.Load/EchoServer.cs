using System.Net;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;

namespace SlotCapacity.Load;

/// <summary>
/// A trivial server of the Checkout and Planning services (same proto as the gateways) that
/// answers every call at once, on loopback h2c: what the self-check drives to find the harness's
/// own limits. No per-call logging.
/// </summary>
public static class EchoServer
{
    /// <summary>Starts it on the given loopback ports (0 = any free port); returns it with its addresses.</summary>
    public static async Task<(WebApplication App, IReadOnlyList<Uri> Addresses)> StartAsync(IReadOnlyList<int> ports, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            foreach (var port in ports) kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2);
        });
        builder.Services.AddGrpc();
        var app = builder.Build();
        app.MapGrpcService<EchoCheckout>();
        app.MapGrpcService<EchoPlanning>();
        await app.StartAsync(ct);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal))).ToList();
        return (app, addresses);
    }

    /// <summary>Runs until the process is told to stop (SIGTERM, Ctrl-C).</summary>
    public static async Task RunAsync(IReadOnlyList<int> ports, CancellationToken ct)
    {
        var (app, addresses) = await StartAsync(ports, ct);
        Console.WriteLine($"echo server on {string.Join(", ", addresses)}");
        await app.WaitForShutdownAsync(ct);
    }

    private sealed class EchoCheckout : Checkout.CheckoutBase
    {
        // A day of one hub, as a gateway answers it: seven slots.
        private static readonly AvailabilityReply Day = MakeDay();

        private static AvailabilityReply MakeDay()
        {
            var reply = new AvailabilityReply();
            for (var i = 0; i < SlotPlan.WindowStartHours.Length; i++)
                reply.Slots.Add(new SlotAvailability { Open = true, CanTake = true, FillRatio = 0.5, RemainingOrders = 10 });
            return reply;
        }

        private static Task<ReservationReply> Yes(string id, ReservationStatus status) =>
            Task.FromResult(new ReservationReply { ReservationId = id, Accepted = true, FleetCounter = "vans", Status = status });

        public override Task<ReservationReply> Reserve(ReserveRequest request, ServerCallContext context) =>
            Yes(request.ReservationId, request.HoldSeconds > 0 ? ReservationStatus.Held : ReservationStatus.Booked);

        public override Task<ReservationReply> Confirm(ConfirmRequest request, ServerCallContext context) =>
            Yes(request.ReservationId, ReservationStatus.Booked);

        public override Task<ReservationReply> Release(ReleaseRequest request, ServerCallContext context) =>
            Yes(request.ReservationId, ReservationStatus.Released);

        public override Task<AvailabilityReply> QueryAvailability(AvailabilityRequest request, ServerCallContext context) =>
            Task.FromResult(Day);
    }

    private sealed class EchoPlanning : Planning.PlanningBase
    {
        public override Task<ApplyPlanReply> ApplyPlan(ApplyPlanRequest request, ServerCallContext context)
        {
            var reply = new ApplyPlanReply { Applied = request.Slots.Count };
            foreach (var slot in request.Slots) reply.Results.Add(new SlotChangeResult { Slot = slot.Slot, Applied = true });
            return Task.FromResult(reply);
        }
    }
}
