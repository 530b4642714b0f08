using System.Globalization;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// Finds the processes of the system under test for CPU accounting: the pid files
/// `compose/run-local.sh` writes (`.run/pids/NAME.pid`, the pid in decimal on the first line, names
/// local-cluster, processor-N, gateway-N) when they name a live SlotCapacity process, else the
/// processes whose command line runs the LocalCluster, Processor or Gateway dll from this
/// repository (other checkouts on the same machine run their own copies), gateways only when they
/// serve one of the harness's gateway ports.
/// </summary>
public static class SystemProcesses
{
    public sealed record Found(IReadOnlyList<WatchedProcess> Processes, string How);

    public static Found Find(ProcCpu proc, string pidDir, string repoRoot, IReadOnlyCollection<int> gatewayPorts)
    {
        var fromFiles = FromPidFiles(proc, pidDir);
        if (fromFiles.Count > 0) return new Found(fromFiles, $"pid files in {pidDir}");
        return new Found(FromCommandLines(proc, repoRoot, gatewayPorts), "/proc command lines");
    }

    private static List<WatchedProcess> FromPidFiles(ProcCpu proc, string pidDir)
    {
        var found = new List<WatchedProcess>();
        if (!Directory.Exists(pidDir)) return found;
        foreach (var file in Directory.GetFiles(pidDir, "*.pid").Order(StringComparer.Ordinal))
        {
            var text = File.ReadLines(file).FirstOrDefault()?.Trim();
            // A stale file (the process gone, its pid reused) must not be counted as the system.
            if (int.TryParse(text, CultureInfo.InvariantCulture, out var pid)
                && proc.CommandLine(pid).Contains("SlotCapacity.", StringComparison.Ordinal))
                found.Add(new WatchedProcess(Path.GetFileNameWithoutExtension(file), pid));
        }
        return found;
    }

    private static List<WatchedProcess> FromCommandLines(ProcCpu proc, string repoRoot, IReadOnlyCollection<int> gatewayPorts)
    {
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(repoRoot));
        bool Ours(int pid, string cmd) =>
            cmd.Contains(root + "/", StringComparison.Ordinal) || proc.WorkingDirectory(pid) == root;
        var cluster = new List<int>();
        var processors = new List<(int Pid, string? Instance)>();
        var gateways = new List<(int Pid, int Port)>();
        foreach (var pid in proc.Pids())
        {
            var cmd = proc.CommandLine(pid);
            if (!cmd.Contains("SlotCapacity.", StringComparison.Ordinal) || !Ours(pid, cmd)) continue;
            if (cmd.Contains("SlotCapacity.LocalCluster.dll", StringComparison.Ordinal) && !cmd.Contains(" provision", StringComparison.Ordinal))
                cluster.Add(pid);
            else if (cmd.Contains("SlotCapacity.Processor.dll", StringComparison.Ordinal))
                processors.Add((pid, proc.Environment(pid, "PROCESSOR_INSTANCE")));
            else if (cmd.Contains("SlotCapacity.Gateway.dll", StringComparison.Ordinal) && GatewayPort(cmd) is { } port
                     && (gatewayPorts.Count == 0 || gatewayPorts.Contains(port)))
                gateways.Add((pid, port));
        }
        var found = cluster.Order().Select((pid, i) => new WatchedProcess(i == 0 ? "local-cluster" : $"local-cluster-{i + 1}", pid)).ToList();
        found.AddRange(processors.OrderBy(p => p.Pid).Select((p, i) => new WatchedProcess(p.Instance ?? $"processor-{i + 1}", p.Pid)));
        found.AddRange(gateways.OrderBy(g => g.Port).Select((g, i) => new WatchedProcess($"gateway-{i + 1}", g.Pid)));
        return found;
    }

    /// <summary>The port of "--urls http://127.0.0.1:PORT"; null for the gateway's CLI verbs, which serve nothing.</summary>
    public static int? GatewayPort(string commandLine)
    {
        var args = commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var i = Array.IndexOf(args, "--urls");
        if (i < 0 || i + 1 >= args.Length) return null;
        return Uri.TryCreate(args[i + 1].Split(';')[0], UriKind.Absolute, out var uri) ? uri.Port : null;
    }
}
