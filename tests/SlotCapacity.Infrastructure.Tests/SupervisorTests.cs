using System.Diagnostics;
using System.Globalization;
using Xunit;

namespace SlotCapacity.Infrastructure.Tests;

/// <summary>
/// `make run`'s supervisor (compose/supervise.sh) with a stand-in for a processor: a bash script that
/// "serves" by sleeping and, given the standby or handover variable, does what a processor does with it.
/// </summary>
public sealed class SupervisorTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "slot-supervisor", Guid.NewGuid().ToString("N"));
    private Process? _supervisor;

    /// <param name="warmStandbys">whether a standby says it is warm (holds its pid in the standby ready file), as a processor's does</param>
    private void Start(bool warmStandbys)
    {
        Directory.CreateDirectory(Path.Combine(_folder, "logs"));
        Directory.CreateDirectory(Path.Combine(_folder, "pids"));
        // A standby waits for the pid it stands by for to exit; a successor stops its predecessor first.
        File.WriteAllText(Path.Combine(_folder, "fake.sh"), """
            #!/usr/bin/env bash
            events="$(dirname "$0")/events"
            if [ -n "${FAKE_STANDBY_FOR:-}" ]; then
              echo "standby $$ for $FAKE_STANDBY_FOR" >>"$events"
              if [ -n "${FAKE_WARM_FILE:-}" ]; then echo "$$" >"$FAKE_WARM_FILE"; fi
              tail -f --pid="$FAKE_STANDBY_FOR" -s 0.05 /dev/null
              echo "took over $$" >>"$events"
            elif [ -n "${FAKE_TAKE_OVER_FROM:-}" ]; then
              kill -TERM "$FAKE_TAKE_OVER_FROM"
              tail -f --pid="$FAKE_TAKE_OVER_FROM" -s 0.05 /dev/null
              echo "succeeded $$" >>"$events"
            else
              echo "started $$" >>"$events"
            fi
            exec sleep 600
            """);
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Streams.sln")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException($"no Streams.sln above {AppContext.BaseDirectory}");
        var info = new ProcessStartInfo("bash") { UseShellExecute = false };
        if (warmStandbys) info.Environment["FAKE_WARM_FILE"] = Path.Combine(_folder, "pids", "fake.ready.standby");
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("""
            set -euo pipefail
            logs="$1/logs" pidfiles="$1/pids" pids=()
            source "$2/compose/supervise.sh"
            HANDOVER_VARIABLE=FAKE_TAKE_OVER_FROM STANDBY_VARIABLE=FAKE_STANDBY_FOR STANDBY_DELAY=1 STANDBY_READY_FILE="$1/pids/fake.ready.standby" \
              supervise fake bash "$1/fake.sh"
            trap 'kill -TERM "${pids[@]}"; wait' TERM
            wait
            """);
        info.ArgumentList.Add("supervisor-test");
        info.ArgumentList.Add(_folder);
        info.ArgumentList.Add(root);
        _supervisor = Process.Start(info)!;
    }

    [Fact]
    public async Task A_killed_process_is_replaced_by_its_standby_at_once_and_a_new_standby_follows()
    {
        Start(warmStandbys: false);
        var child = await PidAsync("fake.pid", other: null);
        var standby = await PidAsync("fake.standby.pid", other: null);
        // The supervisor writes the pid file as it starts the standby, before the standby's first line.
        await UntilAsync(() => Events().Contains($"standby {standby} for {child}"), "the standby never started");

        using (var kill = Process.Start("kill", ["-KILL", child.ToString(CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();

        Assert.Equal(standby, await PidAsync("fake.pid", other: child));
        await UntilAsync(() => Events().Contains($"took over {standby}"), "the standby never took over");
        var next = await PidAsync("fake.standby.pid", other: standby);
        await UntilAsync(() => Events().Contains($"standby {next} for {standby}"), "no new standby for the process that took over");
        Assert.DoesNotContain(Events(), e => e.StartsWith("started", StringComparison.Ordinal) && e != $"started {child}");
        Assert.Contains(File.ReadAllLines(Path.Combine(_folder, "logs", "supervisor.log")),
            l => l.EndsWith($"fake (pid {child}) exited with code 137; standby pid {standby} takes over", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_handover_without_a_warm_standby_stops_the_standby_first_so_that_only_the_successor_takes_over()
    {
        Start(warmStandbys: false);
        var child = await PidAsync("fake.pid", other: null);
        var standby = await PidAsync("fake.standby.pid", other: null);
        var supervisor = await PidAsync("fake.supervisor.pid", other: null);

        using (var usr1 = Process.Start("kill", ["-USR1", supervisor.ToString(CultureInfo.InvariantCulture)])) await usr1.WaitForExitAsync();

        var successor = await PidAsync("fake.pid", other: child);
        await UntilAsync(() => Events().Contains($"succeeded {successor}"), "the successor never took over");
        Assert.DoesNotContain($"took over {standby}", Events());
        var next = await PidAsync("fake.standby.pid", other: standby);
        await UntilAsync(() => Events().Contains($"standby {next} for {successor}"), "no new standby for the successor");
    }

    [Fact]
    public async Task A_handover_with_a_warm_standby_stops_the_process_and_the_standby_takes_its_place()
    {
        Start(warmStandbys: true);
        var child = await PidAsync("fake.pid", other: null);
        var standby = await PidAsync("fake.ready.standby", other: null);
        // The standby was started before its ready file: it is the supervisor's standby by now.
        Assert.Equal(standby, await PidAsync("fake.standby.pid", other: null));
        var supervisor = await PidAsync("fake.supervisor.pid", other: null);

        using (var usr1 = Process.Start("kill", ["-USR1", supervisor.ToString(CultureInfo.InvariantCulture)])) await usr1.WaitForExitAsync();

        Assert.Equal(standby, await PidAsync("fake.pid", other: child));
        await UntilAsync(() => Events().Contains($"took over {standby}"), "the standby never took over");
        Assert.DoesNotContain(Events(), e => e.StartsWith("succeeded", StringComparison.Ordinal));
        var next = await PidAsync("fake.standby.pid", other: standby);
        await UntilAsync(() => Events().Contains($"standby {next} for {standby}"), "no new standby for the process that took over");
        Assert.Contains(File.ReadAllLines(Path.Combine(_folder, "logs", "supervisor.log")),
            l => l.EndsWith($"fake (pid {child}) hands over to warm standby pid {standby}: stopping it", StringComparison.Ordinal));
    }

    private string[] Events()
    {
        var file = Path.Combine(_folder, "events");
        return File.Exists(file) ? File.ReadAllLines(file) : [];
    }

    /// <summary>The pid a file of the supervisor holds, once it holds one other than <paramref name="other"/>.</summary>
    private async Task<int> PidAsync(string file, int? other)
    {
        var path = Path.Combine(_folder, "pids", file);
        int pid = 0;
        await UntilAsync(() => File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture, out pid) && pid != other,
            $"{file} never held a pid{(other is null ? "" : $" other than {other}")}");
        return pid;
    }

    private async Task UntilAsync(Func<bool> condition, string failure)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            var log = Path.Combine(_folder, "logs", "supervisor.log");
            Assert.True(DateTime.UtcNow < until, $"{failure}; events: {string.Join(" | ", Events())}; supervisor: {(File.Exists(log) ? File.ReadAllText(log) : "")}");
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        if (_supervisor is { HasExited: false })
        {
            using var term = Process.Start("kill", ["-TERM", _supervisor.Id.ToString(CultureInfo.InvariantCulture)]);
            term.WaitForExit();
            if (!_supervisor.WaitForExit(10_000)) _supervisor.Kill(entireProcessTree: true);
        }
        _supervisor?.Dispose();
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }
}
