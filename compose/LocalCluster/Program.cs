using System.CommandLine;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using SlotCapacity.LocalClusterHost;

// Hosts librdkafka's mock cluster for development and CI, where no Kafka broker exists: creates
// every topic, publishes the bootstrap list in a file the other processes read, runs until stopped.
// With `provision --bootstrap LIST` it instead creates (or checks) every topic on a real cluster
// and exits: the same topic list and the same checks on every path.
using var loggers = LoggerFactory.Create(b => b.AddJsonConsole(o => o.TimestampFormat = "HH:mm:ss.fff "));
var log = loggers.CreateLogger("local-cluster");

return await CommandLines.InvokeAsync(LocalClusterOptions.Command(RunAsync), args, tool: "local-cluster");

async Task<int> RunAsync(LocalClusterOptions options)
{
    // The admin clients take the Kafka:* sections of the environment: a setting librdkafka refuses stops here.
    var refused = KafkaEndpoint.SectionProblems(KafkaEndpoint.ProcessConfiguration).ToList();
    foreach (var problem in refused) Console.Error.WriteLine($"local-cluster: {problem}");
    if (refused.Count > 0) return 2;
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

        using var cluster = LocalCluster.Start(options.Brokers, options.Debug);
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
        log.LogInformation("Local cluster of {Brokers} brokers listening at {BootstrapServers}; data is kept in memory only; librdkafka {Library}", options.Brokers, cluster.BootstrapServers, LocalCluster.LibraryDescription);
        using var control = options.ControlFile is not null ? LocalClusterControl.Start(cluster, topics, log) : null;
        if (options.ControlFile is { } controlFile && control is not null)
        {
            await File.WriteAllTextAsync(controlFile + ".tmp", control.Url + "\n");
            File.Move(controlFile + ".tmp", controlFile, overwrite: true);
            log.LogInformation("Fault injection for the fault suite at {ControlUrl} (brokers down/up, partition leaders)", control.Url);
        }
        using var retention = options.RetainSeconds > 0
            ? new LocalRetention(cluster, new TopicNames(options.Prefix), topics, TimeSpan.FromSeconds(options.RetainSeconds), log)
            : null;
        using var stopRetention = new CancellationTokenSource();
        var retaining = retention?.RunAsync(TimeProvider.System, stopRetention.Token) ?? Task.CompletedTask;
        if (retention is not null)
            log.LogInformation("Commands and replies are kept {RetainSeconds} s (commands never past the processors' committed offsets); events, availability and the changelog keep everything up to the mock's cap", options.RetainSeconds);

        var stopped = new TaskCompletionSource();
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stopped.TrySetResult(); });
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stopped.TrySetResult(); };
        await stopped.Task;
        await stopRetention.CancelAsync();
        await retaining;

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
}

internal sealed record LocalClusterOptions(int Brokers, int SlotPartitions, int ReplyPartitions, string Prefix, string? BootstrapFile,
    string? ProvisionBootstrap, int? ReplicationFactor = null, int WaitSeconds = 0, string? ControlFile = null, int RetainSeconds = 0,
    string? Debug = null)
{
    /// <summary>The command line: run a local cluster, or `provision` a real one; a bad option is refused naming it.</summary>
    public static RootCommand Command(Func<LocalClusterOptions, Task<int>> run)
    {
        var slotPartitions = CommandLines.WholeNumber("--slot-partitions", "Partitions of the topics keyed by slot", 1, int.MaxValue, TopicNames.DefaultSlotPartitions);
        var replyPartitions = CommandLines.WholeNumber("--reply-partitions", "Partitions of the replies topic", 1, int.MaxValue, TopicNames.DefaultReplyPartitions);
        var prefix = new Option<string>("--topic-prefix")
        {
            Description = $"Topic prefix (default: ${TopicNames.PrefixVariable})",
            DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration[TopicNames.PrefixVariable] ?? "",
            Recursive = true,
        };
        slotPartitions.Recursive = replyPartitions.Recursive = true;
        var brokers = CommandLines.WholeNumber("--brokers", "Brokers of the mock cluster", 1, int.MaxValue, 3);
        var bootstrapFile = new Option<string?>("--bootstrap-file") { Description = "File the bootstrap list is published in while the cluster runs" };
        var controlFile = new Option<string?>("--control-file") { Description = "File the loopback control address (brokers down/up, partition leaders, GET /requests: requests received per broker and API) is published in while the cluster runs" };
        var retain = CommandLines.WholeNumber("--retain-seconds",
            "Seconds the mock keeps commands and replies (0 = forever, up to its cap); it walks a partition's whole log on every fetch", 0, int.MaxValue, 60);
        var debug = new Option<string?>("--debug")
        {
            Description = "librdkafka debug contexts for the mock brokers' own log on stderr, e.g. cgrp,mock (group joins, rebalances, session expiries)",
        };
        var bootstrap = new Option<string>("--bootstrap") { Description = "The real cluster, HOST:PORT[,...]", Required = true };
        var replication = CommandLines.WholeNumber("--replication-factor", "Replication factor of created topics (default: the broker's)", 1, int.MaxValue);
        var wait = CommandLines.WholeNumber("--wait", "Seconds to wait for brokers that are still starting", 0, int.MaxValue, 0);
        var provision = new Command("provision", "Creates (or checks) every topic on a real cluster, then exits.") { bootstrap, replication, wait };
        var root = new RootCommand("""
            Hosts librdkafka's mock cluster for development and CI: creates every topic, publishes the
            bootstrap list, runs until stopped. `provision` does the same topic work on a real cluster.
            """) { brokers, slotPartitions, replyPartitions, prefix, bootstrapFile, controlFile, retain, debug, provision };
        LocalClusterOptions Read(ParseResult parsed) => new(parsed.GetValue(brokers), parsed.GetValue(slotPartitions), parsed.GetValue(replyPartitions),
            parsed.GetRequiredValue(prefix), parsed.GetValue(bootstrapFile), null, ControlFile: parsed.GetValue(controlFile),
            RetainSeconds: parsed.GetValue(retain), Debug: parsed.GetValue(debug));
        root.SetAction(parsed => run(Read(parsed)));
        provision.SetAction(parsed => run(Read(parsed) with
        {
            ProvisionBootstrap = parsed.GetRequiredValue(bootstrap),
            ReplicationFactor = parsed.GetResult(replication) is null ? null : parsed.GetValue(replication),
            WaitSeconds = parsed.GetValue(wait),
        }));
        return root;
    }
}
