using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace SlotCapacity.Kafka;

/// <summary>
/// Binds a process's typed options from configuration and checks them before anything connects.
/// Each option property names its key with <see cref="ConfigurationKeyNameAttribute"/> (the environment
/// variable, e.g. PROCESSOR_SESSION_TIMEOUT_MS), carries its default as its initial value, and its
/// rules as data annotations. Every bad value becomes one line naming the key and what is wrong;
/// <see cref="ThrowIfInvalid"/> throws them together as one <see cref="StartupException"/>.
/// </summary>
public sealed class SettingsBinder(IConfiguration configuration)
{
    private readonly List<string> _problems = [];

    /// <summary>The process's configuration: its environment variables. A key with a section, such as
    /// Kafka:Producer:linger.ms, is written Kafka__Producer__linger.ms there.</summary>
    public static IConfiguration Environment() => new ConfigurationBuilder().AddEnvironmentVariables().Build();

    /// <summary>The environment with <paramref name="overrides"/> on top (command-line options given as the keys
    /// they override; a null value leaves the key as it is), so both are bound and checked the same way.</summary>
    public static IConfiguration Environment(IEnumerable<KeyValuePair<string, string?>> overrides) =>
        new ConfigurationBuilder().AddEnvironmentVariables().AddInMemoryCollection(overrides.Where(o => o.Value is not null)).Build();

    /// <summary>Binds and validates <typeparamref name="T"/>; throws <see cref="StartupException"/> with every problem.</summary>
    public static T BindValid<T>(IConfiguration configuration) where T : class, new()
    {
        var binder = new SettingsBinder(configuration);
        var options = binder.Bind<T>();
        binder.ThrowIfInvalid();
        return options;
    }

    /// <summary>
    /// Binds <typeparamref name="T"/> through Microsoft.Extensions.Options and records each problem. An unset
    /// or empty key keeps the default; a value that does not convert is reported and left at its default,
    /// so the rules of the other keys are still checked and reported in the same run.
    /// </summary>
    public T Bind<T>() where T : class, new()
    {
        var unreadable = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, property) in Keys<T>())
        {
            if (configuration[key] is not { } text || string.IsNullOrWhiteSpace(text)) continue;
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (Converts(type, text)) continue;
            unreadable.Add(key);
            _problems.Add($"{key}='{text}' is not {Expected(type)}");
        }
        var readable = new ConfigurationBuilder()
            .AddInMemoryCollection(configuration.AsEnumerable()
                .Where(e => !string.IsNullOrWhiteSpace(e.Value) && !unreadable.Contains(e.Key)))
            .Build();
        var options = new OptionsFactory<T>([new NamedConfigureFromConfigurationOptions<T>(Options.DefaultName, readable)], [], [])
            .Create(Options.DefaultName);
        if (new KeyedValidator<T>().Validate(Options.DefaultName, options) is { Failed: true, Failures: { } failures })
            _problems.AddRange(failures);
        // A process with Kafka options builds its clients with the Kafka:* sections of the same configuration.
        if (options is KafkaOptions) _problems.AddRange(KafkaEndpoint.SectionProblems(configuration));
        return options;
    }

    /// <summary>Records a problem found by a check across settings (one line naming the keys).</summary>
    public void Add(string problem) => _problems.Add(problem);

    /// <summary>Runs <paramref name="read"/>, recording its <see cref="StartupException"/> as a problem (then <paramref name="fallback"/>).</summary>
    public T Try<T>(Func<T> read, T fallback)
    {
        ArgumentNullException.ThrowIfNull(read);
        try
        {
            return read();
        }
        catch (StartupException e)
        {
            _problems.Add(e.Message);
            return fallback;
        }
    }

    /// <summary>Throws one <see cref="StartupException"/> whose message has one line per problem.</summary>
    public void ThrowIfInvalid()
    {
        if (_problems.Count > 0) throw new StartupException(string.Join('\n', _problems));
    }

    /// <summary>The configuration key of each property of <typeparamref name="T"/> that has one.</summary>
    internal static IEnumerable<(string Key, PropertyInfo Property)> Keys<T>() =>
        typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => (p.GetCustomAttribute<ConfigurationKeyNameAttribute>()?.Name, p))
            .Where(k => k.Name is not null)
            .Select(k => (k.Name!, k.p));

    // The binder converts a value with the type's TypeConverter; the same check finds every bad one up front.
    private static bool Converts(Type type, string text)
    {
        try
        {
            TypeDescriptor.GetConverter(type).ConvertFromInvariantString(text);
            return true;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or NotSupportedException || e.InnerException is FormatException or OverflowException)
        {
            return false;
        }
    }

    private static string Expected(Type type) =>
        type == typeof(int) || type == typeof(long) ? "a whole number"
        : type == typeof(bool) ? "true or false"
        : type.IsEnum ? $"one of {string.Join(", ", Enum.GetNames(type))}"
        : $"a {type.Name}";

    /// <summary>
    /// The options validation of every bound type: checks each property's data annotations and, for <see cref="IValidatableObject"/> options, the rules
    /// across properties. A failure reads "KEY='value': message" (or "KEY is not set: message"), where the
    /// annotation's ErrorMessage says what is wrong ({1} and {2} are a range's bounds).
    /// </summary>
    private sealed class KeyedValidator<T> : IValidateOptions<T> where T : class
    {
        public ValidateOptionsResult Validate(string? name, T options)
        {
            var failures = new List<string>();
            foreach (var (key, property) in Keys<T>())
            {
                var value = property.GetValue(options);
                foreach (var rule in property.GetCustomAttributes<ValidationAttribute>())
                {
                    if (rule.IsValid(value)) continue;
                    var message = rule.FormatErrorMessage(key);
                    failures.Add(value is null or "" ? $"{key} is not set: {message}" : $"{key}='{value}': {message}");
                }
            }
            if (options is IValidatableObject crossChecked)
                failures.AddRange(crossChecked.Validate(new ValidationContext(options)).Select(r => r.ErrorMessage ?? string.Join(", ", r.MemberNames)));
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
