using System.Collections;
using Confluent.Kafka;
using Microsoft.Extensions.Configuration;

namespace SlotCapacity.Kafka;

public static class KafkaEndpoint
{
    public const string BootstrapVariable = "KAFKA_BOOTSTRAP_SERVERS";
    public const string BootstrapHint = "set it to the broker list (e.g. 127.0.0.1:9092), or start everything with `make run`, which starts the local cluster and sets it";

    /// <summary>Checks a configured broker list; a missing one is a startup error naming the fix.</summary>
    public static string BootstrapServers(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new StartupException($"{BootstrapVariable} is not set: {BootstrapHint}");
        return value.Trim();
    }

    /// <summary>Configuration section of librdkafka settings given to every client (Kafka__Client__socket.timeout.ms=...).</summary>
    public const string ClientSection = "Kafka:Client";
    /// <summary>... to producers only (Kafka__Producer__linger.ms=...).</summary>
    public const string ProducerSection = "Kafka:Producer";
    /// <summary>... to consumers only (Kafka__Consumer__fetch.wait.max.ms=...).</summary>
    public const string ConsumerSection = "Kafka:Consumer";
    /// <summary>... to admin clients only.</summary>
    public const string AdminSection = "Kafka:Admin";

    private static readonly Lazy<IConfiguration> FromConfiguration = new(SettingsBinder.Environment);

    /// <summary>The process's configuration the client sections are read from (its environment variables).</summary>
    public static IConfiguration ProcessConfiguration => FromConfiguration.Value;

    /// <summary>
    /// The librdkafka settings of a configuration section, keyed by their librdkafka names, as
    /// confluent-kafka-dotnet's web example binds ProducerConfig from a section. They are applied after
    /// the code's own settings, so they override them; librdkafka refuses an unknown name or a bad value
    /// when the client is built, at start.
    /// </summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Section(IConfiguration configuration, string section)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return configuration.GetSection(section).GetChildren()
            .Where(c => !string.IsNullOrWhiteSpace(c.Value))
            .Select(c => KeyValuePair.Create(c.Key.ToLowerInvariant(), c.Value!.Trim()))
            .OrderBy(s => s.Key, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// Each setting of the four sections that librdkafka refuses (an unknown name, a bad value), one line
    /// each naming its environment variable. Each is tried alone on a client that connects nowhere, so
    /// every bad one is found before anything connects.
    /// </summary>
    public static IEnumerable<string> SectionProblems(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        foreach (var section in new[] { ClientSection, ProducerSection, ConsumerSection, AdminSection })
        {
            foreach (var setting in configuration.GetSection(section).GetChildren().Where(c => !string.IsNullOrWhiteSpace(c.Value)))
            {
                var problem = Refusal(setting.Key.ToLowerInvariant(), setting.Value!.Trim());
                if (problem is not null) yield return $"{setting.Path.Replace(":", "__", StringComparison.Ordinal)}='{setting.Value}': {problem}";
            }
        }
    }

    private static string? Refusal(string key, string value)
    {
        try
        {
            // librdkafka checks names and values when a client is created; one with no broker list stays idle.
            var config = new ProducerConfig();
            config.Set(key, value);
            using var client = new ProducerBuilder<Null, Null>(config).SetLogHandler((_, _) => { }).Build();
            return null;
        }
        catch (Exception e) when (e is ArgumentException or KafkaException or InvalidOperationException)
        {
            return e.Message;
        }
    }

    /// <summary>The sections that apply to a client of this config's kind: <see cref="ClientSection"/>, then its own.</summary>
    public static IEnumerable<KeyValuePair<string, string>> Configured<T>(IConfiguration configuration) where T : ClientConfig
    {
        var own = typeof(T) == typeof(ProducerConfig) ? ProducerSection
            : typeof(T) == typeof(ConsumerConfig) ? ConsumerSection
            : typeof(T) == typeof(AdminClientConfig) ? AdminSection
            : null;
        return own is null ? Section(configuration, ClientSection) : Section(configuration, ClientSection).Concat(Section(configuration, own));
    }

    // librdkafka property families that say how to reach a secured cluster.
    private static readonly string[] SecurityPrefixes = ["KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_", "KAFKA_ENABLE_SSL_"];

    private static readonly Lazy<IReadOnlyList<KeyValuePair<string, string>>> FromEnvironment =
        new(() => Security(Environment.GetEnvironmentVariables()));

    /// <summary>
    /// The client security settings of this process: every KAFKA_SECURITY_*, KAFKA_SASL_*, KAFKA_SSL_*
    /// and KAFKA_ENABLE_SSL_* variable as the librdkafka property it names, lower case with dots
    /// (KAFKA_SASL_MECHANISM=SCRAM-SHA-512 is sasl.mechanism). A name ending in _FILE reads the value
    /// from that file (KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka is sasl.password), for secrets
    /// mounted as files. Empty when none is set (the local cluster).
    /// </summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Security() => FromEnvironment.Value;

    public static IReadOnlyList<KeyValuePair<string, string>> Security(IDictionary environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var settings = new List<KeyValuePair<string, string>>();
        foreach (DictionaryEntry entry in environment)
        {
            if (entry.Key is not string name || entry.Value is not string { Length: > 0 } value
                || !SecurityPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            if (name.EndsWith("_FILE", StringComparison.Ordinal))
            {
                if (!File.Exists(value)) throw new StartupException($"{name}='{value}' does not exist: it names the file holding {Property(name[..^"_FILE".Length])}");
                settings.Add(new(Property(name[..^"_FILE".Length]), File.ReadAllText(value).Trim()));
            }
            else
            {
                settings.Add(new(Property(name), value));
            }
        }
        return settings.OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>The config with this process's security settings (<see cref="Security()"/>) and the settings of
    /// its configuration sections (<see cref="Configured{T}"/>) added; every producer, consumer and admin client
    /// of the system is built through it.</summary>
    public static T Secured<T>(T config) where T : ClientConfig
    {
        ArgumentNullException.ThrowIfNull(config);
        foreach (var (key, value) in Security().Concat(Configured<T>(ProcessConfiguration))) config.Set(key, value);
        return config;
    }

    private static string Property(string variable) => variable["KAFKA_".Length..].ToLowerInvariant().Replace('_', '.');
}
