using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

// Hosts librdkafka's mock cluster for development and CI, where no Kafka broker exists: creates
// every topic, publishes the bootstrap list in a file the other processes read, runs until stopped.
// With `provision --bootstrap LIST` it instead creates (or checks) every topic on a real cluster
// and exits: the same topic list and the same checks on every path.
using var loggers = LoggerFactory.Create(b => b.AddJsonConsole(o => o.TimestampFormat = "HH:mm:ss.fff "));
var log = loggers.CreateLogger("local-cluster");

LocalClusterOptions options;
try
{
    options = LocalClusterOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"local-cluster: {e.Message}");
    Console.Error.WriteLine(LocalClusterOptions.Usage);
    return 2;
}

try
{
    if (options.ProvisionBootstrap is { } real)
    {
        var wanted = new TopicNames(options.Prefix).Specs(options.SlotPartitions, options.ReplyPartitions);
        // Brokers that are still starting are waited for, up to --wait seconds; a wrong partition
        // count is final at once.
        var waitUntil = DateTime.UtcNow.AddSeconds(options.WaitSeconds);
        while (true)
        {
            try
            {
                await TopicProvisioner.CreateAsync(real, wanted, options.ReplicationFactor);
                break;
            }
            catch (StartupException e) when (e.Retryable && DateTime.UtcNow < waitUntil)
            {
                log.LogWarning("Not ready yet ({Problem}); trying again in 2 s", e.Message);
                await Task.Delay(2000);
            }
        }
        foreach (var topic in wanted)
            log.LogInformation("Topic {Topic} ready with {Partitions} partitions at {BootstrapServers}", topic.Name, topic.Partitions, real);
        return 0;
    }

    using var cluster = LocalCluster.Start(options.Brokers);
    var topics = new TopicNames(options.Prefix).Specs(options.SlotPartitions, options.ReplyPartitions);
    cluster.CreateTopics(topics);
    await TopicProvisioner.VerifyAsync(cluster.BootstrapServers, topics, TimeSpan.FromSeconds(30));
    foreach (var topic in topics)
        log.LogInformation("Topic {Topic} ready with {Partitions} partitions", topic.Name, topic.Partitions);

    if (options.BootstrapFile is { } file)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
        // Written whole then renamed, so a reader never sees half a list.
        await File.WriteAllTextAsync(file + ".tmp", cluster.BootstrapServers + "\n");
        File.Move(file + ".tmp", file, overwrite: true);
    }
    log.LogInformation("Local cluster of {Brokers} brokers listening at {BootstrapServers}; data is kept in memory only", options.Brokers, cluster.BootstrapServers);
    using var control = options.ControlFile is not null ? LocalClusterControl.Start(cluster, topics, log) : null;
    if (options.ControlFile is { } controlFile && control is not null)
    {
        await File.WriteAllTextAsync(controlFile + ".tmp", control.Url + "\n");
        File.Move(controlFile + ".tmp", controlFile, overwrite: true);
        log.LogInformation("Fault injection for the fault suite at {ControlUrl} (brokers down/up, partition leaders)", control.Url);
    }

    var stopped = new TaskCompletionSource();
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stopped.TrySetResult(); });
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stopped.TrySetResult(); };
    await stopped.Task;

    log.LogInformation("Stopping the local cluster; its data is gone");
    if (options.BootstrapFile is { } published && File.Exists(published)) File.Delete(published);
    if (options.ControlFile is { } controlUrl && File.Exists(controlUrl)) File.Delete(controlUrl);
    return 0;
}
catch (StartupException e)
{
    Console.Error.WriteLine($"local-cluster: {e.Message}");
    return 1;
}

internal sealed record LocalClusterOptions(int Brokers, int SlotPartitions, int ReplyPartitions, string Prefix, string? BootstrapFile,
    string? ProvisionBootstrap, int? ReplicationFactor = null, int WaitSeconds = 0, string? ControlFile = null)
{
    public const string Usage =
        "usage: SlotCapacity.LocalCluster [--brokers 3] [--slot-partitions 12] [--reply-partitions 12] [--topic-prefix P] [--bootstrap-file PATH] [--control-file PATH]\n" +
        "       SlotCapacity.LocalCluster provision --bootstrap HOST:PORT[,...] [--replication-factor N] [--wait SECONDS] [--slot-partitions 12] [--reply-partitions 12] [--topic-prefix P]";

    public static LocalClusterOptions Parse(string[] args)
    {
        var options = new LocalClusterOptions(3, TopicNames.DefaultSlotPartitions, TopicNames.DefaultReplyPartitions,
            Environment.GetEnvironmentVariable("TOPIC_PREFIX") ?? "", null, null);
        var provision = args.Length > 0 && args[0] == "provision";
        for (var i = provision ? 1 : 0; i < args.Length; i++)
        {
            var name = args[i];
            if (i + 1 >= args.Length) throw new ArgumentException($"{name} needs a value");
            var value = args[++i];
            options = name switch
            {
                "--brokers" => options with { Brokers = Positive(name, value) },
                "--slot-partitions" => options with { SlotPartitions = Positive(name, value) },
                "--reply-partitions" => options with { ReplyPartitions = Positive(name, value) },
                "--topic-prefix" => options with { Prefix = value },
                "--bootstrap-file" => options with { BootstrapFile = value },
                "--control-file" => options with { ControlFile = value },
                "--bootstrap" when provision => options with { ProvisionBootstrap = value },
                "--replication-factor" when provision => options with { ReplicationFactor = Positive(name, value) },
                "--wait" when provision => options with { WaitSeconds = Positive(name, value) },
                _ => throw new ArgumentException($"unknown option '{name}'"),
            };
        }
        if (provision && options.ProvisionBootstrap is null) throw new ArgumentException("provision needs --bootstrap HOST:PORT[,...]");
        return options;
    }

    private static int Positive(string name, string value) =>
        int.TryParse(value, out var n) && n > 0 ? n : throw new ArgumentException($"{name} must be a positive whole number, not '{value}'");
}
