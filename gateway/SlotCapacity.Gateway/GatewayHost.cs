using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry.Metrics;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>What a health probe or a test sees of a running gateway.</summary>
public sealed record GatewayStatus(
    string Instance,
    bool Ready,
    bool Stopping,
    bool ViewCaughtUp,
    int ViewSlots,
    int ViewSlotsFromCheckpoint,
    long ViewLagRecords,
    long ViewLagMs,
    IReadOnlyList<int> ReplyPartitions,
    int InFlight,
    long LateReplies,
    long DuplicateReplies,
    long UnknownReplies,
    long MalformedSnapshots,
    string? ViewIncomplete,
    long AbandonRetries,
    long AbandonsFailed,
    long OrphanedAccepts,
    string? WarmUp)
{
    public override string ToString() =>
        $"{Instance}: ready {Ready}, stopping {Stopping}, view caught up {ViewCaughtUp} ({ViewSlots} slots, {ViewSlotsFromCheckpoint} from the checkpoint, lag {ViewLagRecords} records / {ViewLagMs} ms{(ViewIncomplete is null ? "" : ", INCOMPLETE: " + ViewIncomplete)}), " +
        $"reply partitions [{string.Join(",", ReplyPartitions)}], in flight {InFlight}, dropped replies late {LateReplies} duplicate {DuplicateReplies} unknown {UnknownReplies}, malformed snapshots {MalformedSnapshots}, " +
        $"abandon retries {AbandonRetries} failed {AbandonsFailed}, orphaned accepts {OrphanedAccepts}, warm-up {WarmUp ?? "under way"}";
}

/// <summary>In-process entry point (the executable, tests and the load harness all start gateways here).</summary>
public static class GatewayHost
{
    /// <summary>Starts a gateway and returns once it listens (not necessarily ready: see
    /// <see cref="RunningGateway.WaitUntilReadyAsync"/>). Kafka topics must exist.</summary>
    public static async Task<RunningGateway> StartAsync(GatewaySettings settings, CancellationToken ct = default)
    {
        var app = Build(settings);
        await app.StartAsync(ct);
        // Kestrel lists the endpoints in the order they were configured: gRPC first, then admin.
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();
        return new RunningGateway(app, addresses[0], addresses[1], app.Services.GetRequiredService<GatewayCore>());
    }

