using System.Diagnostics;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

/// <summary>A throwaway /proc tree: stat, cmdline and environ files per pid.</summary>
internal sealed class FakeProc : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("fake-proc-").FullName;

    /// <summary>utime/stime/cutime/cstime in ticks (100 per second in these tests).</summary>
    public FakeProc Process(int pid, int parent, long utime, long stime, string cmdline = "x", long cutime = 0, long cstime = 0,
        string comm = "dotnet", string environ = "")
    {
        var dir = Directory.CreateDirectory(Path.Combine(Root, pid.ToString(System.Globalization.CultureInfo.InvariantCulture))).FullName;
        File.WriteAllText(Path.Combine(dir, "stat"),
            $"{pid} ({comm}) S {parent} {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 12 0 100 1000 100");
        File.WriteAllText(Path.Combine(dir, "cmdline"), cmdline.Replace(' ', '\0') + "\0");
        File.WriteAllText(Path.Combine(dir, "environ"), environ.Replace(' ', '\0'));
        return this;
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

public class CpuAccountingTests
{
    [Fact]
    public void A_stat_line_is_read_from_after_the_command_name_even_when_the_name_holds_spaces_and_parentheses()
    {
        var stat = ProcStat.Parse("4242 (dotnet (worker) 2) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 75 12 3 20 0 12 0");
        Assert.Equal(new ProcStat(4242, 17, 250, 75, 12, 3), stat);
        Assert.Null(ProcStat.Parse("garbage"));
    }

    [Fact]
    public void Cpu_seconds_are_user_plus_system_ticks_and_with_children_add_live_and_reaped_children()
    {
        using var proc = new FakeProc()
            .Process(100, 1, utime: 300, stime: 100, cutime: 40, cstime: 10)   // a postmaster
            .Process(101, 100, utime: 50, stime: 25)                           // its backends
            .Process(102, 100, utime: 5, stime: 5)
            .Process(200, 1, utime: 1000, stime: 0);                           // unrelated
        var cpu = new ProcCpu(proc.Root, ticksPerSecond: 100);

        Assert.Equal(4.0, cpu.CpuSeconds(new WatchedProcess("alone", 100)));
        Assert.Equal(4.0 + 0.5 + 0.75 + 0.1, cpu.CpuSeconds(new WatchedProcess("postgres", 100, WithChildren: true))!.Value, 6);
        Assert.Null(cpu.CpuSeconds(new WatchedProcess("gone", 999)));
    }

    [Fact]
    public void A_report_between_two_samples_gives_cores_and_microseconds_per_call_per_process_and_for_the_harness()
    {
        var start = new CpuSample(0, new Dictionary<string, double?> { ["gateway-1"] = 10, ["processor-1"] = 5, [CpuReport.HarnessName] = 1, ["gone"] = 3 });
        var end = new CpuSample(Stopwatch.Frequency * 2, new Dictionary<string, double?> { ["gateway-1"] = 11, ["processor-1"] = 5.5, [CpuReport.HarnessName] = 1.2, ["gone"] = null });

        var report = CpuReport.Between(start, end, calls: 1_000);

        Assert.Equal(2, report.WallSeconds);
        Assert.Equal(1.5, report.TargetCpuSeconds);
        Assert.Equal(0.75, report.TargetCores);
        Assert.Equal(0.5, report.Target.Single(p => p.Name == "gateway-1").Cores);
        Assert.Equal(1_500, report.TargetUsPerCall);   // 1.5 CPU-s over 1,000 calls = 1.5 ms per call
        Assert.Equal(0.1, report.Harness.Cores, 6);
        Assert.Equal(200, report.HarnessUsPerCall, 6);
        Assert.Equal(["gone"], report.Missing);
    }

    [Fact]
    public void The_cost_split_divides_each_phase_by_its_own_calls()
    {
        var reserves = CpuReport.Between(new CpuSample(0, new Dictionary<string, double?> { ["p"] = 0, [CpuReport.HarnessName] = 0 }),
            new CpuSample(Stopwatch.Frequency, new Dictionary<string, double?> { ["p"] = 0.3, [CpuReport.HarnessName] = 0.05 }), 1_000);
        var reads = CpuReport.Between(new CpuSample(0, new Dictionary<string, double?> { ["p"] = 0, [CpuReport.HarnessName] = 0 }),
            new CpuSample(Stopwatch.Frequency, new Dictionary<string, double?> { ["p"] = 0.6, [CpuReport.HarnessName] = 0.2 }), 10_000);

        var split = CpuMeter.Split(reserves, 1_000, reads, 10_000);

        Assert.Equal(300, split.TargetUsPerReserve);
        Assert.Equal(60, split.TargetUsPerRead);
        Assert.Equal(50, split.HarnessUsPerReserve);
        Assert.Equal(20, split.HarnessUsPerRead);
        Assert.Equal(new ProcessCost("p", 300, 60), split.Processes.Single());
    }

    [Fact]
    public void The_test_process_itself_is_measured_from_the_real_proc()
    {
        var me = new WatchedProcess(CpuReport.HarnessName, Environment.ProcessId);
        var before = ProcCpu.Machine.CpuSeconds(me)!.Value;
        var spin = Stopwatch.StartNew();
        var x = 0.0;
        while (spin.ElapsedMilliseconds < 200) x += Math.Sqrt(x + 1);
        var after = ProcCpu.Machine.CpuSeconds(me)!.Value;
        Assert.True(x > 0);
        Assert.True(after > before, $"CPU seconds went from {before} to {after} while this test burned CPU");
    }

    [Fact]
    public void System_processes_come_from_pid_files_when_they_name_live_system_processes()
    {
        using var proc = new FakeProc()
            .Process(10, 1, 1, 1, "dotnet /repo/compose/LocalCluster/bin/Release/net10.0/SlotCapacity.LocalCluster.dll --brokers 3")
            .Process(11, 1, 1, 1, "dotnet /repo/processors/SlotCapacity.Processor/bin/Release/net10.0/SlotCapacity.Processor.dll")
            .Process(12, 1, 1, 1, "sleep 100");
        var pids = Directory.CreateDirectory(Path.Combine(proc.Root, "pids")).FullName;
        File.WriteAllText(Path.Combine(pids, "local-cluster.pid"), "10\n");
        File.WriteAllText(Path.Combine(pids, "processor-1.pid"), "11");
        File.WriteAllText(Path.Combine(pids, "gateway-1.pid"), "12");   // stale: the pid now runs something else

        var found = SystemProcesses.Find(new ProcCpu(proc.Root, 100), pids, "/repo", []);

        Assert.Equal(["local-cluster", "processor-1"], found.Processes.Select(p => p.Name));
        Assert.Equal([10, 11], found.Processes.Select(p => p.Pid));
        Assert.StartsWith("pid files", found.How, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_pid_files_the_system_is_found_by_command_line_in_this_repository_and_on_the_harness_gateway_ports()
    {
        using var proc = new FakeProc()
            .Process(20, 1, 1, 1, "dotnet /repo/compose/LocalCluster/bin/Release/net10.0/SlotCapacity.LocalCluster.dll --brokers 3")
            .Process(21, 1, 1, 1, "dotnet /repo/processors/SlotCapacity.Processor/bin/Release/net10.0/SlotCapacity.Processor.dll", environ: "PROCESSOR_INSTANCE=processor-2")
            .Process(22, 1, 1, 1, "dotnet /repo/processors/SlotCapacity.Processor/bin/Release/net10.0/SlotCapacity.Processor.dll", environ: "PROCESSOR_INSTANCE=processor-1")
            .Process(24, 1, 1, 1, "dotnet /repo/gateway/SlotCapacity.Gateway/bin/Release/net10.0/SlotCapacity.Gateway.dll --urls http://127.0.0.1:5102")
            .Process(23, 1, 1, 1, "dotnet /repo/gateway/SlotCapacity.Gateway/bin/Release/net10.0/SlotCapacity.Gateway.dll --urls http://127.0.0.1:5101")
            .Process(25, 1, 1, 1, "dotnet /repo/gateway/SlotCapacity.Gateway/bin/Release/net10.0/SlotCapacity.Gateway.dll plan apply -")
            .Process(26, 1, 1, 1, "dotnet /other-checkout/processors/SlotCapacity.Processor/bin/Release/net10.0/SlotCapacity.Processor.dll")
            .Process(27, 1, 1, 1, "dotnet /repo/gateway/SlotCapacity.Gateway/bin/Release/net10.0/SlotCapacity.Gateway.dll --urls http://127.0.0.1:6101");

        var found = SystemProcesses.Find(new ProcCpu(proc.Root, 100), Path.Combine(proc.Root, "no-pids"), "/repo", [5101, 5102]);

        Assert.Equal(
            [("local-cluster", 20), ("processor-2", 21), ("processor-1", 22), ("gateway-1", 23), ("gateway-2", 24)],
            found.Processes.Select(p => (p.Name, p.Pid)));
        Assert.Equal(5101, SystemProcesses.GatewayPort("dotnet x.dll --urls http://127.0.0.1:5101"));
        Assert.Null(SystemProcesses.GatewayPort("dotnet x.dll plan apply -"));
    }
}

public class IdleCostTests
{
    [Fact]
    public void Idle_is_the_quietest_stretch_after_preparing_not_the_work_left_over_from_it()
    {
        // One sample a second: a processor busy for the first 2.5 s after a plan, then quiet.
        double[] cpuSeconds = [0, 1, 2, 2.5, 2.5, 2.5, 2.52];
        var samples = cpuSeconds.Select((cpu, second) => new CpuSample(Stopwatch.Frequency * second,
            new Dictionary<string, double?> { ["processor-1"] = cpu, [CpuReport.HarnessName] = 0.01 * second })).ToList();

        var idle = CpuMeter.Quietest(samples, window: 2);

        Assert.Equal(0, idle.TargetCores);
        Assert.Equal(3, idle.QuietestFromSeconds);
        Assert.Equal(2, idle.Seconds);
        Assert.Equal(0.01, idle.HarnessCores, 6);
    }
}
