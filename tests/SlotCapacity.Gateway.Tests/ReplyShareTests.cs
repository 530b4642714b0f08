using System.Diagnostics;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

public class ReplyShareTests
{
    [Fact]
    public void Shares_of_every_ordinal_cover_each_reply_partition_exactly_once()
    {
        var shares = Enumerable.Range(0, 5).Select(ordinal => new ReplyShare(ordinal, 5).Partitions(12)).ToList();
        Assert.Equal([0, 5, 10], shares[0]);
        Assert.Equal([4, 9], shares[4]);
        Assert.Equal(Enumerable.Range(0, 12), shares.SelectMany(p => p).Order());
        Assert.Empty(new ReplyShare(12, 13).Partitions(12));
    }

    [Fact]
    public void A_correlation_id_names_its_incarnation_and_whether_it_was_a_reserve()
    {
        var id = CorrelationId.New("0a1b2c3d", reserve: true);
        Assert.True(CorrelationId.TryParse(id.ToString(), out var parsed));
        Assert.Equal(id, parsed);
        Assert.True(parsed.Reserve);
        Assert.True(parsed.IsFrom("0a1b2c3d"));
        Assert.False(parsed.IsFrom("ffffffff"));
        Assert.True(CorrelationId.TryParse(CorrelationId.New("0a1b2c3d", reserve: false).ToString(), out var other));
        Assert.False(other.Reserve);
        // Ids of gateways before this format (a bare GUID) are never taken for another incarnation's.
        Assert.False(CorrelationId.TryParse(Guid.NewGuid().ToString("N"), out _));
        Assert.False(CorrelationId.TryParse("a.confirm.b", out _));
    }

    [Fact]
    public void A_callers_deadline_shortens_the_wait_by_the_margin_and_never_below_zero()
    {
        var started = Stopwatch.GetTimestamp();
        var (_, unbounded) = CheckoutService.CallDeadline(TimeSpan.FromMilliseconds(150), TimeSpan.FromMilliseconds(10), started, DateTime.MaxValue);
        Assert.InRange((unbounded - DateTimeOffset.UtcNow).TotalMilliseconds, 100, 151);
        var (_, client) = CheckoutService.CallDeadline(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(10), started, DateTime.UtcNow.AddMilliseconds(60));
        Assert.InRange((client - DateTimeOffset.UtcNow).TotalMilliseconds, 0, 50);
        var (deadline, past) = CheckoutService.CallDeadline(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(10), started, DateTime.UtcNow.AddMilliseconds(5));
        Assert.True(past <= DateTimeOffset.UtcNow);
        Assert.True(deadline <= Stopwatch.GetTimestamp());
    }

    [Fact]
    public void A_view_checkpoint_round_trips_and_an_unreadable_one_is_named()
    {
        var folder = Path.Combine(Path.GetTempPath(), "gateway-tests", Guid.NewGuid().ToString("N"));
        var path = Path.Combine(folder, "view.checkpoint");
        try
        {
            Assert.Null(ViewCheckpoint.Load(path, out var missing));
            Assert.Equal("no checkpoint file yet", missing);
            var snapshot = new AvailabilitySnapshot { Slot = "LON1@2026-12-01T08:00Z", Hub = "LON1", Version = 42, Open = true };
            new ViewCheckpoint("x.slot-availability", new Dictionary<int, long> { [0] = 7, [1] = 0 }, [snapshot]).Save(path);
            var loaded = ViewCheckpoint.Load(path, out var problem);
            Assert.Null(problem);
            Assert.Equal("x.slot-availability", loaded!.Topic);
            Assert.Equal(7, loaded.Positions[0]);
            Assert.Equal(snapshot, Assert.Single(loaded.Snapshots));

            File.WriteAllText(path, "not a checkpoint");
            Assert.Null(ViewCheckpoint.Load(path, out var unreadable));
            Assert.NotNull(unreadable);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