    internal static WebApplication Build(GatewaySettings settings)
    {
        settings.Security.Validate();
        var endpoint = Loopback(settings.Url, settings.Security.Tls);
        var admin = settings.AdminUrl is { } adminUrl
            ? Loopback(adminUrl, tls: false)
            : new IPEndPoint(endpoint.Address, endpoint.Port == 0 ? 0 : endpoint.Port + 1000);
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(GatewayHost).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Without TLS Kestrel cannot offer HTTP/1.1 and HTTP/2 on one port: gRPC gets cleartext
            // HTTP/2 (or TLS when a certificate is configured), /health and /metrics an HTTP/1.1
            // admin port (what Prometheus and curl speak).
            // Kestrel bounds a connection's queue of pending stream output by twice this, and when a
            // pause (a GC, a starved core) lets that queue fill, as a burst of calls reset at their
            // deadlines does, it aborts the whole connection, taking other callers' answers with it
            // (accepts among them, seen under the fault suite at 10x). One connection may carry as many
            // calls as the gateway admits; beyond them the in-flight gate sheds with a clear answer.
            kestrel.Limits.Http2.MaxStreamsPerConnection = Math.Max(100, settings.MaxInFlight);
            kestrel.Listen(endpoint, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (settings.Security.Tls) listen.UseGatewayTls(settings.Security);
            });
            kestrel.Listen(admin, listen => listen.Protocols = HttpProtocols.Http1);
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.ShutdownTimeout + TimeSpan.FromSeconds(5));

        builder.Logging.ClearProviders();
        if (settings.ConfigureLogging is { } configure)
        {
            configure(builder.Logging);
        }
        else
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
            });
        }
        builder.Logging.SetMinimumLevel(settings.LogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // While this category is enabled at any level, hosting starts an Activity and a log scope for
        // every request, which no log line here ever uses (it logs only request start and end, at
        // Information): a measurable part of a read's CPU (load/README.md).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // gRPC logs every non-OK status at Information: one line per shed or invalid call would
        // flood the logs exactly when the gateway is overloaded. Metrics count them instead.
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
        // It logs every unhealthy probe as an error; "not ready yet" while starting is normal and
        // the gateway logs its own readiness changes.
        builder.Logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.Critical);

        var services = builder.Services;
        services.AddSingleton(settings);
        services.AddSingleton(sp => new GatewayMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.AddSingleton<ReplyRouter>();
        services.AddSingleton<ReplyListener>();
        services.AddSingleton<CommandDispatcher>();
        services.AddSingleton(new InFlightGate(settings.MaxInFlight));
        services.AddSingleton<GatewayCalls>();
        services.AddSingleton<GatewayCallInterceptor>();
        services.AddSingleton<AvailabilityView>();
        services.AddSingleton<AvailabilityFollower>();
        services.AddSingleton<GatewayWarmUp>();
        services.AddSingleton<GatewayCore>();
        services.AddHostedService(sp => sp.GetRequiredService<GatewayCore>());
        services.AddConsole();

        services.AddGatewaySecurity(settings.Security);
        services.AddGrpc(o =>
        {
            o.EnableDetailedErrors = false;
            // Requests only: replies are bounded by the request, and a plan's reply must never fail
            // after its changes were applied.
            o.MaxReceiveMessageSize = settings.Security.MaxMessageBytes;
        })
            // Admission, refusal metrics and INVALID_ARGUMENT counting for the two APIs only (not health, reflection).
            .AddServiceOptions<CheckoutService>(o => o.Interceptors.Add<GatewayCallInterceptor>())
            .AddServiceOptions<PlanningService>(o => o.Interceptors.Add<GatewayCallInterceptor>());
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks(o =>
            {
                o.Services.Map("", r => r.Tags.Contains("ready"));
                o.Services.Map("slotcapacity.v1.Checkout", r => r.Tags.Contains("ready"));
                o.Services.Map("slotcapacity.v1.Planning", r => r.Tags.Contains("ready"));
            })
            .AddCheck<ReadinessCheck>("ready", tags: ["ready"]);
        services.Configure<HealthCheckPublisherOptions>(o =>
        {
            o.Delay = TimeSpan.Zero;
            o.Period = TimeSpan.FromSeconds(1);
        });
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(GatewayMetrics.MeterName)
            .AddPrometheusExporter());

        var app = builder.Build();
        // Who may call what is on each service and method ([Authorize(Policy = SlotPolicies...)]);
        // the rate limiter runs after authorization so it counts per authenticated caller.
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.MapGrpcService<CheckoutService>();
        app.MapGrpcService<PlanningService>();
        // Load balancers and orchestrators probe health without credentials; it tells only SERVING or not.
        app.MapGrpcHealthChecksService().AllowAnonymous();
        app.MapGrpcReflectionService().RequireAuthorization(SlotPolicies.Authenticated);
        app.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous();
        app.MapGet("/health", (GatewayCore core) =>
        {
            var status = core.Status();
            return Results.Json(status, JsonOptions, statusCode: status.Ready ? 200 : 503);
        }).AllowAnonymous();
        app.MapConsole();
        return app;
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>
    /// Without TLS the gateway listens on loopback only; anything else is a startup error. The one
    /// exception is http://0.0.0.0:PORT inside a .NET container image (DOTNET_RUNNING_IN_CONTAINER=true),
    /// where the container's own network namespace and a 127.0.0.1-only port mapping are the boundary.
    /// With TLS (<paramref name="tls"/>) the URL is https://ADDRESS:PORT and any address may be bound:
    /// tokens then never cross a network in clear.
    /// </summary>
    internal static IPEndPoint Loopback(string url, bool tls)
    {
        if (tls)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var secure) || secure.Scheme != "https")
                throw new StartupException($"--urls '{url}': TLS is configured (GATEWAY_TLS_CERT_FILE), so use an https URL, e.g. --urls https://0.0.0.0:5101");
            if (secure.Host == "localhost") return new IPEndPoint(IPAddress.Loopback, secure.Port);
            return IPAddress.TryParse(secure.Host, out var address)
                ? new IPEndPoint(address, secure.Port)
                : throw new StartupException($"--urls '{url}': name the address to bind as an IP, e.g. https://0.0.0.0:{secure.Port}");
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != "http")
            throw new StartupException($"--urls '{url}' is not an http URL: use e.g. --urls http://127.0.0.1:5101 (https needs GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE)");
        if (uri.Host is "127.0.0.1" or "localhost") return new IPEndPoint(IPAddress.Loopback, uri.Port);
        if (uri.Host == "0.0.0.0" && Environment.GetEnvironmentVariable("DOTNET_RUNNING_IN_CONTAINER") == "true")
            return new IPEndPoint(IPAddress.Any, uri.Port);
        throw new StartupException($"--urls '{url}': the gateway binds to 127.0.0.1 only; use --urls http://127.0.0.1:{(uri.IsDefaultPort ? 5101 : uri.Port)}");
    }

    private sealed class ReadinessCheck(GatewayCore core) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
        {
            var status = core.Status();
            return Task.FromResult(status.Ready
                ? HealthCheckResult.Healthy($"view lag {status.ViewLagRecords} records, reply partitions {string.Join(",", status.ReplyPartitions)}")
                : HealthCheckResult.Unhealthy(status.Stopping ? "stopping"
                    : !status.ViewCaughtUp ? "availability view still loading"
                    : status.ReplyPartitions.Count == 0 ? "no reply partition assigned yet"
                    : status.WarmUp is null ? "warming up (calling itself once per checkout method)"
                    : "command producer failed; restart the gateway"));
        }
    }
}

