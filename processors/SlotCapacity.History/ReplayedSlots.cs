using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.History;

/// <summary>
/// Slots rebuilt from their events alone, as they were at an instant: every event that occurred
/// at or before it (the command's record timestamp), in partition order, each event id once (a
/// re-delivered command re-emits its events with the same ids). SLOT_CONFIGURED carries the whole
/// configuration (a ConfigureSlot replaces it, a SetSlotOpen is one too); reservation events carry
/// the orders and units they take or give back. Which reservations are held is tracked so a
/// confirmation or an end moves the held counts. Pure: no Kafka, no clock.
/// </summary>
public sealed class ReplayedSlots(string hub, DateTimeOffset asOf)
{
    private const int ProblemsKept = 100;
    private readonly long _asOfMs = asOf.ToUnixTimeMilliseconds();
    private readonly Dictionary<string, (SlotKey Key, SlotState State, long LastUnixMs)> _slots = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Slot, string Reservation), SlotEvent> _held = [];
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    private readonly List<string> _problems = [];

    /// <summary>Hub replayed; empty = every hub.</summary>
    public string Hub { get; } = hub;
    public DateTimeOffset AsOf { get; } = asOf;
    public long Applied { get; private set; }
    public long Duplicates { get; private set; }
    /// <summary>Events that occurred after <see cref="AsOf"/>: not applied.</summary>
    public long Later { get; private set; }
    /// <summary>Records skipped as malformed or unusable (see <see cref="SlotEventCheck"/>).</summary>
    public long Skipped { get; private set; }
    /// <summary>Applied events that do not follow from the earlier ones (a confirmation of a hold never seen).</summary>
    public long Inconsistent { get; private set; }
    /// <summary>The first reasons for <see cref="Skipped"/> and <see cref="Inconsistent"/>.</summary>
    public IReadOnlyList<string> Problems => _problems;

    /// <summary>Applies one event; returns why it was skipped or inconsistent, else null.</summary>
    public string? Apply(SlotEvent e)
    {
        if (SlotEventCheck.Problem(e, out var key) is { } problem)
        {
            Skipped++;
            return Note(problem);
        }
        if (Hub.Length > 0 && key.Hub != Hub) return null;
        if (e.OccurredUnixMs > _asOfMs)
        {
            Later++;
            return null;
        }
        if (!_seen.Add(e.EventId))
        {
            Duplicates++;
            return null;
        }
        Applied++;
        if (!_slots.TryGetValue(e.Slot, out var slot))
            slot = (key, new SlotState { Slot = e.Slot }, 0);
        _slots[e.Slot] = slot with { LastUnixMs = Math.Max(slot.LastUnixMs, e.OccurredUnixMs) };
        var inconsistent = Fold(slot.State, e);
        if (inconsistent is null) return null;
        Inconsistent++;
        return Note(inconsistent);
    }

    /// <summary>Counts a record that is not a SlotEvent at all as skipped.</summary>
    public void SkipMalformed(string problem)
    {
        Skipped++;
        Note(problem);
    }

    /// <summary>Each configured slot's availability as of <see cref="AsOf"/>, as the engine would publish it.</summary>
    public IEnumerable<AvailabilitySnapshot> Snapshots() =>
        _slots.Values.Where(s => s.State.Configured)
            .Select(s => SlotDecisions.Snapshot(s.State, s.Key, new AppliedAt { UnixMs = s.LastUnixMs }));

    /// <summary>Utilisation per hub and day, the same fold as the gateway's GetUtilisation.</summary>
    public UtilisationReply Utilisation()
    {
        var reply = new UtilisationReply();
        reply.Days.AddRange(Domain.Utilisation.PerHubAndDay(Snapshots()));
        return reply;
    }

    private string? Fold(SlotState state, SlotEvent e)
    {
        var reservation = (e.Slot, e.ReservationId);
        switch (e.Kind)
        {
            case SlotEventKind.SlotConfigured:
                state.Config = e.Config.Clone();
                state.Configured = true;
                return null;
            case SlotEventKind.ReservationHeld or SlotEventKind.ReservationBooked:
                Move(state, e, e.FleetUnits);
                if (e.Kind == SlotEventKind.ReservationHeld)
                {
                    _held[reservation] = e;
                    MoveHeld(state, e.FleetCounter, e.SharedUnits, 1);
                }
                return null;
            case SlotEventKind.ReservationConfirmed:
                if (!_held.Remove(reservation, out var hold))
                    return $"event {e.EventId}: confirms reservation {e.ReservationId} of {e.Slot}, which this replay never saw held";
                MoveHeld(state, hold.FleetCounter, hold.SharedUnits, -1);
                return null;
            default:
                // Released, expired or abandoned: gives back what the event says; a reservation
                // abandoned before its Reserve arrived gives back nothing.
                Move(state, e, e.FleetUnits);
                if (_held.Remove(reservation, out var ended))
                    MoveHeld(state, ended.FleetCounter, ended.SharedUnits, -1);
                else if (e.Kind == SlotEventKind.HoldExpired)
                    return $"event {e.EventId}: expires reservation {e.ReservationId} of {e.Slot}, which this replay never saw held";
                return null;
        }
    }

    private static void Move(SlotState state, SlotEvent e, long orders)
    {
        if (orders == 0) return;
        Add(state.FleetUsed, e.FleetCounter, orders);
        if (e.Zone.Length > 0) Add(state.ZoneUsed, e.Zone, orders);
        foreach (var (counter, units) in e.SharedUnits) Add(state.SharedUsed, counter, units);
    }

    /// <summary>Moves a hold's counts by <paramref name="sign"/> (+1 taken, -1 given back) of what it drew.</summary>
    private static void MoveHeld(SlotState state, string fleetCounter, IDictionary<string, long> drawn, int sign)
    {
        Add(state.FleetHeld, fleetCounter, sign);
        foreach (var (counter, units) in drawn) Add(state.SharedHeld, counter, sign * units);
    }

    private static void Add(IDictionary<string, long> map, string key, long delta)
    {
        var value = map.TryGetValue(key, out var old) ? old + delta : delta;
        if (value == 0) map.Remove(key);
        else map[key] = value;
    }

    private string Note(string problem)
    {
        if (_problems.Count < ProblemsKept) _problems.Add(problem);
        return problem;
    }
}
