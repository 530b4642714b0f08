using System.Security.Claims;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>The roles a caller's token can carry (claim <see cref="SlotClaims.Role"/>).</summary>
public static class SlotRoles
{
    /// <summary>Reserve, Confirm, Release, QueryAvailability.</summary>
    public const string Checkout = "checkout";
    /// <summary>The Planning API and every write of the planners' console; also every read a viewer has.</summary>
    public const string Planner = "planner";
    /// <summary>Read-only: utilisation and the console's reads.</summary>
    public const string Viewer = "viewer";

    public static readonly IReadOnlyList<string> All = [Checkout, Planner, Viewer];
}

/// <summary>
/// Authorization policy names. A gRPC method carries <c>[Authorize(Policy = SlotPolicies.Planner)]</c>;
/// a minimal-API endpoint <c>.RequireAuthorization(SlotPolicies.Viewer)</c>.
/// </summary>
public static class SlotPolicies
{
    /// <summary>Role <see cref="SlotRoles.Checkout"/>.</summary>
    public const string Checkout = "slot-checkout";
    /// <summary>Role <see cref="SlotRoles.Planner"/>: every change of capacity.</summary>
    public const string Planner = "slot-planner";
    /// <summary>Role <see cref="SlotRoles.Viewer"/> or <see cref="SlotRoles.Planner"/>: reads for planners.</summary>
    public const string Viewer = "slot-viewer";
    /// <summary>Any valid token (server reflection).</summary>
    public const string Authenticated = "slot-authenticated";
    /// <summary>Rate-limiter policy of the Planning API: a token bucket per token subject.</summary>
    public const string PlanningRate = "slot-planning-rate";
}

/// <summary>Claim names of the gateway's tokens (JWT names, not mapped to .NET's long URIs).</summary>
public static class SlotClaims
{
    public const string Subject = "sub";
    public const string Role = "role";
}

/// <summary>
/// How the gateway authenticates callers and protects itself. Exactly one of <see cref="SigningKey"/>
/// (tokens signed HS256 with a shared key, issued by <see cref="SlotTokens"/>) or <see cref="Authority"/>
/// (an OpenID Connect issuer whose published keys sign the tokens) must be set.
/// </summary>
public sealed record SecuritySettings
{
    public const string DefaultIssuer = "slot-capacity";
    public const string DefaultAudience = "slot-capacity";

    /// <summary>HS256 key, at least 32 bytes (GATEWAY_JWT_SIGNING_KEY_FILE: a file holding it in base64).</summary>
    public byte[]? SigningKey { get; init; }
    /// <summary>OpenID Connect issuer URL (GATEWAY_JWT_AUTHORITY); its discovery document names the keys.</summary>
    public string? Authority { get; init; }
    /// <summary>Expected <c>iss</c> with a signing key (GATEWAY_JWT_ISSUER); an authority's own issuer otherwise.</summary>
    public string Issuer { get; init; } = DefaultIssuer;
    /// <summary>Expected <c>aud</c> (GATEWAY_JWT_AUDIENCE).</summary>
    public string Audience { get; init; } = DefaultAudience;
    /// <summary>Claim holding the roles (GATEWAY_JWT_ROLE_CLAIM), e.g. <c>roles</c> for some identity providers.</summary>
    public string RoleClaim { get; init; } = SlotClaims.Role;
    /// <summary>PEM certificate and key of the gRPC endpoint (GATEWAY_TLS_CERT_FILE, GATEWAY_TLS_KEY_FILE); null = cleartext h2c.</summary>
    public string? TlsCertificateFile { get; init; }
    public string? TlsKeyFile { get; init; }
    /// <summary>PEM CA bundle (GATEWAY_TLS_CLIENT_CA_FILE): with it, the TLS handshake requires a client
    /// certificate issued by this CA (mTLS), on top of the token. Needs TLS.</summary>
    public string? ClientCaFile { get; init; }
    /// <summary>Largest gRPC request message (GATEWAY_MAX_MESSAGE_BYTES); a bigger one is refused RESOURCE_EXHAUSTED unread.</summary>
    public int MaxMessageBytes { get; init; } = 4 * 1024 * 1024;
    /// <summary>Planning calls each caller may make per second (GATEWAY_PLANNING_RATE) ...</summary>
    public int PlanningCallsPerSecond { get; init; } = 5;
    /// <summary>... and at once after a quiet spell (GATEWAY_PLANNING_BURST).</summary>
    public int PlanningBurst { get; init; } = 20;

