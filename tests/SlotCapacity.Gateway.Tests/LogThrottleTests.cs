using System.Diagnostics;
using Xunit;

namespace SlotCapacity.Gateway.Tests;

public sealed class LogThrottleTests
{
    [Fact]
    public void One_line_per_interval_and_the_line_says_how_many_were_left_out_before_it()
    {
        var throttle = new LogThrottle(TimeSpan.FromSeconds(1));
        var second = Stopwatch.Frequency;
        var start = Stopwatch.GetTimestamp();

        Assert.True(throttle.TryTake(start, out var first));
        Assert.Equal(0, first);
        for (var i = 1; i <= 500; i++) Assert.False(throttle.TryTake(start + i * second / 1000, out _));
        Assert.True(throttle.TryTake(start + second, out var afterOneSecond));
        Assert.Equal(500, afterOneSecond);
        Assert.False(throttle.TryTake(start + second + 1, out _));
        Assert.True(throttle.TryTake(start + 5 * second, out var later));
        Assert.Equal(1, later);
    }

    [Fact]
    public void Threads_racing_for_one_interval_get_one_line_between_them()
    {
        var throttle = new LogThrottle(TimeSpan.FromHours(1));
        var now = Stopwatch.GetTimestamp();
        var taken = 0;
        Parallel.For(0, 10_000, _ =>
        {
            if (throttle.TryTake(now, out _)) Interlocked.Increment(ref taken);
        });
        Assert.Equal(1, taken);
    }
}
