using Confluent.Kafka;

// usage: produce BOOTSTRAP TOPIC COUNT  |  consume BOOTSTRAP TOPIC COUNT TIMEOUT_SECONDS
if (args.Length < 4)
{
    Console.Error.WriteLine("usage: produce BOOTSTRAP TOPIC COUNT | consume BOOTSTRAP TOPIC COUNT TIMEOUT_SECONDS");
    return 2;
}
var (verb, bootstrap, topic, count) = (args[0], args[1], args[2], int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
if (verb == "produce")
{
    using var producer = new ProducerBuilder<string, string>(new ProducerConfig
    {
        BootstrapServers = bootstrap,
        EnableIdempotence = true,
        Acks = Acks.All,
    }).Build();
    for (var i = 0; i < count; i++)
        await producer.ProduceAsync(topic, new Message<string, string> { Key = $"k{i}", Value = $"record-{i}" });
    Console.WriteLine($"produced {count}");
    return 0;
}
if (verb == "consume")
{
    var timeout = TimeSpan.FromSeconds(int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture));
    using var consumer = new ConsumerBuilder<string, string>(new ConsumerConfig
    {
        BootstrapServers = bootstrap,
        GroupId = "probe-" + Guid.NewGuid().ToString("N"),
        AutoOffsetReset = AutoOffsetReset.Earliest,
        EnableAutoCommit = false,
        FetchWaitMaxMs = 5,
    }).Build();
    consumer.Subscribe(topic);
    var deadline = DateTime.UtcNow + timeout;
    var seen = 0;
    while (seen < count && DateTime.UtcNow < deadline)
    {
        var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
        if (result is null) continue;
        Console.WriteLine(result.Message.Value);
        seen++;
    }
    consumer.Close();
    return seen == count ? 0 : 1;
}
Console.Error.WriteLine($"unknown verb '{verb}'");
return 2;