    public bool Tls => TlsCertificateFile is not null;

    /// <summary>Throws <see cref="StartupException"/> naming the fix when the settings cannot protect the gateway.</summary>
    public void Validate()
    {
        var problems = Problems().ToList();
        if (problems.Count > 0) throw new StartupException(string.Join('\n', problems));
    }

    /// <summary>What keeps these settings from protecting the gateway, one line each naming the variable and the fix.</summary>
    public IEnumerable<string> Problems()
    {
        if (SigningKey is null == Authority is null)
            yield return SigningKey is null
                ? "no token validation configured: set GATEWAY_JWT_SIGNING_KEY_FILE (a file with a base64 key of at least 32 bytes; `make run` generates .run/auth/signing-key) or GATEWAY_JWT_AUTHORITY (an OpenID Connect issuer URL)"
                : "GATEWAY_JWT_SIGNING_KEY_FILE and GATEWAY_JWT_AUTHORITY are both set: keep one";
        if (SigningKey is { Length: < SlotTokens.MinimumKeyBytes })
            yield return $"the token signing key has {SigningKey.Length} bytes; HS256 needs at least {SlotTokens.MinimumKeyBytes}: generate one with `head -c 32 /dev/urandom | base64`";
        if (Authority is not null && !Authority.StartsWith("https://", StringComparison.Ordinal))
            yield return $"GATEWAY_JWT_AUTHORITY='{Authority}' is not an https URL; token keys are only fetched over TLS";
        if (TlsCertificateFile is null != TlsKeyFile is null)
            yield return "set both GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE (PEM files) or neither";
        if (ClientCaFile is not null && !Tls)
            yield return "GATEWAY_TLS_CLIENT_CA_FILE needs TLS: set GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE too";
        foreach (var (name, file) in new[] { ("GATEWAY_TLS_CERT_FILE", TlsCertificateFile), ("GATEWAY_TLS_KEY_FILE", TlsKeyFile), ("GATEWAY_TLS_CLIENT_CA_FILE", ClientCaFile) })
            if (file is not null && !File.Exists(file))
                yield return $"{name}='{file}' does not exist";
    }
}

/// <summary>Issues the gateway's HS256 tokens (the CLI's <c>token</c> verb, <c>make run</c>, tests).</summary>
public static class SlotTokens
{
    public const int MinimumKeyBytes = 32;
    public static readonly TimeSpan MaximumLifetime = TimeSpan.FromDays(1);

    public static byte[] NewKey() => RandomNumberGenerator.GetBytes(MinimumKeyBytes);

    /// <summary>A key file holds the key in base64 (whitespace around it ignored).</summary>
    public static byte[] ReadKey(string file)
    {
        if (!File.Exists(file)) throw new StartupException($"token signing key file '{file}' does not exist");
        try
        {
            return Convert.FromBase64String(File.ReadAllText(file).Trim());
        }
        catch (FormatException)
        {
            throw new StartupException($"token signing key file '{file}' is not base64: generate one with `head -c 32 /dev/urandom | base64 > {file}`");
        }
    }

    /// <summary>A token for <paramref name="subject"/> with <paramref name="roles"/>, valid from
    /// <paramref name="issuedAt"/> (default now) for <paramref name="lifetime"/> (at most a day).</summary>
    public static string Issue(byte[] key, string subject, IEnumerable<string> roles, TimeSpan lifetime,
        string issuer = SecuritySettings.DefaultIssuer, string audience = SecuritySettings.DefaultAudience, DateTime? issuedAt = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (string.IsNullOrWhiteSpace(subject)) throw new ArgumentException("--subject is empty: name the caller, e.g. --subject alice");
        if (lifetime <= TimeSpan.Zero || lifetime > MaximumLifetime)
            throw new ArgumentException($"--ttl {lifetime} must be more than 0 and at most {MaximumLifetime.TotalHours:0}h: tokens are short-lived, issue a new one");
        var roleList = roles.ToList();
        foreach (var role in roleList)
            if (!SlotRoles.All.Contains(role))
                throw new ArgumentException($"--role '{role}' is not a role: use {string.Join(", ", SlotRoles.All)}");
        if (roleList.Count == 0) throw new ArgumentException($"--role is required: {string.Join(", ", SlotRoles.All)}");
        var now = issuedAt ?? DateTime.UtcNow;
        var identity = new ClaimsIdentity([new Claim(SlotClaims.Subject, subject), .. roleList.Select(r => new Claim(SlotClaims.Role, r))]);
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Subject = identity,
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + lifetime,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(key), SecurityAlgorithms.HmacSha256),
        });
    }
}

