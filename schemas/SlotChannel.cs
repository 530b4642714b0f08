using Grpc.Core;
using Grpc.Net.Client;

namespace SlotCapacity.Contracts;

/// <summary>
/// A gRPC channel to a gateway that presents a bearer token on every call (metadata
/// <c>authorization: Bearer TOKEN</c>). Shared by the CLI, the load harness, the fault suite and tests.
/// </summary>
public static class SlotChannel
{
    /// <summary>Environment variable the CLI and tools read a token from when none is passed.</summary>
    public const string TokenVariable = "SLOT_TOKEN";

    /// <summary>First wait before reconnecting to a gateway that refused a connection; it doubles up to <see cref="MaxReconnectBackoff"/>.</summary>
    public static readonly TimeSpan ReconnectBackoff = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan MaxReconnectBackoff = TimeSpan.FromSeconds(1);

    public static GrpcChannel ForAddress(string address, string? token, GrpcChannelOptions? options = null)
    {
        options ??= new GrpcChannelOptions();
        // A restarting gateway refuses connections for a moment, and gRPC's default reconnect backoff
        // (1 s, growing to 120 s) then fails calls to it at once for long after it is back: in a
        // rolling restart both gateways of a client could look down while one was serving. Checkout
        // retries on the other gateway meanwhile, so reconnecting soon is what it wants.
        options.InitialReconnectBackoff = ReconnectBackoff;
        options.MaxReconnectBackoff = MaxReconnectBackoff;
        if (!string.IsNullOrEmpty(token))
        {
            // Built once per channel: each call only adds the ready-made header.
            var header = "Bearer " + token;
            var perCall = CallCredentials.FromInterceptor((_, metadata) =>
            {
                metadata.Add("authorization", header);
                return Task.CompletedTask;
            });
            var secure = address.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
            options.Credentials = ChannelCredentials.Create(secure ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure, perCall);
            // The gateway serves cleartext only on loopback (or inside its container); anywhere else it needs TLS.
            options.UnsafeUseInsecureChannelCallCredentials = !secure;
        }
        return GrpcChannel.ForAddress(address, options);
    }

    /// <summary>
    /// The token a tool uses for <paramref name="role"/>: $SLOT_{ROLE}_TOKEN (e.g. SLOT_PLANNER_TOKEN),
    /// else the file <c>tokens/{role}</c> that `make run` writes in its run directory; null if neither.
    /// </summary>
    public static string? TokenFor(string role, string runDirectory = ".run")
    {
        ArgumentNullException.ThrowIfNull(role);
        if (Environment.GetEnvironmentVariable($"SLOT_{role.ToUpperInvariant()}_TOKEN") is { Length: > 0 } token) return token;
        var file = Path.Combine(runDirectory, "tokens", role);
        return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
    }

    public static GrpcChannel ForAddress(Uri address, string? token, GrpcChannelOptions? options = null) =>
        ForAddress(address?.ToString() ?? throw new ArgumentNullException(nameof(address)), token, options);
}
