using System.Collections;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Kafka;
using SlotCapacity.Processor;
using Xunit;

namespace SlotCapacity.Processor.Tests;

/// <summary>Kafka client security (SASL/SSL) passes from the environment to every client.</summary>
public sealed class KafkaSecurityTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("kafka-security-").FullName;

    [Fact]
    public void Security_variables_become_librdkafka_properties_and_a_FILE_variable_reads_its_secret()
    {
        var secret = Path.Combine(_folder, "password");
        File.WriteAllText(secret, "s3cret\n");
        var environment = new Hashtable
        {
            ["KAFKA_BOOTSTRAP_SERVERS"] = "kafka:9093",
            ["KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL",
            ["KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-512",
            ["KAFKA_SASL_USERNAME"] = "slot-processor",
            ["KAFKA_SASL_PASSWORD_FILE"] = secret,
            ["KAFKA_SSL_CA_LOCATION"] = "/etc/kafka/ca.pem",
            ["KAFKA_ENABLE_SSL_CERTIFICATE_VERIFICATION"] = "true",
            ["KAFKA_SASL_USERNAME_UNSET"] = "",
            ["PATH"] = "/usr/bin",
        };
        Assert.Equal(new Dictionary<string, string>
        {
            ["enable.ssl.certificate.verification"] = "true",
            ["sasl.mechanism"] = "SCRAM-SHA-512",
            ["sasl.password"] = "s3cret",
            ["sasl.username"] = "slot-processor",
            ["security.protocol"] = "SASL_SSL",
            ["ssl.ca.location"] = "/etc/kafka/ca.pem",
        }, KafkaEndpoint.Security(environment).ToDictionary());

        var missing = Assert.Throws<StartupException>(() => KafkaEndpoint.Security(new Hashtable { ["KAFKA_SSL_KEY_PASSWORD_FILE"] = "/nowhere" }));
        Assert.Contains("ssl.key.password", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_processors_security_settings_reach_every_client_Streamiz_builds()
    {
        var settings = new ProcessorSettings("kafka:9093", new TopicNames("sec."), _folder, "p1");
        using var checkpoints = new ChangelogCheckpoints(settings, NullLoggerFactory.Instance);
        var config = SlotTopology.Config(settings, checkpoints, NullLoggerFactory.Instance,
            [new("enable.ssl.certificate.verification", "true"), new("sasl.mechanism", "SCRAM-SHA-512"), new("sasl.username", "slot-processor"),
             new("security.protocol", "SASL_SSL")]);
        var clients = new Dictionary<string, Confluent.Kafka.ClientConfig>
        {
            ["consumer"] = config.ToConsumerConfig("c"),
            ["producer"] = config.ToProducerConfig("p"),
            ["admin"] = config.ToAdminConfig("a"),
            ["restore consumer"] = config.ToRestoreConsumerConfig("r"),
            ["global consumer"] = config.ToGlobalConsumerConfig("g"),
        };
        foreach (var (name, client) in clients)
            Assert.True((Confluent.Kafka.SecurityProtocol.SaslSsl, Confluent.Kafka.SaslMechanism.ScramSha512, "slot-processor", true)
                        == (client.SecurityProtocol, client.SaslMechanism, client.SaslUsername, client.EnableSslCertificateVerification),
                $"{name}: {client.Get("security.protocol")} {client.Get("sasl.mechanism")} {client.Get("sasl.username")} {client.Get("enable.ssl.certificate.verification")}");
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
