using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using SlotCapacity.Contracts;

namespace SlotCapacity.Faults;

/// <summary>One reserve as checkout made it: every attempt, and the answer it ended with.</summary>
/// <param name="SentAt">Seconds since the run started, when the first attempt was sent.</param>
/// <param name="FailedAttempts">Send times of attempts that got no definite answer.</param>
/// <param name="Answer">"accepted", a reject reason, or "lost" (no definite answer after every attempt).</param>
/// <param name="Released">Reservation ids released because an attempt with them went unanswered and the
/// call did not end holding them (the client contract, gateway/README.md).</param>
/// <param name="ReleasesUnanswered">Of those, releases that got no definite answer either.</param>
internal sealed record Call(double SentAt, double EndedAt, int Attempts, IReadOnlyList<double> FailedAttempts, string Answer,
    int Released = 0, int ReleasesUnanswered = 0)
{
    public bool Accepted => Answer == "accepted";
    public bool Lost => Answer == "lost";
}

/// <summary>
/// A client that behaves like checkout: a reserve that gets no definite answer (UNAVAILABLE, a
/// transport error, shedding) is tried again on the other gateway with the same reservation id;
/// one the engine reports abandoned is tried with a new id. An id with an attempt that went
/// unanswered (the call failed in transport or ran into its own deadline) may hold capacity the
/// caller never saw, so unless the call ends holding that id it is released before the call ends; a
/// release that gets no answer either stays in an outbox and is retried after the calls
/// (<see cref="SettleReleasesAsync"/>).
/// </summary>
internal sealed class CheckoutClient : IDisposable
{
    private const int MaxAttempts = 6;
    private static readonly TimeSpan AttemptDeadline = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan CallBudget = TimeSpan.FromSeconds(8);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _failures = new();
    private readonly System.Collections.Concurrent.ConcurrentQueue<(SlotId Slot, string Id)> _outbox = new();
    private readonly List<GrpcChannel> _channels;
    private readonly List<Checkout.CheckoutClient> _checkout;
    private readonly Planning.PlanningClient _planning;

    /// <param name="checkoutToken">token with role checkout (reserves, availability)</param>
    /// <param name="plannerToken">token with role planner (configures the slots, reads utilisation)</param>
    public CheckoutClient(IReadOnlyList<string> gateways, string? checkoutToken, string? plannerToken)
    {
        _channels = gateways.Select(g => SlotChannel.ForAddress(g, checkoutToken)).ToList();
        _checkout = _channels.Select(c => new Checkout.CheckoutClient(c)).ToList();
        var planning = SlotChannel.ForAddress(gateways[0], plannerToken);
        _channels.Add(planning);
        _planning = new Planning.PlanningClient(planning);
    }

    private const int ConfigureAttempts = 3;

