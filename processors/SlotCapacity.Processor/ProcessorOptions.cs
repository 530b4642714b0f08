using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

namespace SlotCapacity.Processor;

/// <summary>
/// The processor's configuration, bound from its environment variables by <see cref="SettingsBinder"/>
/// (see <see cref="ProcessorSettings"/> for what each setting does).
/// </summary>
public sealed class ProcessorOptions : KafkaOptions, IValidatableObject
{
    /// <summary>Null: processor-{process id}.</summary>
    [ConfigurationKeyName("PROCESSOR_INSTANCE")]
    public string? Instance { get; set; }

    /// <summary>Null: slot-processor-state/{instance} in the temporary directory.</summary>
    [ConfigurationKeyName("PROCESSOR_STATE_DIR")]
    public string? StateDirectory { get; set; }

    /// <summary>Null: none.</summary>
    [ConfigurationKeyName("PROCESSOR_READY_FILE")]
    public string? ReadyFile { get; set; }

    [ConfigurationKeyName("PROCESSOR_STATIC_MEMBERSHIP")]
    public bool StaticMembership { get; set; }

    /// <summary>Null: start without replacing a running processor.</summary>
    [ConfigurationKeyName("PROCESSOR_TAKE_OVER_FROM")]
    [Range(1, int.MaxValue, ErrorMessage = "must be the process id of the processor to replace")]
    public int? TakeOverFrom { get; set; }

    /// <summary>Null: not a standby.</summary>
    [ConfigurationKeyName("PROCESSOR_STANDBY_FOR")]
    [Range(1, int.MaxValue, ErrorMessage = "must be the process id of the running processor to stand by for")]
    public int? StandbyFor { get; set; }

    [ConfigurationKeyName("PROCESSOR_SESSION_TIMEOUT_MS")]
    [Range(500, int.MaxValue, ErrorMessage = "must be at least {1} ms (and at least the broker's group.min.session.timeout.ms)")]
    public int SessionTimeoutMs { get; set; } = ProcessorSettings.DefaultSessionTimeoutMs;

    /// <summary>Null: a quarter of the session timeout.</summary>
    [ConfigurationKeyName("PROCESSOR_HEARTBEAT_INTERVAL_MS")]
    [Range(10, int.MaxValue, ErrorMessage = "must be at least {1} ms (and below the session timeout)")]
    public int? HeartbeatIntervalMs { get; set; }

    [ConfigurationKeyName("PROCESSOR_COMMIT_INTERVAL_MS")]
    [Range(10, int.MaxValue, ErrorMessage = "must be at least {1} ms")]
    public int CommitIntervalMs { get; set; } = ProcessorSettings.DefaultCommitIntervalMs;

    [ConfigurationKeyName("PROCESSOR_FETCH_WAIT_MS")]
    [Range(1, int.MaxValue, ErrorMessage = "must be at least {1} ms")]
    public int FetchWaitMaxMs { get; set; } = ProcessorSettings.DefaultFetchWaitMaxMs;

    /// <summary>Streamiz logs every poll and commit at Information; Information shows its rebalances and
    /// state changes when diagnosing.</summary>
    [ConfigurationKeyName("STREAMIZ_LOG_LEVEL")]
    public LogLevel StreamizLogLevel { get; set; } = LogLevel.Warning;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (StaticMembership && string.IsNullOrWhiteSpace(Instance))
            yield return new("PROCESSOR_STATIC_MEMBERSHIP=true needs PROCESSOR_INSTANCE, the same on every restart: a restarted processor finds its group membership by that name");
        if (TakeOverFrom is not null && !StaticMembership)
            yield return new("PROCESSOR_TAKE_OVER_FROM needs PROCESSOR_STATIC_MEMBERSHIP=true: a successor takes its predecessor's place in the group, which only a static member keeps");
        if (StandbyFor is not null && !StaticMembership)
            yield return new("PROCESSOR_STANDBY_FOR needs PROCESSOR_STATIC_MEMBERSHIP=true: a standby takes the running processor's place in the group, which only a static member keeps");
        if (StandbyFor is not null && TakeOverFrom is not null)
            yield return new("PROCESSOR_STANDBY_FOR and PROCESSOR_TAKE_OVER_FROM are exclusive: a standby waits for a processor to exit, a successor stops it");
        if (HeartbeatIntervalMs >= SessionTimeoutMs)
            yield return new($"PROCESSOR_HEARTBEAT_INTERVAL_MS='{HeartbeatIntervalMs}' must be below PROCESSOR_SESSION_TIMEOUT_MS ({SessionTimeoutMs})");
    }

    public ProcessorSettings ToSettings()
    {
        var instance = string.IsNullOrWhiteSpace(Instance) ? $"processor-{Environment.ProcessId}" : Instance;
        var stateDirectory = string.IsNullOrWhiteSpace(StateDirectory)
            ? Path.Combine(Path.GetTempPath(), "slot-processor-state", instance)
            : StateDirectory;
        return new ProcessorSettings(KafkaEndpoint.BootstrapServers(BootstrapServers), Topics(), stateDirectory, instance)
        {
            StaticMembership = StaticMembership,
            TakeOverFrom = TakeOverFrom,
            StandbyFor = StandbyFor,
            SessionTimeoutMs = SessionTimeoutMs,
            HeartbeatIntervalMs = HeartbeatIntervalMs,
            CommitIntervalMs = CommitIntervalMs,
            FetchWaitMaxMs = FetchWaitMaxMs,
            ReadyFile = string.IsNullOrWhiteSpace(ReadyFile) ? null : ReadyFile,
        };
    }
}
