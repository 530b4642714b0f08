using Confluent.Kafka;
using SlotCapacity.Kafka;

namespace SlotCapacity.Infrastructure.Tests;

public sealed class LocalClusterTests
{
    [Fact]
    public async Task A_record_produced_by_one_process_is_consumed_by_another_through_the_local_cluster_host()
    {
        var bootstrapFile = Path.Combine(Path.GetTempPath(), $"local-cluster-{Guid.NewGuid():N}.bootstrap");
        using var cluster = ChildProcess.Start("SlotCapacity.LocalCluster",
            ["--brokers", "3", "--slot-partitions", "3", "--reply-partitions", "2", "--bootstrap-file", bootstrapFile]);
        var bootstrap = await WaitForFileAsync(bootstrapFile, TimeSpan.FromSeconds(30), cluster);
        var topic = new TopicNames().Commands;

        using var producer = ChildProcess.Start("SlotCapacity.KafkaProbe", ["produce", bootstrap, topic, "25"]);
        Assert.Equal(0, await producer.WaitAsync(TimeSpan.FromSeconds(60)));
        using var consumer = ChildProcess.Start("SlotCapacity.KafkaProbe", ["consume", bootstrap, topic, "25", "30"]);
        Assert.Equal(0, await consumer.WaitAsync(TimeSpan.FromSeconds(60)));

        var received = consumer.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        Assert.Equal(Enumerable.Range(0, 25).Select(i => $"record-{i}").ToHashSet(), received);
    }

