using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Configuration;

namespace SlotCapacity.Kafka;

/// <summary>Where a process finds Kafka and its topics; every deployable's options extend these.</summary>
public class KafkaOptions
{
    /// <summary>The broker list.</summary>
    [ConfigurationKeyName(KafkaEndpoint.BootstrapVariable)]
    [Required(ErrorMessage = KafkaEndpoint.BootstrapHint)]
    public string? BootstrapServers { get; set; }

    /// <summary>Gives a test run or a tenant its own topics and processor application id (see <see cref="TopicNames"/>).</summary>
    [ConfigurationKeyName(TopicNames.PrefixVariable)]
    public string TopicPrefix { get; set; } = "";

    public TopicNames Topics() => new(TopicPrefix);
}