/// <summary>Registers authentication, the role policies, the Planning rate limit and TLS; see gateway/README.md "Security".</summary>
internal static class GatewaySecurity
{
    public static void AddGatewaySecurity(this IServiceCollection services, SecuritySettings security)
    {
        // Authentication brings data protection along; bearer tokens need none of it (no cookies, no
        // state), so its keys stay in memory rather than in a key ring written to the home directory.
        services.AddDataProtection().UseEphemeralDataProtectionProvider();
        services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(o =>
        {
            // Keep "sub" and "role" as written instead of .NET's long claim URIs.
            o.MapInboundClaims = false;
            // A token is validated once, then remembered until it expires (ValidatedTokenCache).
            o.TokenHandlers.Clear();
            o.TokenHandlers.Add(ValidatedTokenCache.ForJwt(TimeProvider.System));
            // Nothing reads the token back from the authentication properties: storing it was a copy per call.
            o.SaveToken = false;
            o.TokenValidationParameters = new TokenValidationParameters
            {
                ValidateIssuer = true,
                ValidateAudience = true,
                ValidateLifetime = true,
                ValidateIssuerSigningKey = true,
                RequireExpirationTime = true,
                RequireSignedTokens = true,
                ValidAudience = security.Audience,
                NameClaimType = SlotClaims.Subject,
                RoleClaimType = security.RoleClaim,
                ClockSkew = TimeSpan.FromSeconds(30),
            };
            if (security.SigningKey is { } key)
            {
                o.TokenValidationParameters.ValidIssuer = security.Issuer;
                o.TokenValidationParameters.IssuerSigningKey = new SymmetricSecurityKey(key);
                // Only the algorithm the key is for: no "alg: none", no key confusion.
                o.TokenValidationParameters.ValidAlgorithms = [SecurityAlgorithms.HmacSha256];
            }
            else
            {
                o.Authority = security.Authority;
                o.RequireHttpsMetadata = true;
            }
            o.Events = new JwtBearerEvents
            {
                OnAuthenticationFailed = context =>
                {
                    context.HttpContext.Items[FailureKey] = Reason(context.Exception);
                    return Task.CompletedTask;
                },
            };
        });
        services.AddAuthorizationBuilder()
            .AddPolicy(SlotPolicies.Checkout, p => p.RequireAuthenticatedUser().RequireRole(SlotRoles.Checkout))
            .AddPolicy(SlotPolicies.Planner, p => p.RequireAuthenticatedUser().RequireRole(SlotRoles.Planner))
            .AddPolicy(SlotPolicies.Viewer, p => p.RequireAuthenticatedUser().RequireRole(SlotRoles.Viewer, SlotRoles.Planner))
            .AddPolicy(SlotPolicies.Authenticated, p => p.RequireAuthenticatedUser())
            // Fail closed: an endpoint that names no policy still needs a valid token, unless it is
            // explicitly AllowAnonymous (health, metrics).
            .SetFallbackPolicy(new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, GrpcAuthorizationResults>();
        services.AddRateLimiter(o =>
        {
            o.AddPolicy(SlotPolicies.PlanningRate, http => RateLimitPartition.GetTokenBucketLimiter(
                http.User.Identity?.Name ?? "",
                _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = security.PlanningBurst,
                    TokensPerPeriod = security.PlanningCallsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                }));
            o.OnRejected = (context, _) =>
            {
                context.HttpContext.RequestServices.GetRequiredService<GatewayMetrics>().Rejected("RATE_LIMITED");
                return new ValueTask(GrpcStatusResponse.WriteAsync(context.HttpContext, Grpc.Core.StatusCode.ResourceExhausted,
                    $"planning rate limit: {context.HttpContext.User.Identity?.Name} may make {security.PlanningCallsPerSecond} planning calls per second (bursts of {security.PlanningBurst}); retry in a second, or send many slots in one ApplyPlan"));
            };
        });
    }

