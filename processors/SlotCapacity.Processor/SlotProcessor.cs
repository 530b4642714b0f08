using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net;

namespace SlotCapacity.Processor;

/// <summary>
/// Starts one slot processor in this process. Used by Program (the service) and by other areas'
/// end-to-end tests.
/// </summary>
public static partial class SlotProcessor
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
        // A standby whose processor has already gone takes over at once, like a restart, without rehearsing.
        var standingBy = settings.StandbyFor is { } active && !await Predecessor.ExitedAsync(active, TimeSpan.Zero, ct);
        // One metadata read: a restarted processor's start is part of every failover.
        int slotPartitions = 0, replyPartitions = 0;
        await TopicProvisioner.VerifyAsync(settings.BootstrapServers, existing =>
        {
            // Slot topics share the commands topic's partition count; replies have their own.
            slotPartitions = existing.GetValueOrDefault(settings.Topics.Commands, TopicNames.DefaultSlotPartitions);
            replyPartitions = existing.GetValueOrDefault(settings.Topics.Replies, TopicNames.DefaultReplyPartitions);
            return settings.Topics.Specs(slotPartitions, replyPartitions);
        }, TimeSpan.FromSeconds(30), ct);
        Directory.CreateDirectory(settings.StateDirectory);
        // One checker of changelogs for the whole run: a standby connects it before it waits.
        var checkpoints = new ChangelogCheckpoints(settings, loggers);
        try
        {
            // A dynamic member rehearses before it joins, while the others still serve the partitions it will
            // take, and so does a successor while its predecessor still serves them. A static member started
            // on its own (after a crash) has partitions waiting for it: it joins at once, since a rehearsal
            // would delay their return by more than it saves its first tasks. A standby warms up, then waits.
            if (standingBy)
            {
                await StandByAsync(settings, replyPartitions, checkpoints, loggers, log, ct);
            }
            else if (!settings.StaticMembership || settings.TakeOverFrom is not null)
            {
                await Task.Run(() => Rehearse(settings, replyPartitions, loggers, log), ct);
            }
        }
        catch
        {
            checkpoints.Dispose();
            throw;
        }

        var (stream, clients) = Stream(settings, replyPartitions, checkpoints, loggers);
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var serving = new Serving(stream, checkpoints.Served, clients, log, settings.InstanceName);
        stream.StateChanged += (_, now) =>
        {
            serving.StreamChanged(now);
            if (now == KafkaStream.State.RUNNING) running.TrySetResult();
            if (now != KafkaStream.State.ERROR) return;
            if (running.TrySetException(new StartupException($"processor {settings.InstanceName}: the stream failed while starting"))) return;
            log.LogCritical("Processor {Instance}: the stream failed and stopped processing", settings.InstanceName);
            settings.OnStreamFailed?.Invoke("the stream failed and stopped processing (see the error logged before)");
        };
        try
        {
            // Everything that needs no partition is ready: only now does a successor stop its predecessor.
            if (settings.TakeOverFrom is { } predecessor) await Predecessor.StopAsync(predecessor, settings.InstanceName, log, ct);
            // Only now, when nobody else serves this instance: the running one's file is its own until then.
            // One left by a processor that was killed says nothing about this one: removed first.
            serving.Ready = settings.ReadyFile is { } readyPath ? new ReadyFile(readyPath, log) : null;
            log.LogInformation("Processor {Instance} starting: {Commands} ({SlotPartitions} partitions) -> {Replies} ({ReplyPartitions} partitions), state in {StateDirectory}",
                settings.InstanceName, settings.Topics.Commands, slotPartitions, settings.Topics.Replies, replyPartitions, settings.StateDirectory);
            // Not the caller's token: Streamiz would close the stream on it by itself, and a second close
            // (DisposeAsync) would then return before the final commit. ct only bounds the start.
            await stream.StartAsync(CancellationToken.None);
            await running.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            // Not bounded: a long restore is progress, and the stream runs (it would have failed otherwise).
            await serving.AllAssigned.WaitAsync(ct);
        }
        catch (Exception e)
        {
            await Task.Run(stream.Dispose, CancellationToken.None);
            serving.Ready?.Set(running: false);
            checkpoints.Dispose();
            if (e is TimeoutException)
                throw new StartupException($"processor {settings.InstanceName}: the stream was not running 60 s after start (still joining the group or restoring); "
                                           + "stopped so that it can be started again", e) { Retryable = true };
            throw;
        }
        return new Running(stream, checkpoints, serving.Ready, log, settings.InstanceName);
    }

    private static (KafkaStream Stream, RebalanceTolerantCommits Clients) Stream(ProcessorSettings settings, int replyPartitions, ChangelogCheckpoints checkpoints, ILoggerFactory loggers)
    {
        var config = SlotTopology.Config(settings, checkpoints, loggers);
        var clients = new RebalanceTolerantCommits(config, loggers, checkpoints, settings.Topics.Commands);
        return (new KafkaStream(SlotTopology.Build(settings.Topics, replyPartitions, checkpoints, loggers), config, clients), clients);
    }

    /// <summary>
    /// Warms up, then waits for the processor it stands by for to exit. It warms up on a thread of its own
    /// at a lower CPU priority (nice 10, that thread only), since it runs beside processors that serve. The
    /// stream is built once and closed unstarted: built again at takeover it is compiled code (0.9 s under
    /// 500 reserves/s when cold), and it is not kept, since its Kafka clients' threads would wake ten times
    /// a second each for as long as the standby waits. Only the changelog checker's client stays
    /// connected (a standby idles at 0.002-0.004 cores with it). Once warm it says so in the standby
    /// ready file, which it removes when it stops waiting.
    /// </summary>
    private static async Task StandByAsync(ProcessorSettings settings, int replyPartitions, ChangelogCheckpoints checkpoints, ILoggerFactory loggers, ILogger log, CancellationToken ct)
    {
        var active = settings.StandbyFor!.Value;
        var warmUp = new Thread(() =>
        {
            LowerThisThreadsPriority(log);
            Rehearse(settings, replyPartitions, loggers, log);
            try
            {
                // Never started, so it never reads a checkpoint: the takeover's own checker serves it.
                Stream(settings, replyPartitions, checkpoints, NullLoggerFactory.Instance).Stream.Dispose();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                log.LogWarning(e, "Processor {Instance}: building its stream ahead of a takeover failed, so it builds it cold then: {Error}", settings.InstanceName, e.Message);
            }
        }) { IsBackground = true, Name = "standby warm-up" };
        warmUp.Start();
        await Task.Run(warmUp.Join, ct);
        await Task.Run(checkpoints.Connect, ct);
        log.LogInformation("Processor {Instance} stands by for pid {Pid}: warmed up, it takes that process's place when it exits", settings.InstanceName, active);
        // Says it is warm, so that a planned restart (`make run`'s handover) stops the active one for it.
        var warm = settings.ReadyFile is { } readyPath ? new ReadyFile(StandbyReadyFile(readyPath), log) : null;
        warm?.Set(running: true);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await Predecessor.ExitedAsync(active, limit: null, ct);
        }
        finally
        {
            warm?.Set(running: false);
        }
        // Stopped together with it (the whole system stopping): nothing to take over.
        ct.ThrowIfCancellationRequested();
        log.LogInformation("Processor {Instance} takes over from pid {Pid}, which exited after {Seconds:0.0} s on standby", settings.InstanceName, active, waited.Elapsed.TotalSeconds);
    }

    /// <summary>Where a warm standby holds its pid: beside the ready file of the processor it stands by for.</summary>
    public static string StandbyReadyFile(string readyFile) => readyFile + ".standby";

    private static void LowerThisThreadsPriority(ILogger log)
    {
        // Linux: a nice value is per thread, and raising one's own needs no privilege.
        if (SetPriority(0, GetThreadId(), 10) != 0)
            log.LogDebug("The standby's warm-up runs at normal priority: setpriority failed (errno {Errno})", Marshal.GetLastPInvokeError());
    }

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();

    /// <summary>See <see cref="Rehearsal"/>. Only a warm-up: when it fails, the processor starts cold.</summary>
    private static void Rehearse(ProcessorSettings settings, int replyPartitions, ILoggerFactory loggers, ILogger log)
    {
        try
        {
            Rehearsal.Run(settings, replyPartitions, loggers);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            log.LogWarning(e, "Processor {Instance}: the rehearsal of its topology failed, so it starts without it (its first tasks take longer to create): {Error}",
                settings.InstanceName, e.Message);
        }
    }

    /// <summary>
    /// Whether the processor serves: its stream runs and every command partition it is assigned has a
    /// restored task deciding it (see <see cref="ServedPartitions"/>). The ready file follows it, and
    /// each time it starts serving it logs how many partitions it serves.
    /// </summary>
    private sealed class Serving
    {
        private readonly ServedPartitions _served;
        private readonly RebalanceTolerantCommits _clients;
        private readonly ILogger _log;
        private readonly string _instance;
        private readonly Lock _lock = new();
        private readonly TaskCompletionSource _allAssigned = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _running;
        private bool _serving;

        public Serving(KafkaStream stream, ServedPartitions served, RebalanceTolerantCommits clients, ILogger log, string instance)
        {
            _served = served;
            _clients = clients;
            _log = log;
            _instance = instance;
            // Changelog partitions are numbered as the command partitions of their tasks.
            stream.OnRestoreStartEvent += (changelog, _, _, _) => served.Stopped(changelog.Partition.Value);
            stream.OnRestoreEndEvent += (changelog, _, _) => served.Started(changelog.Partition.Value);
            served.Changed += Update;
        }

        /// <summary>Set once nobody else serves this instance; until then the file is the running one's.</summary>
        public ReadyFile? Ready
        {
            get;
            set
            {
                field = value;
                Update(write: true);
            }
        }

        /// <summary>Completes the first time the processor serves.</summary>
        public Task AllAssigned => _allAssigned.Task;

        public void StreamChanged(KafkaStream.State now)
        {
            lock (_lock) _running = now == KafkaStream.State.RUNNING;
            Update();
        }

        private void Update() => Update(write: false);

        private void Update(bool write)
        {
            lock (_lock)
            {
                var assigned = _running ? _clients.AssignedCommandPartitions() : [];
                var serving = _running && _served.ServesAll(assigned);
                if (serving && !_serving) _log.LogInformation("Processor {Instance} serves: {Partitions} command partitions, each restored and deciding", _instance, assigned.Count);
                if (serving != _serving || write) Ready?.Set(serving);
                _serving = serving;
                if (serving) _allAssigned.TrySetResult();
            }
        }
    }

    private sealed class Running(KafkaStream stream, ChangelogCheckpoints checkpoints, ReadyFile? ready, ILogger log, string instance) : IAsyncDisposable
    {
        private int _disposed;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            log.LogInformation("Processor {Instance} stopping", instance);
            ready?.Set(running: false);
            await Task.Run(stream.Dispose);
            checkpoints.Dispose();
            log.LogInformation("Processor {Instance} stopped", instance);
        }
    }
}
