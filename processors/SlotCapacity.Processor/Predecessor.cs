using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

namespace SlotCapacity.Processor;

/// <summary>
/// The running processor another process of the same instance takes over from: a successor
/// (<see cref="ProcessorSettings.TakeOverFrom"/>) stops it gracefully once it is ready to join, so that it
/// commits, closes its stores and leaves the state directory to its successor; a standby
/// (<see cref="ProcessorSettings.StandbyFor"/>) waits until it exits.
/// </summary>
public static partial class Predecessor
{
    /// <summary>How long a graceful stop may take before the predecessor is killed.</summary>
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(30);

    private const int SigTerm = 15;
    private const int SigKill = 9;

    /// <summary>Sends SIGTERM to <paramref name="pid"/> and returns once it has exited (SIGKILL after 30 s).</summary>
    public static async Task StopAsync(int pid, string instance, ILogger log, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(log);
        var stopping = Stopwatch.StartNew();
        if (!Running(pid))
        {
            log.LogInformation("Processor {Instance}: its predecessor (pid {Pid}) has already exited", instance, pid);
            return;
        }
        if (Kill(pid, SigTerm) != 0)
            throw new StartupException($"processor {instance}: could not stop its predecessor, pid {pid} (errno {Marshal.GetLastPInvokeError()})");
        if (!await ExitedAsync(pid, StopLimit, ct))
        {
            log.LogWarning("Processor {Instance}: its predecessor (pid {Pid}) did not stop within {Seconds} s of SIGTERM, so it is killed", instance, pid, StopLimit.TotalSeconds);
            _ = Kill(pid, SigKill);
            await ExitedAsync(pid, limit: null, ct);
        }
        log.LogInformation("Processor {Instance} took over from its predecessor (pid {Pid}), which stopped in {ElapsedMs} ms",
            instance, pid, stopping.ElapsedMilliseconds);
    }

    /// <summary>
    /// Returns true as soon as <paramref name="pid"/> has exited, false once <paramref name="limit"/> has
    /// passed with it running (null: no limit). A standby waits here for as long as its processor runs,
    /// so it waits on a pidfd (Linux 5.3+: readable when the process exits), on a thread of its own, waking
    /// once a second to see <paramref name="ct"/>; /proc every 50 ms where pidfds are not available.
    /// </summary>
    public static Task<bool> ExitedAsync(int pid, TimeSpan? limit, CancellationToken ct)
    {
        if (!Running(pid)) return Task.FromResult(true);
        if (limit <= TimeSpan.Zero) return Task.FromResult(false);
        return Task.Factory.StartNew(() => WaitForExit(pid, limit, ct), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private static bool WaitForExit(int pid, TimeSpan? limit, CancellationToken ct)
    {
        var waiting = Stopwatch.StartNew();
        var pidfd = PidfdOpen(PidfdOpenSyscall, pid, 0);
        try
        {
            while (Running(pid))
            {
                ct.ThrowIfCancellationRequested();
                var left = limit - waiting.Elapsed;
                if (left <= TimeSpan.Zero) return false;
                var timeoutMs = (int)Math.Ceiling(Math.Min(pidfd >= 0 ? 1000 : 50, left?.TotalMilliseconds ?? double.MaxValue));
                if (pidfd < 0)
                {
                    Thread.Sleep(timeoutMs);
                    continue;
                }
                var watch = new PollFd { Fd = pidfd, Events = PollIn };
                if (Poll(ref watch, 1, timeoutMs) > 0) return true;
            }
            return true;
        }
        finally
        {
            if (pidfd >= 0) _ = Close(pidfd);
        }
    }

    /// <summary>Whether the process exists and is not a zombie (an exited child its parent has not reaped yet).</summary>
    private static bool Running(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        // "pid (comm) S ...": the state follows the last ')', since comm may hold one.
        var state = stat.AsSpan(stat.LastIndexOf(')') + 1).TrimStart();
        return state.Length > 0 && state[0] is not ('Z' or 'X');
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private const int PidfdOpenSyscall = 434;
    private const short PollIn = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Returned;
    }

    /// <summary>syscall(SYS_pidfd_open, pid, flags): a file descriptor for the process, or -1.</summary>
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial int PidfdOpen(nint number, int pid, uint flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(ref PollFd fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
