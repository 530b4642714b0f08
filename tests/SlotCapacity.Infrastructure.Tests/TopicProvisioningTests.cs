using Confluent.Kafka;
using SlotCapacity.Kafka;
using SlotCapacity.Testing;

namespace SlotCapacity.Infrastructure.Tests;

public sealed class TopicProvisioningTests
{
    [Fact]
    public async Task Every_topic_is_created_with_its_partition_count()
    {
        var broker = await TestBroker.SharedAsync();
        var names = await broker.CreateTopicsAsync(slotPartitions: 6, replyPartitions: 3);

        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = broker.BootstrapServers }).Build();
        var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        int Partitions(string topic) => metadata.Topics.Single(t => t.Topic == topic).Partitions.Count;

        Assert.Equal(6, Partitions(names.Commands));
        Assert.Equal(3, Partitions(names.Replies));
        Assert.Equal(6, Partitions(names.Events));
        Assert.Equal(6, Partitions(names.Availability));
        Assert.Equal(6, Partitions(names.StateChangelog));
    }

    [Fact]
    public async Task A_wrong_partition_count_is_a_startup_error_that_names_the_fix()
    {
        var broker = await TestBroker.SharedAsync();
        var names = await broker.CreateTopicsAsync(slotPartitions: 4);

        var error = await Assert.ThrowsAsync<StartupException>(() =>
            TopicProvisioner.VerifyAsync(broker.BootstrapServers, names.Specs(slotPartitions: 12), TimeSpan.FromSeconds(5)));

        Assert.Contains($"'{names.Commands}' has 4 partitions but this system needs 12", error.Message);
        Assert.Contains("recreate it", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public async Task A_missing_topic_is_a_startup_error_that_names_the_fix()
    {
        var broker = await TestBroker.SharedAsync();
        var missing = new TopicSpec("never-created-" + Guid.NewGuid().ToString("N"), 3);

        var error = await Assert.ThrowsAsync<StartupException>(() =>
            TopicProvisioner.VerifyAsync(broker.BootstrapServers, [missing], TimeSpan.FromSeconds(1)));

        Assert.Contains($"topic '{missing.Name}' does not exist", error.Message);
        Assert.Contains("make run", error.Message);
    }

    [Fact]
    public async Task An_unreachable_bootstrap_is_a_startup_error_that_names_the_fix()
    {
        var error = await Assert.ThrowsAsync<StartupException>(() =>
            TopicProvisioner.VerifyAsync("127.0.0.1:1", [new TopicSpec("any", 1)], TimeSpan.FromSeconds(2)));

        Assert.Contains("cannot reach Kafka at '127.0.0.1:1'", error.Message);
        Assert.Contains("KAFKA_BOOTSTRAP_SERVERS", error.Message);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("  ")]
    public void A_missing_bootstrap_variable_is_a_startup_error_that_names_the_fix(string? configured)
    {
        var error = Assert.Throws<StartupException>(() => KafkaEndpoint.BootstrapServers(configured));
        Assert.Contains("KAFKA_BOOTSTRAP_SERVERS is not set", error.Message);
        Assert.Contains("make run", error.Message);
    }
}
