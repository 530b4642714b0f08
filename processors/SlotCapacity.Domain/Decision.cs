using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

/// <summary>
/// What a decision reads of a slot besides its state: the slot's other stored keys, read-only
/// (the processor's store; memory in tests). Each lookup costs what it returns, never the size
/// of the slot.
/// </summary>
public interface ISlotReader
{
    /// <summary>The stored record of a reservation id, null if none.</summary>
    ReservationRecord? Reservation(string reservationId);

    /// <summary>The slot's hold index entries whose expiry is at or before <paramref name="unixMs"/>,
    /// earliest first; read lazily, so taking the first entry reads one.</summary>
    IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs);

    /// <summary>The slot's expired-hold marks of the command at <paramref name="offset"/> and every
    /// later one, by offset; read lazily.</summary>
    IEnumerable<ExpiredHold> ExpiredFrom(long offset);
}

/// <summary>What one command did to one slot.</summary>
/// <param name="State">The slot state to store (with the command's position as last applied), or
/// null when nothing must be written: a re-delivered command, or one whose slot key is unusable.</param>
/// <param name="Reservations">Reservation records created or changed, to store BEFORE the slot state:
/// a crash between the two leaves records stamped after the state's last applied offset, which
/// the next decision on the slot undoes (see <see cref="SlotDecisions.Settle"/>).</param>
/// <param name="Index">Hold index entries and expired-hold marks to add (BEFORE the slot state) and
/// to remove (AFTER it).</param>
/// <param name="Reply">The answer for the sender (sent only when the command names a reply partition).</param>
/// <param name="Events">Accepted changes, in order; ids are "{partition}:{offset}:{index}".</param>
/// <param name="Snapshot">The slot's new availability when capacity or configuration changed, else null.</param>
public sealed record Decision(
    SlotState? State, IReadOnlyList<ReservationRecord> Reservations, IndexChanges Index, SlotReply Reply,
    IReadOnlyList<SlotEvent> Events, AvailabilitySnapshot? Snapshot);

/// <summary>
/// Changes to a slot's index keys. Added entries are stored with the records, before the slot
/// state; removed ones after it. A crash before the state write thus leaves every entry the stored
/// state still needs (added ones are written again when the command comes again); a crash after it
/// leaves entries of holds that are no longer held, which the next due scan skips and removes.
/// </summary>
public sealed record IndexChanges(
    IReadOnlyList<HoldIndexEntry> HoldsAdded, IReadOnlyList<HoldIndexEntry> HoldsRemoved,
    IReadOnlyList<ExpiredHold> ExpiredAdded, IReadOnlyList<ExpiredHold> ExpiredRemoved)
{
    public static readonly IndexChanges None = new([], [], [], []);
}
