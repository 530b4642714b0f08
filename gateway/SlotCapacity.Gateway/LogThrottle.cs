using System.Diagnostics;

namespace SlotCapacity.Gateway;

/// <summary>
/// At most one log line per interval for an event that can come thousands of times a second (an
/// Abandon for every call of a failing-over partition): a flood of lines costs the process CPU
/// exactly when it is most loaded. The line that is written says how many were left out before it;
/// metrics count every event.
/// </summary>
public sealed class LogThrottle(TimeSpan interval)
{
    private readonly long intervalTicks = (long)(interval.TotalSeconds * Stopwatch.Frequency);
    private long nextAt = long.MinValue;
    private long leftOut;

    /// <summary>True when a line may be written at <paramref name="now"/> (a Stopwatch timestamp);
    /// <paramref name="leftOutBefore"/> is then how many were left out since the last one.</summary>
    public bool TryTake(long now, out long leftOutBefore)
    {
        var next = Volatile.Read(ref nextAt);
        if (now >= next && Interlocked.CompareExchange(ref nextAt, now + intervalTicks, next) == next)
        {
            leftOutBefore = Interlocked.Exchange(ref leftOut, 0);
            return true;
        }
        Interlocked.Increment(ref leftOut);
        leftOutBefore = 0;
        return false;
    }
}
