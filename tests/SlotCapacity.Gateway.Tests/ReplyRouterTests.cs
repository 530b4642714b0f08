using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

public sealed class ReplyRouterTests : IDisposable
{
    private readonly GatewayMetrics metrics = new();
    private readonly MeterListener listener = new();
    private readonly Dictionary<string, long> dropped = [];
    private readonly ReplyRouter router;

    public ReplyRouterTests()
    {
        router = new ReplyRouter(NullLogger<ReplyRouter>.Instance, metrics);
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == metrics.Meter && instrument.Name == "gateway.replies.dropped") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "kind")
                    lock (dropped) dropped[(string)tag.Value!] = dropped.GetValueOrDefault((string)tag.Value!) + value;
        });
        listener.Start();
    }

    private static SlotReply Reply(string correlationId, bool accepted = true) =>
        new() { CorrelationId = correlationId, ReservationId = "r-" + correlationId, Accepted = accepted, Slot = "LON1@2026-12-01T08:00Z" };

    private long Dropped(string kind)
    {
        lock (dropped) return dropped.GetValueOrDefault(kind);
    }

    [Fact]
    public async Task A_command_reported_not_written_ends_its_wait_at_once_with_the_reason_not_at_the_deadline()
    {
        var pending = router.Register("c-unwritten");
        // The deadline is far: only the report can end this wait within the test's time.
        var wait = router.WaitAsync(pending, TimeSpan.FromHours(1), CancellationToken.None);
        router.NotWritten("c-unwritten", "Broker: Message size too large", possiblyWritten: false);
        var e = await Assert.ThrowsAsync<CommandNotWrittenException>(() => wait);
        Assert.Equal(("Broker: Message size too large", false), (e.Message, e.PossiblyWritten));

        // A reply that still comes for it is not handed to anyone.
        Assert.False(router.Deliver(Reply("c-unwritten")));
    }

    [Fact]
    public async Task A_not_written_report_after_the_reply_leaves_the_answer_alone()
    {
        var pending = router.Register("c-answered");
        Assert.True(router.Deliver(Reply("c-answered")));
        router.NotWritten("c-answered", "late report", possiblyWritten: true);
        Assert.Equal("c-answered", (await router.WaitAsync(pending, TimeSpan.FromHours(1), CancellationToken.None))!.CorrelationId);
    }

    [Fact]
    public async Task A_reply_reaches_the_call_waiting_for_its_correlation_id()
    {
        var a = router.Register("a");
        var b = router.Register("b");
        var waitA = router.WaitAsync(a, TimeSpan.FromSeconds(5), CancellationToken.None);
        var waitB = router.WaitAsync(b, TimeSpan.FromSeconds(5), CancellationToken.None);

        Assert.True(router.Deliver(Reply("b", accepted: false)));
        Assert.True(router.Deliver(Reply("a")));

        Assert.True((await waitA)!.Accepted);
        Assert.False((await waitB)!.Accepted);
        // Neither call waits any more: a second reply is a duplicate, and the ids are free again.
        Assert.False(router.Deliver(Reply("a")));
        Assert.Equal(1, Dropped("duplicate"));
        router.Register("a");
        router.Register("b");
    }

    [Fact]
    public async Task A_reply_that_arrives_before_the_wait_starts_is_kept()
    {
        var early = router.Register("early");
        Assert.True(router.Deliver(Reply("early")));
        var reply = await router.WaitAsync(early, TimeSpan.FromMilliseconds(1), CancellationToken.None);
        Assert.Equal("early", reply!.CorrelationId);
    }

    [Fact]
    public async Task A_reply_after_the_deadline_is_dropped_as_late()
    {
        var slow = router.Register("slow");
        var reply = await router.WaitAsync(slow, TimeSpan.FromMilliseconds(30), CancellationToken.None);
        Assert.Null(reply);

        Assert.False(router.Deliver(Reply("slow")));
        Assert.Equal(1, Dropped("late"));
        // The call no longer waits: its id can be registered again.
        router.Register("slow");
    }

    [Fact]
    public async Task A_duplicate_reply_is_dropped_and_the_first_one_wins()
    {
        var dup = router.Register("dup");
        var wait = router.WaitAsync(dup, TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.True(router.Deliver(Reply("dup", accepted: true)));
        Assert.False(router.Deliver(Reply("dup", accepted: false)));

        Assert.True((await wait)!.Accepted);
        Assert.Equal(1, Dropped("duplicate"));
    }

    [Fact]
    public void A_reply_nobody_asked_for_is_dropped_as_unknown()
    {
        Assert.False(router.Deliver(Reply("someone-else")));
        Assert.Equal(1, Dropped("unknown"));
    }

    [Fact]
    public async Task A_cancelled_call_stops_waiting_and_its_reply_is_late()
    {
        var gone = router.Register("gone");
        using var cts = new CancellationTokenSource();
        var wait = router.WaitAsync(gone, TimeSpan.FromSeconds(30), cts.Token);
        await cts.CancelAsync();
        Assert.Null(await wait);
        Assert.False(router.Deliver(Reply("gone")));
        Assert.Equal(1, Dropped("late"));
    }

    [Fact]
    public async Task Replies_racing_deadlines_are_each_either_delivered_or_dropped_once()
    {
        const int calls = 2_000;
        var waits = new Task<SlotReply?>[calls];
        for (var i = 0; i < calls; i++)
        {
            waits[i] = router.WaitAsync(router.Register($"c{i}"), TimeSpan.FromMilliseconds(i % 3), CancellationToken.None);
        }
        var delivered = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(worker => Task.Run(() =>
        {
            for (var i = worker; i < calls; i += 4)
                if (router.Deliver(Reply($"c{i}"))) Interlocked.Increment(ref delivered);
        })));
        var answered = (await Task.WhenAll(waits)).Count(r => r is not null);

        Assert.Equal(delivered, answered);
        Assert.Equal(calls - delivered, Dropped("late"));
        // No call is left waiting: Register throws for an id still waiting.
        for (var i = 0; i < calls; i++) router.Register($"c{i}");
    }

    public void Dispose()
    {
        listener.Dispose();
        metrics.Dispose();
    }
}
