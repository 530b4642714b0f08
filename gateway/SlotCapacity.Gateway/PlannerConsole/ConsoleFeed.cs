using SlotCapacity.Domain;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Live updates for the planners' console. Hooks the <see cref="AvailabilityView"/> only while at
/// least one console listens, so with none open a booking costs nothing more. Each listener gathers
/// the keys of the slots that changed in its hub and range; its stream sends them at most
/// <see cref="PushesPerSecond"/> times a second, however many bookings arrive (coalescing).
/// </summary>
public sealed class ConsoleFeed(AvailabilityView view)
{
    private readonly AvailabilityView view = view;
    public const int PushesPerSecond = 4;

    private readonly object gate = new();
    private readonly List<Listener> listeners = [];

    public int Listeners
    {
        get
        {
            lock (gate) return listeners.Count;
        }
    }

    /// <param name="hub">Empty = every hub.</param>
    public Listener Listen(string hub, DateTimeOffset from, DateTimeOffset to)
    {
        var listener = new Listener(this, hub, from.ToUnixTimeMilliseconds(), to.ToUnixTimeMilliseconds());
        lock (gate)
        {
            listeners.Add(listener);
            if (listeners.Count == 1) view.Applied = Changed;
        }
        return listener;
    }

    private void Leave(Listener listener)
    {
        lock (gate)
        {
            listeners.Remove(listener);
            if (listeners.Count == 0) view.Applied = null;
        }
    }

    private void Changed(AvailabilitySnapshot snapshot)
    {
        lock (gate)
        {
            foreach (var listener in listeners) listener.Offer(snapshot);
        }
    }

    /// <summary>One open console: the slots changed since its last push.</summary>
    public sealed class Listener : IDisposable
    {
        private readonly ConsoleFeed feed;
        private readonly string hub;
        private readonly long fromMs, toMs;
        private readonly object pendingLock = new();
        private HashSet<string> pending = new(StringComparer.Ordinal);
        private readonly SemaphoreSlim signal = new(0, 1);

        internal Listener(ConsoleFeed feed, string hub, long fromMs, long toMs)
        {
            this.feed = feed;
            this.hub = hub;
            this.fromMs = fromMs;
            this.toMs = toMs;
        }

        internal void Offer(AvailabilitySnapshot snapshot)
        {
            if (hub.Length > 0 && snapshot.Hub != hub) return;
            if (snapshot.StartUnixMs < fromMs || snapshot.StartUnixMs >= toMs) return;
            lock (pendingLock)
            {
                if (!pending.Add(snapshot.Slot) || pending.Count > 1) return;
            }
            // Offers come from the follower thread only, and the set just became non-empty: the signal is down.
            if (signal.CurrentCount == 0) signal.Release();
        }

        /// <summary>Waits until some slot changed (or <paramref name="timeout"/> passed: empty), then
        /// returns the update: the changed slots and their hub-days' new totals, UtilisationReply-shaped.</summary>
        public async Task<UtilisationReply?> NextAsync(TimeSpan timeout, CancellationToken ct)
        {
            if (!await signal.WaitAsync(timeout, ct)) return null;
            HashSet<string> changed;
            lock (pendingLock)
            {
                changed = pending;
                pending = new HashSet<string>(StringComparer.Ordinal);
            }
            var update = new UtilisationReply();
            var days = new HashSet<(string Hub, DateTime Day)>();
            foreach (var key in changed)
            {
                if (feed.view.Get(key) is not { } snapshot) continue;
                update.Slots.Add(snapshot);
                days.Add((snapshot.Hub, DateTimeOffset.FromUnixTimeMilliseconds(snapshot.StartUnixMs).UtcDateTime.Date));
            }
            foreach (var (dayHub, day) in days)
                update.Days.AddRange(Utilisation.PerHubAndDay(feed.view.Slots(dayHub, new DateTimeOffset(day, TimeSpan.Zero), new DateTimeOffset(day.AddDays(1), TimeSpan.Zero))));
            return update.Slots.Count == 0 ? null : update;
        }

        public void Dispose()
        {
            feed.Leave(this);
            signal.Dispose();
        }
    }
}