    [Fact]
    public async Task The_fault_suite_takes_the_local_cluster_hosts_broker_down_and_up_through_its_control_endpoint()
    {
        var folder = Directory.CreateTempSubdirectory("local-cluster-control-").FullName;
        try
        {
            using var cluster = ChildProcess.Start("SlotCapacity.LocalCluster",
                ["--brokers", "1", "--slot-partitions", "2", "--reply-partitions", "2",
                 "--bootstrap-file", Path.Combine(folder, "bootstrap"), "--control-file", Path.Combine(folder, "control")]);
            var bootstrap = await WaitForFileAsync(Path.Combine(folder, "bootstrap"), TimeSpan.FromSeconds(30), cluster);
            var control = new Uri(await WaitForFileAsync(Path.Combine(folder, "control"), TimeSpan.FromSeconds(30), cluster));
            Assert.True(control.IsLoopback, control.ToString());
            using var http = new HttpClient { BaseAddress = control };
            async Task<(int Status, string Text)> PostAsync(string path)
            {
                using var answer = await http.PostAsync(new Uri(path, UriKind.Relative), new StringContent(""));
                return ((int)answer.StatusCode, (await answer.Content.ReadAsStringAsync()).Trim());
            }
            async Task<(int Status, string Text)> GetAsync(string path)
            {
                using var answer = await http.GetAsync(new Uri(path, UriKind.Relative));
                return ((int)answer.StatusCode, (await answer.Content.ReadAsStringAsync()).Trim());
            }

            Assert.Equal((400, "broker '2' is not one of 1..1"), await PostAsync("brokers/2/down"));
            Assert.Equal((400, "topic 'nope' is not one of the local cluster's"), await PostAsync("leaders?broker=1&topic=nope"));
            Assert.Equal(404, (await PostAsync("brokers")).Status);
            // The first GET starts counting requests.
            Assert.Equal((200, ""), await GetAsync("requests"));

            var topic = new TopicNames().Commands;
            using var producer = new ProducerBuilder<string, string>(new ProducerConfig { BootstrapServers = bootstrap, MessageTimeoutMs = 2000 })
                .SetLogHandler((_, _) => { }).Build();
            Assert.Equal(PersistenceStatus.Persisted, (await producer.ProduceAsync(topic, new Message<string, string> { Key = "a", Value = "before" })).Status);

            Assert.Equal((200, "broker 1 down"), await PostAsync("brokers/1/down"));
            var refused = await Assert.ThrowsAsync<ProduceException<string, string>>(() =>
                producer.ProduceAsync(topic, new Message<string, string> { Key = "a", Value = "while down" }));
            Assert.Equal(ErrorCode.Local_MsgTimedOut, refused.Error.Code);

            Assert.Equal((200, "broker 1 up"), await PostAsync("brokers/1/up"));
            Assert.Equal(PersistenceStatus.Persisted, (await producer.ProduceAsync(topic, new Message<string, string> { Key = "a", Value = "after" })).Status);
            Assert.Contains("Fault injected: broker 1 down", cluster.Output, StringComparison.Ordinal);
            var counted = await GetAsync("requests");
            Assert.Equal(200, counted.Status);
            Assert.Matches(@"(?m)^broker 1 Produce [1-9][0-9]*$", counted.Text);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task The_local_cluster_host_refuses_bad_options_with_a_one_line_error()
    {
        using var cluster = ChildProcess.Start("SlotCapacity.LocalCluster", ["--slot-partitions", "zero"]);
        Assert.Equal(2, await cluster.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.StartsWith("local-cluster: --slot-partitions 'zero' is not a whole number from 1 to 2147483647", cluster.Errors);
    }

    [Fact]
    public void A_consumer_with_a_2_s_session_gets_its_partitions_when_it_founds_a_group()
    {
        // The mock used to hold a new group's first JoinGroup for 3 s and expire silent members
        // after their session timeout: the founding member was dropped unanswered and sat without
        // partitions for minutes (make run's processors use 2 s sessions).
        using var cluster = LocalCluster.Start(brokers: 3);
        const string topic = "found-a-group";
        cluster.CreateTopics([new TopicSpec(topic, 4)]);
        using var consumer = new ConsumerBuilder<string, string>(new ConsumerConfig
        {
            BootstrapServers = cluster.BootstrapServers,
            GroupId = $"founders-{Guid.NewGuid():N}",
            SessionTimeoutMs = 2000,
            HeartbeatIntervalMs = 500,
        }).Build();
        consumer.Subscribe(topic);

        var until = DateTime.UtcNow.AddSeconds(15);
        while (consumer.Assignment.Count == 0 && DateTime.UtcNow < until)
            consumer.Consume(TimeSpan.FromMilliseconds(100));

        Assert.Equal(4, consumer.Assignment.Count);
        consumer.Close();
    }

    [Fact]
    public async Task An_idempotent_producer_survives_a_broker_going_down_and_up_without_loss_or_duplicates()
    {
        using var cluster = LocalCluster.Start(brokers: 3);
        const string topic = "survive-broker-restart";
        cluster.CreateTopics([new TopicSpec(topic, 3)]);
        await TopicProvisioner.VerifyAsync(cluster.BootstrapServers, [new TopicSpec(topic, 3)], TimeSpan.FromSeconds(10));
        const int count = 600;

        using (var producer = new ProducerBuilder<string, string>(new ProducerConfig
        {
            BootstrapServers = cluster.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            MessageTimeoutMs = 60_000,
            LingerMs = 1,
        }).Build())
        {
            var sends = new List<Task<DeliveryResult<string, string>>>();
            for (var i = 0; i < count; i++)
            {
                if (i == count / 3) cluster.SetBrokerDown(1);
                if (i == 2 * count / 3) cluster.SetBrokerUp(1);
                sends.Add(producer.ProduceAsync(topic, new Message<string, string> { Key = $"k{i % 7}", Value = i.ToString(System.Globalization.CultureInfo.InvariantCulture) }));
                if (i % 50 == 0) await Task.Delay(100);
            }
            await Task.WhenAll(sends);
        }

        using var consumer = new ConsumerBuilder<string, string>(new ConsumerConfig
        {
            BootstrapServers = cluster.BootstrapServers,
            GroupId = "check-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
            FetchWaitMaxMs = 5,
        }).Build();
        consumer.Subscribe(topic);
        var values = new List<int>();
        var lastPerKey = new Dictionary<string, int>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (values.Count < count && DateTime.UtcNow < deadline)
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result is null) continue;
            var value = int.Parse(result.Message.Value, System.Globalization.CultureInfo.InvariantCulture);
            // Same key, same partition: the idempotent producer keeps their order through the outage.
            if (lastPerKey.TryGetValue(result.Message.Key, out var previous)) Assert.True(value > previous, $"{value} after {previous} for {result.Message.Key}");
            lastPerKey[result.Message.Key] = value;
            values.Add(value);
        }
        // Anything extra (a duplicate) would have arrived with the rest.
        var extra = consumer.Consume(TimeSpan.FromSeconds(1));
        consumer.Close();

        Assert.Null(extra);
        Assert.Equal(count, values.Count);
        Assert.Equal(Enumerable.Range(0, count), values.Order());
    }

    internal static async Task<string> WaitForFileAsync(string path, TimeSpan timeout, ChildProcess owner)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (File.Exists(path)) return (await File.ReadAllTextAsync(path)).Trim();
            await Task.Delay(100);
        }
        throw new TimeoutException($"no bootstrap file after {timeout}: {owner.Errors}{owner.Output}");
    }
}
