using System.Diagnostics;
using System.Globalization;
using SlotCapacity.Kafka;

namespace SlotCapacity.Faults;

/// <summary>What `make run` started, as its run directory describes it: pids, endpoints, bootstrap, state directories.</summary>
internal sealed class RunningSystem(string runDirectory)
{
    public string Directory => runDirectory;

    public IReadOnlyList<string> Gateways()
    {
        var file = Path.Combine(runDirectory, "endpoints");
        if (!File.Exists(file)) throw new InvalidOperationException($"{file} is missing: start the system first (make run)");
        var endpoints = File.ReadAllLines(file).Where(l => l.Length > 0).ToList();
        if (endpoints.Any(e => !e.StartsWith("http://127.0.0.1:", StringComparison.Ordinal)))
            throw new InvalidOperationException($"{file} names a non-loopback gateway; the fault suite only talks to 127.0.0.1");
        return endpoints;
    }

    public string Bootstrap() => File.ReadAllText(Path.Combine(runDirectory, "bootstrap")).Trim();

    /// <summary>The system's topic names (TOPIC_PREFIX, as `make run` and the processors read it).</summary>
    public static TopicNames Topics() => new(KafkaEndpoint.ProcessConfiguration[TopicNames.PrefixVariable] ?? "");

    /// <summary>Brokers of the local cluster (its bootstrap list names each one).</summary>
    public int Brokers() => Bootstrap().Split(',', StringSplitOptions.RemoveEmptyEntries).Length;

    /// <summary>
    /// Injects a fault through the local cluster's control endpoint (its address is in the run
    /// directory's cluster-control file), e.g. "brokers/1/down"; what the cluster answers is logged.
    /// </summary>
    public async Task ClusterAsync(string action, TextWriter log, Stopwatch clock)
    {
        var file = Path.Combine(runDirectory, "cluster-control");
        if (!File.Exists(file)) throw new InvalidOperationException($"{file} is missing: the system was not started by make run on the local cluster");
        var control = new Uri(File.ReadAllText(file).Trim());
        if (!control.IsLoopback) throw new InvalidOperationException($"{file} names {control}, not a loopback address");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var answer = await http.PostAsync(new Uri(control, action), new StringContent(""));
        var text = (await answer.Content.ReadAsStringAsync()).Trim();
        await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s local cluster: {text}{(answer.IsSuccessStatusCode ? "" : $" (refused, HTTP {(int)answer.StatusCode})")}");
    }

    public int? Pid(string name) => PidIn(Path.Combine(runDirectory, "pids", name + ".pid"));

    /// <summary>The process id a file holds: null when it is missing, unreadable or removed while being read.</summary>
    private static int? PidIn(string file)
    {
        try
        {
            return File.Exists(file) && int.TryParse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public async Task SignalAsync(string name, string signal, TextWriter log, Stopwatch clock)
    {
        var pid = Pid(name) ?? throw new InvalidOperationException($"no pid file for {name} in {runDirectory}/pids");
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
        await log.WriteLineAsync($"t={clock.Elapsed.TotalSeconds:F2}s SIG{signal} -> {name} (pid {pid}){(kill.ExitCode == 0 ? "" : ": kill failed")}");
    }

    /// <summary>Waits (bounded) until the supervisor has started <paramref name="name"/> again with a new pid.</summary>
    public Task<bool> RestartedAsync(string name, int oldPid, TimeSpan timeout) =>
        UntilAsync(() => Pid(name) is { } pid && pid != oldPid, timeout);

    /// <summary>
    /// Waits (bounded) until the processor's ready file (PROCESSOR_READY_FILE, `make run`: pids/NAME.ready)
    /// holds the pid the supervisor started it with: its stream runs with all its tasks.
    /// </summary>
    public Task<bool> ProcessorReadyAsync(string name, TimeSpan timeout)
    {
        var file = Path.Combine(runDirectory, "pids", name + ".ready");
        return UntilAsync(() => Pid(name) is { } pid && PidIn(file) == pid, timeout);
    }

    /// <summary>Checks <paramref name="condition"/> every 100 ms until it holds (true) or <paramref name="timeout"/> passes (false).</summary>
    private static async Task<bool> UntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            if (condition()) return true;
            await Task.Delay(100);
        }
        return false;
    }

    /// <summary>Waits (bounded) until a gateway's admin /health answers ready.</summary>
    public static async Task<bool> ReadyAsync(string gateway, TimeSpan timeout)
    {
        var admin = new UriBuilder(gateway);
        admin.Port += 1000;
        admin.Path = "/health";
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            try
            {
                if ((await http.GetAsync(admin.Uri)).IsSuccessStatusCode) return true;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            await Task.Delay(100);
        }
        return false;
    }
}
