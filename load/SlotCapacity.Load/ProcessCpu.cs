using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace SlotCapacity.Load;

/// <summary>
/// A process whose CPU a run accounts for. WithChildren adds its live children (PostgreSQL's
/// backends are children of the postmaster) and the children it already reaped (cutime/cstime).
/// </summary>
public sealed record WatchedProcess(string Name, int Pid, bool WithChildren = false);

/// <summary>The CPU fields of one /proc/PID/stat line, in clock ticks.</summary>
public readonly record struct ProcStat(int Pid, int ParentPid, long UserTicks, long SystemTicks, long ChildUserTicks, long ChildSystemTicks)
{
    /// <summary>
    /// Parses "pid (comm) state ppid ... utime stime cutime cstime ...". The command name may hold
    /// spaces and parentheses, so the fields are counted from the last ')'.
    /// </summary>
    public static ProcStat? Parse(string line)
    {
        var close = line.LastIndexOf(')');
        var open = line.IndexOf('(');
        if (close < 0 || open < 0) return null;
        var fields = line[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        if (fields.Length < 15 || !int.TryParse(line[..open].Trim(), CultureInfo.InvariantCulture, out var pid)) return null;
        long F(int i) => long.Parse(fields[i], CultureInfo.InvariantCulture);
        return new ProcStat(pid, int.Parse(fields[1], CultureInfo.InvariantCulture), F(11), F(12), F(13), F(14));
    }
}

/// <summary>
/// Reads CPU time from a /proc tree (the real one, or a fake directory in tests). Only the
/// processes asked for are read, so one sample costs a few file reads.
/// </summary>
public sealed partial class ProcCpu(string procRoot = "/proc", long ticksPerSecond = 0)
{
    public static readonly ProcCpu Machine = new();

    public string Root { get; } = procRoot;
    public long TicksPerSecond { get; } = ticksPerSecond > 0 ? ticksPerSecond : ClockTicks();

    /// <summary>Null when the process is gone (or its line cannot be read).</summary>
    public ProcStat? Stat(int pid)
    {
        try
        {
            return ProcStat.Parse(ReadText(pid, "stat"));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>CPU seconds the process used so far (children included when asked); null once it is gone.</summary>
    public double? CpuSeconds(WatchedProcess p)
    {
        if (Stat(p.Pid) is not { } own) return null;
        var ticks = own.UserTicks + own.SystemTicks;
        if (p.WithChildren)
        {
            ticks += own.ChildUserTicks + own.ChildSystemTicks;
            foreach (var child in Children(p.Pid)) ticks += child.UserTicks + child.SystemTicks;
        }
        return ticks / (double)TicksPerSecond;
    }

    private IEnumerable<ProcStat> Children(int parent)
    {
        foreach (var pid in Pids())
            if (Stat(pid) is { } s && s.ParentPid == parent) yield return s;
    }

    public IEnumerable<int> Pids()
    {
        IEnumerable<string> dirs;
        try
        {
            dirs = Directory.EnumerateDirectories(Root).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            yield break;
        }
        foreach (var dir in dirs)
            if (int.TryParse(Path.GetFileName(dir), CultureInfo.InvariantCulture, out var pid)) yield return pid;
    }

    /// <summary>The command line with its NUL separators as spaces; empty when unreadable.</summary>
    public string CommandLine(int pid) => ReadText(pid, "cmdline").Replace('\0', ' ').Trim();

    /// <summary>One variable of the process's environment (readable for our own user's processes).</summary>
    public string? Environment(int pid, string name)
    {
        var prefix = name + "=";
        return ReadText(pid, "environ").Split('\0').FirstOrDefault(v => v.StartsWith(prefix, StringComparison.Ordinal))?[prefix.Length..];
    }

    public string? WorkingDirectory(int pid)
    {
        try
        {
            return new DirectoryInfo(Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture), "cwd")).ResolveLinkTarget(returnFinalTarget: true)?.FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private string ReadText(int pid, string file)
    {
        try
        {
            return File.ReadAllText(Path.Combine(Root, pid.ToString(CultureInfo.InvariantCulture), file));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>sysconf(_SC_CLK_TCK): the unit of /proc's CPU times (100 on Linux in practice).</summary>
    private static long ClockTicks()
    {
        if (!OperatingSystem.IsLinux()) return 100;
        var ticks = NativeMethods.sysconf(2);
        return ticks > 0 ? ticks : 100;
    }

    private static partial class NativeMethods
    {
        [LibraryImport("libc", SetLastError = false)]
        internal static partial long sysconf(int name);
    }
}

/// <summary>CPU seconds of a set of processes at one instant.</summary>
public sealed record CpuSample(long Timestamp, IReadOnlyDictionary<string, double?> Seconds)
{
    public static CpuSample Take(ProcCpu proc, IReadOnlyList<WatchedProcess> processes) =>
        new(Stopwatch.GetTimestamp(), processes.ToDictionary(p => p.Name, proc.CpuSeconds));
}

/// <summary>CPU one process used over an interval; Cores = CPU seconds / wall seconds.</summary>
public sealed record ProcessCpuUse(string Name, double CpuSeconds, double Cores);

/// <summary>
/// CPU used over a stretch of a run: each process of the target, the harness itself, and per
/// call. UsPerCall = CPU µs per call = CPU ms per 1,000 calls.
/// </summary>
public sealed record CpuReport(
    double WallSeconds,
    IReadOnlyList<ProcessCpuUse> Target,
    ProcessCpuUse Harness,
    double TargetCpuSeconds,
    double TargetCores,
    long Calls,
    double TargetUsPerCall,
    double HarnessUsPerCall,
    IReadOnlyList<string> Missing)
{
    public const string HarnessName = "harness";

    /// <summary>The difference of two samples of the same processes; a process gone by the end is listed as missing.</summary>
    public static CpuReport Between(CpuSample start, CpuSample end, long calls)
    {
        var wall = (end.Timestamp - start.Timestamp) / (double)Stopwatch.Frequency;
        var uses = new List<ProcessCpuUse>();
        var missing = new List<string>();
        ProcessCpuUse? harness = null;
        foreach (var (name, before) in start.Seconds)
        {
            if (before is null || end.Seconds.GetValueOrDefault(name) is not { } after)
            {
                missing.Add(name);
                continue;
            }
            var use = new ProcessCpuUse(name, Math.Round(after - before.Value, 3), wall > 0 ? Math.Round((after - before.Value) / wall, 3) : 0);
            if (name == HarnessName) harness = use;
            else uses.Add(use);
        }
        harness ??= new ProcessCpuUse(HarnessName, 0, 0);
        var total = uses.Sum(u => u.CpuSeconds);
        return new CpuReport(Math.Round(wall, 3), uses, harness, Math.Round(total, 3), wall > 0 ? Math.Round(total / wall, 3) : 0, calls,
            PerCall(total, calls), PerCall(harness.CpuSeconds, calls), missing);
    }

    public static double PerCall(double cpuSeconds, long calls) => calls <= 0 ? 0 : Math.Round(cpuSeconds * 1e6 / calls, 1);
}

/// <summary>
/// The cost of each kind of call, from two extra phases run after the measured steps: reserves
/// alone (with their confirm/release in checkout scenarios), then reads alone, at the step's rates.
/// </summary>
/// <param name="TargetUsPerReserveAboveIdle">the same less what the target burns idle over the
/// phase: the cost the traffic adds (null when idle was not measured)</param>
public sealed record CostSplit(
    double Seconds,
    double TargetUsPerReserve,
    double TargetUsPerRead,
    double HarnessUsPerReserve,
    double HarnessUsPerRead,
    IReadOnlyList<ProcessCost> Processes,
    double? TargetUsPerReserveAboveIdle = null,
    double? TargetUsPerReadAboveIdle = null);

/// <summary>One process's CPU µs per reserve and per read (= CPU ms per 1,000 of each).</summary>
public sealed record ProcessCost(string Name, double UsPerReserve, double UsPerRead);

/// <summary>What the target and the harness burn with no traffic, measured just before the run.</summary>
public sealed record IdleCost(double Seconds, double TargetCores, double HarnessCores, IReadOnlyList<ProcessCpuUse> Processes)
{
    /// <summary>Where the quietest stretch, the one reported, began: seconds after preparing.</summary>
    public double QuietestFromSeconds { get; init; }
}

/// <summary>Measures the processes of a target and the harness over stretches of a run.</summary>
public sealed class CpuMeter
{
    private const int IdleSearch = 4;

    private readonly ProcCpu _proc;
    private readonly IReadOnlyList<WatchedProcess> _processes;

    public CpuMeter(IReadOnlyList<WatchedProcess> targetProcesses, ProcCpu? proc = null)
    {
        _proc = proc ?? ProcCpu.Machine;
        _processes = [.. targetProcesses, new WatchedProcess(CpuReport.HarnessName, System.Environment.ProcessId)];
    }

    public IReadOnlyList<WatchedProcess> Processes => _processes;

    public CpuSample Sample() => CpuSample.Take(_proc, _processes);

    /// <summary>
    /// The target's cost with no traffic: the quietest stretch of <paramref name="length"/> (in whole
    /// seconds) within <see cref="IdleSearch"/> times that after preparing. Right after a plan was
    /// applied the processors, the warehouse and the views are still working through it (0.8-1.4
    /// cores "idle" was measured then), which made every "above idle" figure meaningless; a target
    /// that never quietens is measured at its floor.
    /// </summary>
    public async Task<IdleCost> IdleAsync(TimeSpan length, CancellationToken ct)
    {
        var window = Math.Max(1, (int)Math.Round(length.TotalSeconds));
        var samples = new List<CpuSample> { Sample() };
        for (var second = 0; second < window * IdleSearch; second++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            samples.Add(Sample());
        }
        return Quietest(samples, window);
    }

    /// <summary>The stretch of <paramref name="window"/> consecutive samples' intervals with the fewest target cores.</summary>
    public static IdleCost Quietest(IReadOnlyList<CpuSample> samples, int window)
    {
        var quietest = Enumerable.Range(0, samples.Count - window)
            .Select(first => (First: first, Report: CpuReport.Between(samples[first], samples[first + window], 0)))
            .MinBy(s => s.Report.TargetCores);
        var r = quietest.Report;
        return new IdleCost(r.WallSeconds, r.TargetCores, r.Harness.Cores, r.Target)
        {
            QuietestFromSeconds = Math.Round(CpuReport.Between(samples[0], samples[quietest.First], 0).WallSeconds, 1),
        };
    }

    public static CostSplit Split(CpuReport reserves, long reserveCalls, CpuReport reads, long readCalls, double? idleCores = null)
    {
        double? AboveIdle(CpuReport r, long calls) =>
            idleCores is { } idle ? CpuReport.PerCall(Math.Max(0, r.TargetCpuSeconds - idle * r.WallSeconds), calls) : null;
        var perProcess = reserves.Target.Select(p => new ProcessCost(p.Name,
            CpuReport.PerCall(p.CpuSeconds, reserveCalls),
            CpuReport.PerCall(reads.Target.FirstOrDefault(r => r.Name == p.Name)?.CpuSeconds ?? 0, readCalls))).ToList();
        return new CostSplit(Math.Round(reserves.WallSeconds + reads.WallSeconds, 3),
            CpuReport.PerCall(reserves.TargetCpuSeconds, reserveCalls), CpuReport.PerCall(reads.TargetCpuSeconds, readCalls),
            CpuReport.PerCall(reserves.Harness.CpuSeconds, reserveCalls), CpuReport.PerCall(reads.Harness.CpuSeconds, readCalls),
            perProcess, AboveIdle(reserves, reserveCalls), AboveIdle(reads, readCalls));
    }
}
