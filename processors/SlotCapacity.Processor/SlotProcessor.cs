using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;

namespace SlotCapacity.Processor;

/// <summary>
/// Starts one slot processor in this process. Used by Program (the service) and by other areas'
/// end-to-end tests.
/// </summary>
public static class SlotProcessor
{
    /// <summary>
    /// Checks the topics (StartupException with a one-line reason if one is missing or has the wrong
    /// partition count), starts the stream and waits until it runs. Dispose to stop it gracefully
    /// (commits and closes the store).
    /// </summary>
    public static async Task<IAsyncDisposable> StartAsync(ProcessorSettings settings, ILoggerFactory loggers, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(loggers);
        var log = loggers.CreateLogger(typeof(SlotProcessor));
        var (slotPartitions, replyPartitions) = PartitionCounts(settings);
        await TopicProvisioner.VerifyAsync(settings.BootstrapServers, settings.Topics.Specs(slotPartitions, replyPartitions),
            TimeSpan.FromSeconds(30), ct);
        Directory.CreateDirectory(settings.StateDirectory);

        var checkpoints = new ChangelogCheckpoints(settings, loggers);
        var config = SlotTopology.Config(settings, checkpoints, loggers);
        var stream = new KafkaStream(SlotTopology.Build(settings.Topics, replyPartitions, checkpoints, loggers), config,
            new RebalanceTolerantCommits(config, loggers, checkpoints, settings.Topics.Commands));
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        stream.StateChanged += (_, now) =>
        {
            if (now == KafkaStream.State.RUNNING) running.TrySetResult();
            if (now != KafkaStream.State.ERROR) return;
            if (running.TrySetException(new StartupException($"processor {settings.InstanceName}: the stream failed while starting"))) return;
            log.LogCritical("Processor {Instance}: the stream failed and stopped processing", settings.InstanceName);
            settings.OnStreamFailed?.Invoke("the stream failed and stopped processing (see the error logged before)");
        };
        log.LogInformation("Processor {Instance} starting: {Commands} ({SlotPartitions} partitions) -> {Replies} ({ReplyPartitions} partitions), state in {StateDirectory}",
            settings.InstanceName, settings.Topics.Commands, slotPartitions, settings.Topics.Replies, replyPartitions, settings.StateDirectory);
        // Not the caller's token: Streamiz would close the stream on it by itself, and a second close
        // (DisposeAsync) would then return before the final commit. ct only bounds the start.
        await stream.StartAsync(CancellationToken.None);
        try
        {
            await running.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
        }
        catch (Exception e)
        {
            await Task.Run(stream.Dispose, CancellationToken.None);
            checkpoints.Dispose();
            if (e is TimeoutException)
                throw new StartupException($"processor {settings.InstanceName}: the stream was not running 60 s after start (still joining the group or restoring); "
                                           + "stopped so that it can be started again", e) { Retryable = true };
            throw;
        }
        log.LogInformation("Processor {Instance} running", settings.InstanceName);
        return new Running(stream, checkpoints, log, settings.InstanceName);
    }

    /// <summary>Slot topics share the commands topic's partition count; replies have their own.</summary>
    private static (int Slot, int Reply) PartitionCounts(ProcessorSettings settings)
    {
        using var admin = new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig { BootstrapServers = settings.BootstrapServers, SocketTimeoutMs = 10_000 }))
            .SetLogHandler((_, _) => { }).Build();
        Metadata metadata;
        try
        {
            metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        }
        catch (KafkaException e)
        {
            throw new StartupException($"cannot reach Kafka at '{settings.BootstrapServers}' ({e.Error.Reason}): check {KafkaEndpoint.BootstrapVariable}", e);
        }
        int Count(string topic, int fallback) =>
            metadata.Topics.FirstOrDefault(t => t.Topic == topic && t.Error.Code == ErrorCode.NoError)?.Partitions.Count ?? fallback;
        return (Count(settings.Topics.Commands, TopicNames.DefaultSlotPartitions), Count(settings.Topics.Replies, TopicNames.DefaultReplyPartitions));
    }

    private sealed class Running(KafkaStream stream, ChangelogCheckpoints checkpoints, ILogger log, string instance) : IAsyncDisposable
    {
        private int _disposed;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            log.LogInformation("Processor {Instance} stopping", instance);
            await Task.Run(stream.Dispose);
            checkpoints.Dispose();
            log.LogInformation("Processor {Instance} stopped", instance);
        }
    }
}
