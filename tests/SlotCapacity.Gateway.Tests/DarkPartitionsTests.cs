using System.Diagnostics;
using Xunit;

namespace SlotCapacity.Gateway.Tests;

/// <summary>When a gateway stops writing commands for a partition that answers nothing in time.</summary>
public sealed class DarkPartitionsTests
{
    private static readonly long Second = Stopwatch.Frequency;
    private readonly DarkPartitions _dark = new(darkAfter: TimeSpan.FromSeconds(1), probeEvery: TimeSpan.FromMilliseconds(100));

    [Fact]
    public void A_slot_whose_partition_was_never_reported_is_never_refused()
    {
        for (var i = 0; i < 10; i++) Assert.False(_dark.Missed("a@x", i * Second, out _));
        Assert.True(_dark.MaySend("a@x", 10 * Second, out _));
    }

    [Fact]
    public void Misses_within_a_pause_shorter_than_dark_after_refuse_nothing()
    {
        _dark.Delivered("a@x", 3);
        _dark.Answered("a@x", 0, out _);
        // A 0.9 s stall (a GC pause, a hiccup): many misses, none a second after the last answer.
        for (var i = 1; i <= 9; i++) Assert.False(_dark.Missed("a@x", i * Second / 10, out _));
        Assert.True(_dark.MaySend("a@x", Second * 95 / 100, out _));
        Assert.False(_dark.Answered("a@x", Second, out _));
    }

    [Fact]
    public void A_partition_silent_past_dark_after_is_refused_but_for_one_probe_per_interval_until_it_answers()
    {
        _dark.Delivered("a@x", 3);
        _dark.Delivered("b@x", 3);
        _dark.Delivered("c@x", 4);
        _dark.Answered("a@x", 0, out _);
        Assert.False(_dark.Missed("a@x", Second / 2, out _));
        Assert.False(_dark.Missed("b@x", Second, out _));
        Assert.True(_dark.Missed("a@x", Second * 11 / 10, out var partition));
        Assert.Equal(3, partition);

        // Every slot of partition 3 is refused; partition 4 is not.
        Assert.False(_dark.MaySend("b@x", Second * 115 / 100, out partition));
        Assert.Equal(3, partition);
        Assert.True(_dark.MaySend("c@x", Second * 115 / 100, out _));
        // One probe per 100 ms, whichever slot asks first.
        Assert.True(_dark.MaySend("a@x", Second * 121 / 100, out _));
        Assert.False(_dark.MaySend("b@x", Second * 125 / 100, out _));
        Assert.True(_dark.MaySend("b@x", Second * 132 / 100, out _));
        // The probe is answered in time: lit again, nothing refused.
        Assert.True(_dark.Answered("b@x", Second * 140 / 100, out partition));
        Assert.Equal(3, partition);
        Assert.True(_dark.MaySend("a@x", Second * 141 / 100, out _));
        Assert.True(_dark.MaySend("b@x", Second * 141 / 100, out _));
    }

    [Fact]
    public void Fewer_than_three_misses_never_darken_however_long_the_silence()
    {
        _dark.Delivered("a@x", 1);
        _dark.Answered("a@x", 0, out _);
        Assert.False(_dark.Missed("a@x", 5 * Second, out _));
        Assert.False(_dark.Missed("a@x", 10 * Second, out _));
        Assert.True(_dark.MaySend("a@x", 11 * Second, out _));
        Assert.True(_dark.Missed("a@x", 12 * Second, out _));
    }

    [Fact]
    public void A_zero_dark_after_darkens_nothing()
    {
        var never = new DarkPartitions(TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
        never.Delivered("a@x", 1);
        for (var i = 0; i < 10; i++) Assert.False(never.Missed("a@x", i * Second, out _));
        Assert.True(never.MaySend("a@x", 10 * Second, out _));
    }
}
