using Microsoft.Extensions.Configuration;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway.Tests;

/// <summary>How a gateway's settings are bound from its environment variables and checked at start.</summary>
public sealed class GatewayConfigurationTests : IDisposable
{
    // Environment variables of this test only: the provider strips the prefix, so GATEWAY_DEADLINE_MS
    // is read exactly as the gateway reads it.
    private readonly string _prefix = $"SLOT_TEST_{Guid.NewGuid():N}_";
    private readonly string _keyFile = Path.GetTempFileName();

    public GatewayConfigurationTests() => File.WriteAllText(_keyFile, Convert.ToBase64String(EngineAndGateways.SigningKey));

    private IConfiguration Environment(params (string Name, string Value)[] variables)
    {
        foreach (var (name, value) in variables) System.Environment.SetEnvironmentVariable(_prefix + name, value);
        return new ConfigurationBuilder().AddEnvironmentVariables(_prefix).Build();
    }

    private (string, string)[] Minimal => [("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("GATEWAY_JWT_SIGNING_KEY_FILE", _keyFile)];

    [Fact]
    public void Unset_variables_take_the_defaults_of_GatewaySettings()
    {
        var (settings, slotPartitions, replyPartitions) = GatewayConfiguration.Read(Environment(Minimal), url: null);
        var defaults = new GatewaySettings { BootstrapServers = "", Security = new() };
        Assert.Equal(("kafka:9092", defaults.Url, defaults.Deadline, defaults.PlanningDeadline, defaults.MaxInFlight, defaults.FetchWaitMaxMs, defaults.ViewFetchWaitMaxMs),
            (settings.BootstrapServers, settings.Url, settings.Deadline, settings.PlanningDeadline, settings.MaxInFlight, settings.FetchWaitMaxMs, settings.ViewFetchWaitMaxMs));
        Assert.Equal((defaults.LogLevel, (ReplyShare?)null, "", TopicNames.DefaultSlotPartitions, TopicNames.DefaultReplyPartitions, defaults.ViewFetchInterval, 65_536),
            (settings.LogLevel, settings.ReplyShare, settings.Topics.Prefix, slotPartitions, replyPartitions, settings.ViewFetchInterval, settings.ViewFetchMinBytes));
        Assert.Equal((new SecuritySettings().MaxMessageBytes, SecuritySettings.DefaultIssuer, 32), (settings.Security.MaxMessageBytes, settings.Security.Issuer, settings.Security.SigningKey!.Length));
        Assert.StartsWith("gateway-", settings.Instance, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_variable_overrides_its_default_and_an_empty_one_is_unset()
    {
        var (settings, slotPartitions, _) = GatewayConfiguration.Read(Environment([.. Minimal,
            ("GATEWAY_DEADLINE_MS", "250"), ("GATEWAY_ORDINAL", "1"), ("GATEWAY_COUNT", "3"), ("GATEWAY_LOG_LEVEL", "warning"),
            ("TOPIC_PREFIX", "t1."), ("SLOT_PARTITIONS", "4"), ("ASPNETCORE_URLS", "http://127.0.0.1:5201;http://127.0.0.1:5202"),
            ("GATEWAY_PLANNING_RATE", "9"), ("GATEWAY_INSTANCE", ""), ("GATEWAY_VIEW_FETCH_INTERVAL_MS", "200"), ("GATEWAY_VIEW_FETCH_MIN_BYTES", "1")]), url: null);
        Assert.Equal((TimeSpan.FromMilliseconds(250), new ReplyShare(1, 3), Microsoft.Extensions.Logging.LogLevel.Warning, "t1.", 4, "http://127.0.0.1:5201", 9, TimeSpan.FromMilliseconds(200), 1),
            (settings.Deadline, settings.ReplyShare, settings.LogLevel, settings.Topics.Prefix, slotPartitions, settings.Url, settings.Security.PlanningCallsPerSecond, settings.ViewFetchInterval, settings.ViewFetchMinBytes));
        Assert.StartsWith("gateway-", settings.Instance, StringComparison.Ordinal);
        Assert.Equal("http://127.0.0.1:5301", GatewayConfiguration.Read(Environment(Minimal), "http://127.0.0.1:5301").Settings.Url);
    }

    [Fact]
    public void Every_bad_value_is_one_line_naming_its_variable()
    {
        var error = Assert.Throws<StartupException>(() => GatewayConfiguration.Read(Environment(
            ("GATEWAY_DEADLINE_MS", "soon"), ("GATEWAY_MAX_IN_FLIGHT", "0"), ("GATEWAY_ORDINAL", "2"), ("GATEWAY_LOG_LEVEL", "loud"),
            ("GATEWAY_PLANNING_BURST", "-1"), ("GATEWAY_JWT_AUTHORITY", "http://idp"), ("GATEWAY_VIEW_FETCH_INTERVAL_MS", "-5"), ("GATEWAY_VIEW_FETCH_MIN_BYTES", "0")), url: null));
        Assert.Equal([
            "GATEWAY_DEADLINE_MS='soon' is not a whole number",
            "GATEWAY_LOG_LEVEL='loud' is not one of Trace, Debug, Information, Warning, Error, Critical, None",
            "GATEWAY_MAX_IN_FLIGHT='0': must be a positive whole number",
            "GATEWAY_VIEW_FETCH_MIN_BYTES='0': must be a whole number of bytes from 1 to 100000000",
            "GATEWAY_VIEW_FETCH_INTERVAL_MS='-5': must be a whole number of milliseconds, 0 to follow continuously",
            "KAFKA_BOOTSTRAP_SERVERS is not set: " + KafkaEndpoint.BootstrapHint,
            "GATEWAY_ORDINAL='2' and GATEWAY_COUNT='': set both (e.g. 0 and 2 for the first of two gateways) or neither",
            "GATEWAY_PLANNING_BURST='-1': must be a positive whole number",
            "GATEWAY_JWT_AUTHORITY='http://idp' is not an https URL; token keys are only fetched over TLS",
        ], error.Message.Split('\n'));
    }

    [Fact]
    public void An_ordinal_outside_the_count_is_refused()
    {
        var error = Assert.Throws<StartupException>(() => GatewayConfiguration.Read(Environment([.. Minimal, ("GATEWAY_ORDINAL", "2"), ("GATEWAY_COUNT", "2")]), url: null));
        Assert.Equal("GATEWAY_ORDINAL='2' must be a whole number from 0 to GATEWAY_COUNT - 1 (1)", error.Message);
    }

    public void Dispose()
    {
        foreach (var name in System.Environment.GetEnvironmentVariables().Keys.OfType<string>().Where(n => n.StartsWith(_prefix, StringComparison.Ordinal)))
            System.Environment.SetEnvironmentVariable(name, null);
        File.Delete(_keyFile);
    }
}
