using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

namespace SlotCapacity.Processor;

/// <summary>
/// The running processor a successor replaces (<see cref="ProcessorSettings.TakeOverFrom"/>): stopped
/// gracefully once the successor is ready to join, so that it commits, closes its stores and leaves the
/// state directory to its successor.
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
        var killed = false;
        while (Running(pid))
        {
            if (!killed && stopping.Elapsed > StopLimit)
            {
                killed = true;
                log.LogWarning("Processor {Instance}: its predecessor (pid {Pid}) did not stop within {Seconds} s of SIGTERM, so it is killed", instance, pid, StopLimit.TotalSeconds);
                _ = Kill(pid, SigKill);
            }
            await Task.Delay(TimeSpan.FromMilliseconds(10), ct);
        }
        log.LogInformation("Processor {Instance} took over from its predecessor (pid {Pid}), which stopped in {ElapsedMs} ms",
            instance, pid, stopping.ElapsedMilliseconds);
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
}
