using SlotCapacity.Contracts;

namespace SlotCapacity.Domain;

// Re-delivery: a command at or below the slot's last applied offset is answered from the stamps
// in the state and records, never applied twice (see SlotDecisions.cs for the order of a decision).
public static partial class SlotDecisions
{
    private static bool IsRedelivery(SlotState state, AppliedAt at) =>
        state.LastApplied is { } last && last.Partition == at.Partition && at.Offset <= last.Offset;

    /// <summary>
    /// A re-delivered command was applied before: its effects are in the state, each stamped with
    /// the position that caused it. The reply and events are rebuilt from those stamps. A command
    /// that left no stamp had no effect; its answer is worked out again on a copy of the state,
    /// and if that copy would now take an effect, the original must have been a reject whose
    /// cause has since gone (say, capacity freed), so it is answered as a retryable reject. With
    /// its events goes the slot's current availability snapshot.
    /// </summary>
    private static Decision AnswerRedelivery(SlotKey key, SlotState state, ISlotReader stored, SlotCommand command, AppliedAt at)
    {
        var book = new Book(stored, state.LastApplied);
        var reply = StampedReply(state, book, command, at);
        if (reply is null)
        {
            var copy = state.Clone();
            var trial = new Book(stored, state.LastApplied);
            reply = new Slot(key, copy, trial, new SlotIndex(stored), at).ApplyWithoutExpiry(command);
            if (!copy.Equals(state) || trial.Changed.Count > 0)
                reply = Reject(command, at, RejectReason.Unavailable,
                    "re-delivered command that was rejected before; its original reason no longer applies, try again");
        }
        reply.Replayed = true;
        // The marks of the holds it expired: in index keys, or still in a state written before them.
        var expired = stored.ExpiredFrom(at.Offset).TakeWhile(m => m.Offset == at.Offset)
            .Concat(state.LegacyRecentlyExpired.Where(m => m.Offset == at.Offset))
            .Select(m => m.ReservationId);
        var events = EventsAt(state, book, at, expired, ReservationIdOf(command));
        // The first application's snapshot may have been lost with the crash that caused this
        // re-delivery while its state and events were written (three records, no transaction): the
        // view would then show the slot one change behind until its next change. The current
        // snapshot is written again, at the state's own position, so a view never goes backwards.
        var snapshot = events.Count > 0 && state.Configured && state.LastApplied is { } last ? Snapshot(state, key, last) : null;
        return new Decision(null, [], IndexChanges.None, reply, events, snapshot);
    }

    private static SlotReply? StampedReply(SlotState state, Book book, SlotCommand command, AppliedAt at)
    {
        var id = ReservationIdOf(command);
        var r = id.Length == 0 ? null : book.Get(id);
        switch (command.BodyCase)
        {
            case SlotCommand.BodyOneofCase.Reserve when r is not null && Here(r.ReservedAt, at):
                return Accept(command, at, r, r.HoldExpiresUnixMs > 0 ? ReservationStatus.Held : ReservationStatus.Booked);
            case SlotCommand.BodyOneofCase.Confirm when r is not null && Here(r.ConfirmedAt, at):
                return Accept(command, at, r, ReservationStatus.Booked);
            case SlotCommand.BodyOneofCase.Release when r is not null && Here(r.EndedAt, at):
                return Accept(command, at, r, ReservationStatus.Released);
            case SlotCommand.BodyOneofCase.Abandon when r is not null && Here(r.EndedAt, at):
                return Accept(command, at, r.Reserved ? r : null, ReservationStatus.Abandoned);
            case SlotCommand.BodyOneofCase.Configure or SlotCommand.BodyOneofCase.SetOpen when Here(state.ConfiguredAt, at):
                return Accept(command, at, null, ReservationStatus.Unspecified);
            default:
                return null;
        }
    }

    private static bool Here(AppliedAt? a, AppliedAt at) => a is not null && a.Partition == at.Partition && a.Offset == at.Offset;
}