/// <summary>
/// Starts and stops the Kafka side around the web server. Stopping (SIGTERM, Ctrl-C or
/// <see cref="RunningGateway.StopAsync"/>): new calls are refused from the first moment, calls in
/// flight end by their reply or their deadline, then Kestrel stops, and only then does the reply
/// consumer leave the group and the producer flush (so Abandons written at the last deadlines go out).
/// </summary>
public sealed class GatewayCore(
    GatewaySettings settings,
    ReplyListener replies,
    AvailabilityFollower follower,
    AvailabilityView view,
    ReplyRouter router,
    CommandDispatcher dispatcher,
    InFlightGate gate,
    GatewayMetrics metrics,
    GatewayWarmUp warmUp,
    ILogger<GatewayCore> logger) : IHostedLifecycleService
{
    public GatewayStatus Status()
    {
        var (lagRecords, lagMs) = follower.Lag();
        var owned = replies.OwnedPartitions;
        var (late, duplicate, unknown) = router.Dropped;
        var ready = !gate.Stopping && follower.CaughtUp && owned.Count > 0 && warmUp.Done && dispatcher.FatalError is null && replies.FatalError is null;
        var (retries, failed, orphaned) = dispatcher.AbandonCounts;
        return new GatewayStatus(settings.Instance, ready, gate.Stopping,
            follower.CaughtUp, view.SlotCount, follower.SlotsFromCheckpoint, lagRecords, lagMs, owned, gate.InFlight, late, duplicate, unknown, follower.Malformed,
            follower.Incomplete, retries, failed, orphaned, warmUp.Outcome);
    }

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        follower.Start(TimeSpan.FromSeconds(10));
        replies.Orphaned += dispatcher.Orphaned;
        replies.Start(TimeSpan.FromSeconds(10));
        metrics.ObserveGauges(() => gate.InFlight, () => follower.Lag().Records, () => follower.Lag().Ms, () => replies.OwnedPartitions.Count);
        logger.LogInformation("Gateway {Instance} (incarnation {Incarnation}) starting: commands {Commands}, replies {Replies} ({Ownership}), availability {Availability}, deadline {DeadlineMs} ms, max in flight {MaxInFlight}",
            settings.Instance, router.Incarnation, settings.Topics.Commands, settings.Topics.Replies,
            settings.ReplyShare is { } share ? $"share {share}" : $"group {ReplyListener.GroupId(settings.Topics)}", settings.Topics.Availability,
            settings.Deadline.TotalMilliseconds, settings.MaxInFlight);
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    /// <summary>Kestrel listens now: the warm-up runs beside the view's catch-up, so it rarely delays readiness.</summary>
    public Task StartedAsync(CancellationToken cancellationToken)
    {
        _ = Task.Run(() => warmUp.RunAsync(CancellationToken.None), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        gate.BeginStop();
        logger.LogInformation("Gateway {Instance} stopping: refusing new calls, {InFlight} in flight", settings.Instance, gate.InFlight);
        var drained = await Task.WhenAny(gate.DrainedAsync, Task.Delay(settings.ShutdownTimeout, cancellationToken)) == gate.DrainedAsync;
        if (drained) logger.LogInformation("Gateway {Instance}: every call in flight answered", settings.Instance);
        else logger.LogWarning("Gateway {Instance}: {InFlight} calls still in flight after {Timeout}", settings.Instance, gate.InFlight, settings.ShutdownTimeout);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        replies.Stop();
        var left = clock.ElapsedMilliseconds;
        dispatcher.Flush(TimeSpan.FromSeconds(5));
        var flushed = clock.ElapsedMilliseconds;
        follower.Stop();
        logger.LogInformation("Gateway {Instance} stopped: left the reply group in {LeaveMs} ms, commands flushed in {FlushMs} ms, view closed in {ViewMs} ms",
            settings.Instance, left, flushed - left, clock.ElapsedMilliseconds - flushed);
        return Task.CompletedTask;
    }
}

/// <summary>A started gateway: its address, status and a graceful stop.</summary>
public sealed class RunningGateway : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly GatewayCore core;
    private int stopped;

    internal RunningGateway(WebApplication app, Uri address, Uri adminAddress, GatewayCore core)
    {
        this.app = app;
        this.core = core;
        Address = address;
        AdminAddress = adminAddress;
    }

    /// <summary>gRPC (HTTP/2 cleartext, or TLS when configured), e.g. http://127.0.0.1:5101/.</summary>
    public Uri Address { get; }

    /// <summary>/health and /metrics over HTTP/1.1, e.g. http://127.0.0.1:6101/.</summary>
    public Uri AdminAddress { get; }

    public GatewayStatus Status() => core.Status();

    /// <summary>Planners' consoles following live updates now.</summary>
    public int ConsoleListeners => app.Services.GetRequiredService<ConsoleFeed>().Listeners;

    /// <summary>Waits until the availability view has caught up and a reply partition is owned.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Status().Ready)
        {
            if (DateTime.UtcNow >= deadline)
                throw new TimeoutException($"gateway {Status().Instance} not ready after {timeout}: {Status()}");
            await Task.Delay(20, ct);
        }
    }

    /// <summary>Graceful stop: refuse new calls, answer those in flight, leave the reply group.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref stopped, 1) == 1) return;
        await app.StopAsync();
        await app.DisposeAsync();
    }

    public ValueTask DisposeAsync() => new(StopAsync());
}
