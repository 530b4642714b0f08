using SlotCapacity.Contracts;

namespace SlotCapacity.History;

/// <summary>
/// What every reader of `slot-events` (the replay, the warehouse) needs an event to carry before it
/// can use it. An event that fails is skipped with the reason, counted, and the stream goes on.
/// Fields a reader does not need may be missing: an event written before they existed lacks them.
/// </summary>
public static class SlotEventCheck
{
    /// <summary>Null when <paramref name="e"/> is usable, else why not, in one line.</summary>
    public static string? Problem(SlotEvent e) => Problem(e, out _);

    /// <summary>As <see cref="Problem(SlotEvent)"/>, with the event's slot key when it is usable.</summary>
    public static string? Problem(SlotEvent e, out SlotKey slot)
    {
        ArgumentNullException.ThrowIfNull(e);
        slot = default;
        if (string.IsNullOrEmpty(e.EventId)) return "the event has no event id";
        if (!SlotKey.TryParse(e.Slot, out var key)) return $"event {e.EventId}: slot '{e.Slot}' is not a slot key 'hub@yyyy-MM-ddTHH:mmZ'";
        slot = key.Value;
        if (e.Kind == SlotEventKind.Unspecified || !Enum.IsDefined(e.Kind))
            return $"event {e.EventId}: kind {(int)e.Kind} is unknown to this reader (written by a newer version, or not an event)";
        if (e.Kind == SlotEventKind.SlotConfigured)
            return e.Config is null ? $"event {e.EventId}: SLOT_CONFIGURED without a config" : null;
        if (string.IsNullOrEmpty(e.ReservationId)) return $"event {e.EventId}: {e.Kind} without a reservation id";
        if (e.FleetUnits != 0 && string.IsNullOrEmpty(e.FleetCounter))
            return $"event {e.EventId}: {e.Kind} moves {e.FleetUnits} orders but names no fleet counter";
        return null;
    }
}