    /// <summary>TLS on the gRPC endpoint, and mTLS when a client CA is configured: a client without a
    /// certificate chaining to that CA never gets past the handshake.</summary>
    public static void UseGatewayTls(this Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions listen, SecuritySettings security)
    {
        var certificate = X509Certificate2.CreateFromPemFile(security.TlsCertificateFile!, security.TlsKeyFile);
        listen.UseHttps(https =>
        {
            https.ServerCertificate = certificate;
            if (security.ClientCaFile is not { } caFile) return;
            var authorities = new X509Certificate2Collection();
            authorities.ImportFromPemFile(caFile);
            https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            https.ClientCertificateValidation = (client, _, _) => ChainsTo(client, authorities, serverAuth: false);
        });
    }

    /// <summary>Whether <paramref name="certificate"/> chains to one of <paramref name="authorities"/> (and
    /// only them, not the machine's store) and may be used for client (or server) authentication.</summary>
    internal static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection authorities, bool serverAuth)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        // Revocation lists are the operator's CA's business; a private CA usually publishes none.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(serverAuth ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2"));
        return chain.Build(certificate);
    }

    internal const string FailureKey = "slot-auth-failure";

    /// <summary>One line on why a token was refused; never echoes the token.</summary>
    private static string Reason(Exception e) => e switch
    {
        SecurityTokenExpiredException expired => $"token expired at {expired.Expires:yyyy-MM-dd'T'HH:mm:ss'Z'}: issue a new one",
        SecurityTokenNotYetValidException early => $"token not valid before {early.NotBefore:yyyy-MM-dd'T'HH:mm:ss'Z'}",
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException => "token signature does not verify with this gateway's key",
        SecurityTokenInvalidAlgorithmException => "token signed with an algorithm this gateway does not accept",
        SecurityTokenInvalidIssuerException => "token issuer is not accepted here",
        SecurityTokenInvalidAudienceException => "token audience is not this service",
        SecurityTokenNoExpirationException => "token has no expiry",
        SecurityTokenMalformedException or ArgumentException => "token is not a well-formed JWT",
        _ => "token refused: " + e.GetType().Name,
    };

    /// <summary>
    /// Turns the authorization middleware's challenge and forbid into gRPC statuses with a one-line
    /// reason (UNAUTHENTICATED, PERMISSION_DENIED); other requests get the standard 401/403.
    /// </summary>
    private sealed class GrpcAuthorizationResults(GatewayMetrics metrics) : IAuthorizationMiddlewareResultHandler
    {
        private readonly AuthorizationMiddlewareResultHandler standard = new();

        public Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
        {
            if (authorizeResult.Succeeded || !GrpcStatusResponse.IsGrpc(context))
                return standard.HandleAsync(next, context, policy, authorizeResult);
            if (authorizeResult.Challenged)
            {
                metrics.Rejected("UNAUTHENTICATED");
                var why = context.Items[FailureKey] as string
                    ?? "no bearer token: send the metadata 'authorization: Bearer <token>' (issue one with `SlotCapacity.Gateway token --role ROLE --subject NAME`)";
                return GrpcStatusResponse.WriteAsync(context, Grpc.Core.StatusCode.Unauthenticated, why);
            }
            metrics.Rejected("PERMISSION_DENIED");
            var roles = policy.Requirements.OfType<Microsoft.AspNetCore.Authorization.Infrastructure.RolesAuthorizationRequirement>()
                .SelectMany(r => r.AllowedRoles);
            var held = context.User.FindAll(c => c.Type == ((ClaimsIdentity?)context.User.Identity)?.RoleClaimType).Select(c => c.Value).ToList();
            return GrpcStatusResponse.WriteAsync(context, Grpc.Core.StatusCode.PermissionDenied,
                $"{context.User.Identity?.Name} (roles: {(held.Count == 0 ? "none" : string.Join(", ", held))}) may not call {context.Request.Path}: it needs role {string.Join(" or ", roles)}");
        }
    }
}

/// <summary>A gRPC error written by middleware before any service runs (a trailers-only response).</summary>
internal static class GrpcStatusResponse
{
    public static bool IsGrpc(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true;

    public static Task WriteAsync(HttpContext context, Grpc.Core.StatusCode status, string message)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/grpc";
        response.Headers["grpc-status"] = ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture);
        // grpc-message is percent-encoded (gRPC over HTTP/2 spec); clients decode it.
        response.Headers["grpc-message"] = Uri.EscapeDataString(message);
        return response.CompleteAsync();
    }
}
