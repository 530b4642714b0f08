using System.ComponentModel.DataAnnotations;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>
/// The gateway's configuration, bound from its environment variables by <see cref="SettingsBinder"/>;
/// <see cref="GatewaySettings"/> says what each setting does and holds its default.
/// </summary>
public sealed class GatewayOptions : KafkaOptions, IValidatableObject
{
    private const string Positive = "must be a positive whole number";
    private static readonly GatewaySettings Defaults = new() { BootstrapServers = "", Security = new() };

    /// <summary>Null: gateway-{process id}.</summary>
    [ConfigurationKeyName("GATEWAY_INSTANCE")]
    public string? Instance { get; set; }

    /// <summary>The gRPC URL when --urls is not given (its first entry).</summary>
    [ConfigurationKeyName("ASPNETCORE_URLS")]
    public string? Urls { get; set; }

    [ConfigurationKeyName("GATEWAY_ADMIN_URL")]
    public string? AdminUrl { get; set; } = Defaults.AdminUrl;

    [ConfigurationKeyName("GATEWAY_DEADLINE_MS"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int DeadlineMs { get; set; } = (int)Defaults.Deadline.TotalMilliseconds;

    [ConfigurationKeyName("GATEWAY_PLANNING_DEADLINE_MS"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int PlanningDeadlineMs { get; set; } = (int)Defaults.PlanningDeadline.TotalMilliseconds;

    [ConfigurationKeyName("GATEWAY_DARK_PARTITION_AFTER_MS"), Range(0, int.MaxValue, ErrorMessage = "must be a whole number of milliseconds, 0 or more")]
    public int DarkPartitionAfterMs { get; set; } = GatewaySettings.DefaultDarkPartitionAfterMs;

    [ConfigurationKeyName("GATEWAY_DARK_PARTITION_PROBE_MS"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int DarkPartitionProbeMs { get; set; } = GatewaySettings.DefaultDarkPartitionProbeMs;

    [ConfigurationKeyName("GATEWAY_MAX_IN_FLIGHT"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int MaxInFlight { get; set; } = Defaults.MaxInFlight;

    [ConfigurationKeyName("GATEWAY_REPLY_FETCH_WAIT_MS"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int ReplyFetchWaitMs { get; set; } = Defaults.FetchWaitMaxMs;

    [ConfigurationKeyName("GATEWAY_VIEW_FETCH_WAIT_MS"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int ViewFetchWaitMs { get; set; } = Defaults.ViewFetchWaitMaxMs;

    [ConfigurationKeyName("GATEWAY_VIEW_FETCH_MIN_BYTES"), Range(1, 100_000_000, ErrorMessage = "must be a whole number of bytes from 1 to 100000000")]
    public int ViewFetchMinBytes { get; set; } = Defaults.ViewFetchMinBytes;

    [ConfigurationKeyName("GATEWAY_VIEW_FETCH_INTERVAL_MS"), Range(0, int.MaxValue, ErrorMessage = "must be a whole number of milliseconds, 0 to follow continuously")]
    public int ViewFetchIntervalMs { get; set; } = (int)Defaults.ViewFetchInterval.TotalMilliseconds;

    /// <summary>With <see cref="Count"/>: this instance's static share of the reply partitions.</summary>
    [ConfigurationKeyName("GATEWAY_ORDINAL"), Range(0, int.MaxValue, ErrorMessage = "must be a whole number from 0 to GATEWAY_COUNT - 1")]
    public int? Ordinal { get; set; }

    [ConfigurationKeyName("GATEWAY_COUNT"), Range(1, int.MaxValue, ErrorMessage = "must be the number of gateways, e.g. 2")]
    public int? Count { get; set; }

    [ConfigurationKeyName("GATEWAY_VIEW_CHECKPOINT")]
    public string? ViewCheckpoint { get; set; } = Defaults.ViewCheckpoint;

    [ConfigurationKeyName("GATEWAY_LOG_LEVEL")]
    public LogLevel LogLevel { get; set; } = Defaults.LogLevel;

    /// <summary>The partition counts the gateway checks its topics against at start.</summary>
    [ConfigurationKeyName("SLOT_PARTITIONS"), Range(1, int.MaxValue, ErrorMessage = "must be a positive partition count")]
    public int SlotPartitions { get; set; } = TopicNames.DefaultSlotPartitions;

    [ConfigurationKeyName("REPLY_PARTITIONS"), Range(1, int.MaxValue, ErrorMessage = "must be a positive partition count")]
    public int ReplyPartitions { get; set; } = TopicNames.DefaultReplyPartitions;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Ordinal is null != Count is null)
            yield return new($"GATEWAY_ORDINAL='{Ordinal}' and GATEWAY_COUNT='{Count}': set both (e.g. 0 and 2 for the first of two gateways) or neither");
        else if (Ordinal >= Count)
            yield return new($"GATEWAY_ORDINAL='{Ordinal}' must be a whole number from 0 to GATEWAY_COUNT - 1 ({Count - 1})");
    }

    /// <summary>The settings of a gateway serving gRPC on <paramref name="url"/> (--urls), else on the first of
    /// ASPNETCORE_URLS, else on http://127.0.0.1:5101.</summary>
    public GatewaySettings ToSettings(SecuritySettings security, string? url) => new()
    {
        BootstrapServers = KafkaEndpoint.BootstrapServers(BootstrapServers),
        Security = security,
        Topics = Topics(),
        Instance = Instance ?? $"gateway-{Environment.ProcessId}",
        Url = url ?? Urls?.Split(';')[0] ?? Defaults.Url,
        AdminUrl = AdminUrl,
        Deadline = TimeSpan.FromMilliseconds(DeadlineMs),
        PlanningDeadline = TimeSpan.FromMilliseconds(PlanningDeadlineMs),
        DarkPartitionAfter = TimeSpan.FromMilliseconds(DarkPartitionAfterMs),
        DarkPartitionProbeEvery = TimeSpan.FromMilliseconds(DarkPartitionProbeMs),
        MaxInFlight = MaxInFlight,
        FetchWaitMaxMs = ReplyFetchWaitMs,
        ViewFetchWaitMaxMs = ViewFetchWaitMs,
        ViewFetchMinBytes = ViewFetchMinBytes,
        ViewFetchInterval = TimeSpan.FromMilliseconds(ViewFetchIntervalMs),
        ReplyShare = Ordinal is { } ordinal && Count is { } count ? new ReplyShare(ordinal, count) : null,
        ViewCheckpoint = ViewCheckpoint,
        LogLevel = LogLevel,
    };
}

/// <summary>Caller authentication, TLS and abuse limits, bound from the GATEWAY_JWT_*, GATEWAY_TLS_*,
/// GATEWAY_MAX_MESSAGE_BYTES and GATEWAY_PLANNING_* variables (see <see cref="SecuritySettings"/>).</summary>
public sealed class GatewaySecurityOptions
{
    private const string Positive = "must be a positive whole number";
    private static readonly SecuritySettings Defaults = new();

    [ConfigurationKeyName("GATEWAY_JWT_SIGNING_KEY_FILE")]
    public string? SigningKeyFile { get; set; }

    [ConfigurationKeyName("GATEWAY_JWT_AUTHORITY")]
    public string? Authority { get; set; } = Defaults.Authority;

    [ConfigurationKeyName("GATEWAY_JWT_ISSUER")]
    public string Issuer { get; set; } = Defaults.Issuer;

    [ConfigurationKeyName("GATEWAY_JWT_AUDIENCE")]
    public string Audience { get; set; } = Defaults.Audience;

    [ConfigurationKeyName("GATEWAY_JWT_ROLE_CLAIM")]
    public string RoleClaim { get; set; } = Defaults.RoleClaim;

    [ConfigurationKeyName("GATEWAY_TLS_CERT_FILE")]
    public string? TlsCertificateFile { get; set; } = Defaults.TlsCertificateFile;

    [ConfigurationKeyName("GATEWAY_TLS_KEY_FILE")]
    public string? TlsKeyFile { get; set; } = Defaults.TlsKeyFile;

    [ConfigurationKeyName("GATEWAY_TLS_CLIENT_CA_FILE")]
    public string? ClientCaFile { get; set; } = Defaults.ClientCaFile;

    [ConfigurationKeyName("GATEWAY_MAX_MESSAGE_BYTES"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int MaxMessageBytes { get; set; } = Defaults.MaxMessageBytes;

    [ConfigurationKeyName("GATEWAY_PLANNING_RATE"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int PlanningCallsPerSecond { get; set; } = Defaults.PlanningCallsPerSecond;

    [ConfigurationKeyName("GATEWAY_PLANNING_BURST"), Range(1, int.MaxValue, ErrorMessage = Positive)]
    public int PlanningBurst { get; set; } = Defaults.PlanningBurst;

    /// <summary>Reads the signing key file; throws <see cref="StartupException"/> naming a missing or unreadable one.</summary>
    public SecuritySettings ToSettings() => new()
    {
        SigningKey = SigningKeyFile is { } keyFile ? SlotTokens.ReadKey(keyFile) : null,
        Authority = Authority,
        Issuer = Issuer,
        Audience = Audience,
        RoleClaim = RoleClaim,
        TlsCertificateFile = TlsCertificateFile,
        TlsKeyFile = TlsKeyFile,
        ClientCaFile = ClientCaFile,
        MaxMessageBytes = MaxMessageBytes,
        PlanningCallsPerSecond = PlanningCallsPerSecond,
        PlanningBurst = PlanningBurst,
    };
}

/// <summary>Reads a gateway's whole configuration in one pass, so a start reports every bad value at once.</summary>
public static class GatewayConfiguration
{
    /// <summary>The gateway's settings and the partition counts to check, or a <see cref="StartupException"/> with one line per problem.</summary>
    public static (GatewaySettings Settings, int SlotPartitions, int ReplyPartitions) Read(IConfiguration configuration, string? url)
    {
        var binder = new SettingsBinder(configuration);
        var gateway = binder.Bind<GatewayOptions>();
        var securityOptions = binder.Bind<GatewaySecurityOptions>();
        var security = binder.Try<SecuritySettings?>(() => securityOptions.ToSettings(), null);
        foreach (var problem in security?.Problems() ?? []) binder.Add(problem);
        binder.ThrowIfInvalid();
        return (gateway.ToSettings(security!, url), gateway.SlotPartitions, gateway.ReplyPartitions);
    }
}
