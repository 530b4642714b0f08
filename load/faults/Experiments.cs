using System.Diagnostics;
using Confluent.Kafka;
using SlotCapacity.Kafka;

namespace SlotCapacity.Faults;

/// <summary>One fault, injected into the running system at a set time.</summary>
internal sealed record Experiment(string Name, string Description, Func<RunningSystem, Stopwatch, TextWriter, Task> Inject, int MinimumBrokers = 1)
{
    /// <summary>Why this experiment cannot run against <paramref name="system"/>, or null.</summary>
    public string? Unmet(RunningSystem system) => system.Brokers() is var brokers && brokers < MinimumBrokers
        ? $"{Name} needs a local cluster of at least {MinimumBrokers} brokers, this one has {brokers}: start the system with LOCAL_CLUSTER_BROKERS=3 make run"
        : null;
}

internal static class Experiments
{
    private static readonly TimeSpan RestartWait = TimeSpan.FromSeconds(60);

    public static readonly IReadOnlyList<Experiment> All =
    [
        new("none", "no fault (a steady run, the baseline)", (_, _, _) => Task.CompletedTask),
        new("processor-kill", "SIGKILL processor-1 (its standby takes its place, or the supervisor starts it again)",
            (system, clock, log) => system.SignalAsync("processor-1", "KILL", log, clock)),
        new("processor-kill-loop", "SIGKILL a processor every 20 s, alternating, three times", KillLoopAsync),
        new("processor-empty-state", "SIGKILL processor-1 and delete its state directory before it is started again (or its standby, held until then, takes over)", EmptyStateAsync),
        new("processor-rolling", "SIGTERM processor-1, then processor-2 once the first is back", (system, clock, log) => RollingAsync(system, clock, log, "processor")),
        new("processor-handover", "replace processor-1, then processor-2 once the first is back (`make run`'s rolling restart: USR1 to the supervisor, which stops the processor for its warm standby, or without one starts a new process that stops the old one when it is ready to take over)",
            (system, clock, log) => RollingAsync(system, clock, log, "processor", handover: true)),
        new("gateway-rolling", "SIGTERM gateway-1, then gateway-2 once the first is ready again", (system, clock, log) => RollingAsync(system, clock, log, "gateway")),
        new("gateway-kill", "SIGKILL gateway-1 with calls in flight", (system, clock, log) => system.SignalAsync("gateway-1", "KILL", log, clock)),
        new("malformed-commands", "1,000 malformed records written straight into slot-commands", MalformedAsync),
        new("broker-down", "broker 1 of the local cluster stops answering for 5 s, then answers again (a broker restart; the local cluster keeps its data)", BrokerDownAsync),
        new("leader-move", "the leader of every partition moves to broker 2, and 15 s later to broker 3 (a rolling broker restart)", LeaderMoveAsync, MinimumBrokers: 3),
    ];

    public static Experiment? Find(string name) => All.FirstOrDefault(e => e.Name == name);

    private static async Task KillLoopAsync(RunningSystem system, Stopwatch clock, TextWriter log)
    {
        for (var round = 0; round < 3; round++)
        {
            if (round > 0) await Task.Delay(TimeSpan.FromSeconds(20));
            await system.SignalAsync(round % 2 == 0 ? "processor-1" : "processor-2", "KILL", log, clock);
        }
    }

    private static async Task EmptyStateAsync(RunningSystem system, Stopwatch clock, TextWriter log)
    {
        // A standby would take over from the state directory at once: held still until it is empty, so
        // that whoever takes over starts from nothing, as on a new machine.
        var standby = system.Pid("processor-1.standby") is not null;
        if (standby) await system.SignalAsync("processor-1.standby", "STOP", log, clock);
        await system.SignalAsync("processor-1", "KILL", log, clock);
        // Without a standby the supervisor starts it again at once, but a new process reads the topics before it opens its state.
        var state = Path.Combine(system.Directory, "processor-1");
        foreach (var entry in Directory.EnumerateFileSystemEntries(state))
        {
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
            else File.Delete(entry);
        }
        await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s state directory of processor-1 emptied");
        if (standby) await system.SignalAsync("processor-1.standby", "CONT", log, clock);
    }

    /// <param name="handover">start the new process first (the supervisor's USR1, see compose/run-local.sh) instead of SIGTERM</param>
    private static async Task RollingAsync(RunningSystem system, Stopwatch clock, TextWriter log, string kind, bool handover = false)
    {
        var gateways = system.Gateways();
        for (var n = 1; n <= 2; n++)
        {
            var name = $"{kind}-{n}";
            var pid = system.Pid(name) ?? throw new InvalidOperationException($"no pid file for {name}");
            if (handover) await system.SignalAsync($"{name}.supervisor", "USR1", log, clock);
            else await system.SignalAsync(name, "TERM", log, clock);
            if (!await system.RestartedAsync(name, pid, RestartWait))
            {
                await log.WriteLineAsync($"{name} was not started again within {RestartWait.TotalSeconds} s");
                return;
            }
            // As an orchestrator's readiness gate does: the next one stops only once this one serves.
            var ready = kind == "gateway"
                ? await RunningSystem.ReadyAsync(gateways[n - 1], RestartWait)
                : await system.ProcessorReadyAsync(name, RestartWait);
            await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s {name} is back{(ready ? "" : " but not ready")}");
        }
    }

    private static async Task BrokerDownAsync(RunningSystem system, Stopwatch clock, TextWriter log)
    {
        await system.ClusterAsync("brokers/1/down", log, clock);
        await Task.Delay(TimeSpan.FromSeconds(5));
        await system.ClusterAsync("brokers/1/up", log, clock);
    }

    private static async Task LeaderMoveAsync(RunningSystem system, Stopwatch clock, TextWriter log)
    {
        await system.ClusterAsync("leaders?broker=2", log, clock);
        await Task.Delay(TimeSpan.FromSeconds(15));
        await system.ClusterAsync("leaders?broker=3", log, clock);
    }

    private static async Task MalformedAsync(RunningSystem system, Stopwatch clock, TextWriter log)
    {
        var topic = RunningSystem.Topics().Commands;
        WriteMalformedCommands(system.Bootstrap(), topic, 1_000);
        await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s 1,000 malformed records written to {topic}");
    }

    /// <summary>Random bytes, keyed junk-N, straight into the commands topic (also the fault suite's test).</summary>
    internal static void WriteMalformedCommands(string bootstrap, string topic, int count)
    {
        using var producer = new ProducerBuilder<string, byte[]>(KafkaEndpoint.Secured(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 5 }))
            .SetLogHandler((_, _) => { }).Build();
        for (var i = 0; i < count; i++)
        {
            var junk = new byte[64];
            Random.Shared.NextBytes(junk);
            producer.Produce(topic, new Message<string, byte[]> { Key = $"junk-{i}", Value = junk });
        }
        producer.Flush(TimeSpan.FromSeconds(30));
    }
}