    public async Task<List<SlotId>> ConfigureSlotsAsync(string hub, int count, int capacity)
    {
        var day = DateTime.UtcNow.Date.AddDays(30);
        var slots = Enumerable.Range(0, count).Select(i => new SlotId { Hub = hub, Start = Timestamp.FromDateTime(day.AddHours(2 * (i % 12)).AddDays(i / 12)) }).ToList();
        var config = new SlotConfig { Open = true, Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = capacity } } };
        // A system that has just started may not answer yet (its processors still joining): a change that
        // was not applied is sent again, which is safe, a few times before giving up.
        var pending = slots;
        for (var attempt = 1; ; attempt++)
        {
            var reply = await _planning.ApplyPlanAsync(new ApplyPlanRequest { Slots = { pending.Select(s => new ConfigureSlotRequest { Slot = s, Config = config }) } },
                deadline: DateTime.UtcNow.AddSeconds(60));
            if (reply.Failed == 0) return slots;
            if (attempt == ConfigureAttempts)
                throw new SlotsNotConfiguredException($"{reply.Failed} of the experiment's {slots.Count} slots were not configured after {attempt} attempts: {reply.Results.First(r => !r.Applied).Detail}");
            pending = pending.Where((_, i) => !reply.Results[i].Applied).ToList();
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
    }

    public async Task<Call> ReserveAsync(SlotId slot, string reservationId, int n, Stopwatch clock)
    {
        var sentAt = clock.Elapsed.TotalSeconds;
        var failed = new List<double>();
        var unanswered = new List<string>();
        var gateway = n % _checkout.Count;
        var id = reservationId;
        var backoff = TimeSpan.FromMilliseconds(50);
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            var attemptAt = clock.Elapsed.TotalSeconds;
            var outcome = await AttemptAsync(_checkout[gateway], slot, id, n);
            if (outcome.Definite is { } answer)
            {
                var (released, stillUnknown) = await ReleaseAllAsync(slot, unanswered.Where(u => answer != "accepted" || u != id));
                return new Call(sentAt, clock.Elapsed.TotalSeconds, attempt, failed, answer, released, stillUnknown);
            }
            failed.Add(attemptAt);
            if (outcome.Unanswered && !unanswered.Contains(id)) unanswered.Add(id);
            _failures.AddOrUpdate($"gateway-{gateway + 1} {outcome.Why}", 1, (_, c) => c + 1);
            if (outcome.Abandoned) id = $"{reservationId}-r{attempt}";
            if (clock.Elapsed.TotalSeconds - sentAt + backoff.TotalSeconds > CallBudget.TotalSeconds) break;
            await Task.Delay(backoff);
            backoff *= 2;
            gateway = (gateway + 1) % _checkout.Count;
        }
        var (releasedLost, unknownLost) = await ReleaseAllAsync(slot, unanswered);
        return new Call(sentAt, clock.Elapsed.TotalSeconds, failed.Count, failed, "lost", releasedLost, unknownLost);
    }

    /// <summary>Releases each id, retried like a confirm (same id, the other gateway) until a definite answer:
    /// released, or UNKNOWN_RESERVATION (nothing held). Returns how many were sent and how many never got one
    /// within the call; those stay in the outbox (<see cref="SettleReleasesAsync"/>).</summary>
    private async Task<(int Released, int Unknown)> ReleaseAllAsync(SlotId slot, IEnumerable<string> ids)
    {
        var (released, unknown) = (0, 0);
        foreach (var id in ids.ToList())
        {
            released++;
            var answered = false;
            for (var attempt = 0; attempt < MaxAttempts && !answered; attempt++)
            {
                answered = await TryReleaseAsync(slot, id, attempt);
                if (!answered) await Task.Delay(TimeSpan.FromMilliseconds(100 << attempt));
            }
            if (answered) continue;
            unknown++;
            _outbox.Enqueue((slot, id));
        }
        return (released, unknown);
    }

    /// <summary>
    /// Retries the releases that got no definite answer within their calls, as checkout's outbox would
    /// (a release is idempotent, and until it lands the id may hold capacity nobody was told of), a round
    /// every second with at most 64 in flight, until each is answered or <paramref name="budget"/> is spent.
    /// Returns how many got an answer now and how many never did.
    /// </summary>
    public async Task<(int Answered, int Never)> SettleReleasesAsync(TimeSpan budget)
    {
        var until = DateTime.UtcNow + budget;
        var answered = 0;
        for (var round = 0; !_outbox.IsEmpty && DateTime.UtcNow < until; round++)
        {
            var pending = new List<(SlotId Slot, string Id)>();
            while (_outbox.TryDequeue(out var release)) pending.Add(release);
            await Parallel.ForEachAsync(pending, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (release, _) =>
            {
                if (await TryReleaseAsync(release.Slot, release.Id, round)) Interlocked.Increment(ref answered);
                else _outbox.Enqueue(release);
            });
            if (!_outbox.IsEmpty) await Task.Delay(TimeSpan.FromSeconds(1));
        }
        return (answered, _outbox.Count);
    }

    /// <summary>One release attempt, on gateway <paramref name="attempt"/> modulo their number: true when it got
    /// a definite answer (released, or a reject other than UNAVAILABLE such as UNKNOWN_RESERVATION).</summary>
    private async Task<bool> TryReleaseAsync(SlotId slot, string id, int attempt)
    {
        try
        {
            var reply = await _checkout[attempt % _checkout.Count].ReleaseAsync(
                new ReleaseRequest { ReservationId = id, Slot = slot, Reason = "no answer to a reserve attempt" },
                deadline: DateTime.UtcNow + AttemptDeadline);
            return reply.Accepted || reply.Reason != RejectReason.Unavailable;
        }
        catch (RpcException e) when (e.StatusCode is not (StatusCode.Unauthenticated or StatusCode.PermissionDenied or StatusCode.InvalidArgument))
        {
            return false;
        }
    }

    /// <param name="Unanswered">The attempt failed in transport or ran into its own deadline: it may have been applied.</param>
    private readonly record struct Attempt(string? Definite, bool Abandoned, string Why = "", bool Unanswered = false);

    /// <summary>Attempts without a definite answer, by gateway and what the attempt got, most frequent first.</summary>
    public IEnumerable<(string Kind, int Count)> FailedAttempts() => _failures.OrderByDescending(f => f.Value).Select(f => (f.Key, f.Value));

    private static async Task<Attempt> AttemptAsync(Checkout.CheckoutClient client, SlotId slot, string id, int n)
    {
        try
        {
            var reply = await client.ReserveAsync(new ReserveRequest
            {
                ReservationId = id,
                OrderId = $"order-{n}",
                Slot = slot,
                Zone = "north",
                Needs = new OrderNeeds(),
            }, deadline: DateTime.UtcNow + AttemptDeadline);
            if (reply.Accepted) return new Attempt("accepted", false);
            if (reply.Reason == RejectReason.Unavailable)
                return new Attempt(null, reply.Status == ReservationStatus.Abandoned, $"answered UNAVAILABLE{(reply.Status == ReservationStatus.Abandoned ? " (abandoned)" : "")}");
            return new Attempt(reply.Reason.ToString(), false);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted
                                         or StatusCode.Cancelled or StatusCode.Internal or StatusCode.Unknown)
        {
            // The first words of the detail tell a refused connection from a stopping gateway or a slow one.
            var detail = string.Join(' ', e.Status.Detail.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(6));
            return new Attempt(null, false, $"{e.StatusCode}: {detail}", Unanswered: e.StatusCode != StatusCode.ResourceExhausted);
        }
        catch (RpcException e)
        {
            return new Attempt("grpc " + e.StatusCode, false);
        }
    }

    /// <summary>Orders held or booked in the hub's slots once nothing changes any more (abandons applied,
    /// views caught up): the same figures for 3 s, and <paramref name="commandsTaken"/> true (every
    /// command written has reached the processors; a restarted processor may hold the last releases).</summary>
    public async Task<Bookings> SettledBookingsAsync(string hub, IReadOnlyList<SlotId> slots, Func<Task<bool>> commandsTaken)
    {
        ArgumentNullException.ThrowIfNull(commandsTaken);
        var from = slots.Min(s => s.Start.ToDateTime());
        var request = new UtilisationRequest
        {
            Hub = hub,
            From = Timestamp.FromDateTime(from.Date),
            To = Timestamp.FromDateTime(slots.Max(s => s.Start.ToDateTime()).Date.AddDays(1)),
        };
        Bookings? last = null;
        var stable = 0;
        var until = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < until)
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            UtilisationReply reply;
            try
            {
                reply = await _planning.GetUtilisationAsync(request, deadline: DateTime.UtcNow.AddSeconds(5));
            }
            catch (RpcException)
            {
                continue;
            }
            var now = new Bookings(reply.Days.Sum(d => d.UsedOrders), reply.Days.Sum(d => d.HeldOrders), reply.Days.Sum(d => d.OverCommittedSlots),
                reply.Days.Sum(d => d.CapacityOrders), reply.Days.Sum(d => d.Slots));
            stable = now == last ? stable + 1 : 0;
            last = now;
            if (stable >= 3 && now.Slots == slots.Count && await Taken(commandsTaken)) return now;
        }
        return last ?? throw new InvalidOperationException($"no utilisation for hub {hub} within 60 s");
    }

    // A failed look at the offsets (the cluster busy or down) is "not yet": the 60 s bound still holds.
    private static async Task<bool> Taken(Func<Task<bool>> commandsTaken)
    {
        try
        {
            return await commandsTaken();
        }
        catch (Confluent.Kafka.KafkaException)
        {
            return false;
        }
    }

    public void Dispose() => _channels.ForEach(c => c.Dispose());
}

internal sealed record Bookings(long Used, long Held, int OverCommittedSlots, long Capacity, int Slots);

/// <summary>The experiment's slots could not be configured: nothing was run.</summary>
internal sealed class SlotsNotConfiguredException(string message) : Exception(message);
