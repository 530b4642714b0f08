using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Before a gateway reports ready it calls itself, over its own port, once per checkout method. The
/// first call through Kestrel's HTTP/2, token validation, the interceptor, validation and a handler
/// JIT-compiles all of them, and on a busy machine that took longer than the checkout deadline: in a
/// rolling restart the restarted gateway reported ready, took the traffic of the one stopped next, and
/// missed its first deadlines (fault suite, gateway-rolling). The calls write nothing to Kafka: the
/// writes fail validation, the query asks about a hub that has no slots. A warm-up that fails (e.g.
/// client certificates required, or no key to sign its token with) is logged and never blocks readiness.
/// </summary>
public sealed class GatewayWarmUp(GatewaySettings settings, IServer server, ILogger<GatewayWarmUp> logger)
{
    private const string Hub = "WARMUP";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private volatile string? _outcome;

    /// <summary>Set once the warm-up calls have ended, however they ended.</summary>
    public bool Done => _outcome is not null;

    /// <summary>The status each call got, e.g. "Reserve InvalidArgument, ..., in 420 ms"; null until done.</summary>
    public string? Outcome => _outcome;

    public async Task RunAsync(CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var statuses = new List<string>();
        if (settings.Security.ClientCaFile is not null)
        {
            _outcome = "skipped: the gRPC port requires a client certificate, which the gateway has none of";
            logger.LogInformation("Gateway {Instance} warm-up {WarmUp}", settings.Instance, _outcome);
            return;
        }
        try
        {
            using var channel = Channel();
            var checkout = new Checkout.CheckoutClient(channel);
            var now = DateTimeOffset.UtcNow;
            var calls = new (string Method, Func<CallOptions, Task> Call)[]
            {
                ("QueryAvailability", o => checkout.QueryAvailabilityAsync(new AvailabilityRequest
                {
                    Hub = Hub, From = Timestamp.FromDateTimeOffset(now), To = Timestamp.FromDateTimeOffset(now.AddDays(1)),
                }, o).ResponseAsync),
                ("Reserve", o => checkout.ReserveAsync(new ReserveRequest(), o).ResponseAsync),
                ("Confirm", o => checkout.ConfirmAsync(new ConfirmRequest(), o).ResponseAsync),
                ("Release", o => checkout.ReleaseAsync(new ReleaseRequest(), o).ResponseAsync),
            };
            foreach (var (method, call) in calls)
                statuses.Add($"{method} {await StatusOf(call, new CallOptions(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct))}");
        }
        catch (Exception e) when (e is HttpRequestException or InvalidOperationException or IOException)
        {
            statuses.Add($"failed: {e.Message}");
        }
        finally
        {
            _outcome = $"{string.Join(", ", statuses)}, in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:0} ms";
            logger.LogInformation("Gateway {Instance} warmed up: {WarmUp}", settings.Instance, _outcome);
        }
    }

    private static async Task<StatusCode> StatusOf(Func<CallOptions, Task> call, CallOptions options)
    {
        try
        {
            await call(options);
            return StatusCode.OK;
        }
        catch (RpcException e)
        {
            return e.StatusCode;
        }
    }

    private GrpcChannel Channel()
    {
        var address = server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("the gateway listens on no address yet");
        var token = settings.Security.SigningKey is { } key
            ? SlotTokens.Issue(key, $"{settings.Instance}/warm-up", [SlotRoles.Checkout], TimeSpan.FromMinutes(1),
                settings.Security.Issuer, settings.Security.Audience)
            : null;
        // The channel is disposed after the warm-up, and with it any handler made here.
        var options = new GrpcChannelOptions { DisposeHttpClient = true };
        if (settings.Security.TlsCertificateFile is { } certificateFile)
        {
            // It calls itself: the certificate to trust is exactly the one it serves.
            string thumbprint;
            using (var own = X509Certificate2.CreateFromPemFile(certificateFile, settings.Security.TlsKeyFile)) thumbprint = own.GetCertHashString();
            options.HttpHandler = new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == thumbprint },
            };
        }
        return SlotChannel.ForAddress(address.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal), token, options);
    }
}
