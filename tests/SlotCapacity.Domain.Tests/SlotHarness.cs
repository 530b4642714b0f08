using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Domain.Tests;

/// <summary>
/// Feeds commands to <see cref="SlotDecisions.Decide"/> the way the processor does: one partition,
/// offsets counting up, the stored state carried from one command to the next, and the slot's
/// other keys (records, hold index, expired-hold marks) kept in memory and written in the
/// processor's order: records and added index entries, the state, then removed index entries.
/// </summary>
internal sealed class SlotHarness : ISlotReader
{
    public const string Slot = "hub-a@2030-05-06T10:00Z";
    public const long T0 = 1_900_000_000_000;

    public SlotState? State { get; private set; }
    /// <summary>The stored reservation records (the store's "{slot}|{id}" keys).</summary>
    public Dictionary<string, ReservationRecord> Records { get; } = [];
    /// <summary>The hold index (the store's "{slot}#hold|{expiry}|{id}" keys), by expiry then id.</summary>
    public SortedSet<(long Expiry, string Id)> Holds { get; } = new(Comparer<(long Expiry, string Id)>.Create(
        (a, b) => a.Expiry != b.Expiry ? a.Expiry.CompareTo(b.Expiry) : string.CompareOrdinal(a.Id, b.Id)));
    /// <summary>The expired-hold marks (the store's "{slot}#expired|{offset}|{id}" keys), by offset then id.</summary>
    public SortedDictionary<(long Offset, string Id), ExpiredHold> Expired { get; } = new(Comparer<(long Offset, string Id)>.Create(
        (a, b) => a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : string.CompareOrdinal(a.Id, b.Id)));
    public long NextOffset { get; set; }
    public long Now { get; set; } = T0;
    public List<(SlotCommand Command, long Timestamp, long Offset, Decision Decision)> Log { get; } = [];

    public Decision Send(SlotCommand command, long? at = null) => Send(command, at, removeIndexEntries: true);

    /// <summary>
    /// A crash after the slot state was written: the command is applied, but the index entries it
    /// removed are still stored.
    /// </summary>
    public Decision SendAndCrashBeforeIndexRemovals(SlotCommand command, long? at = null) => Send(command, at, removeIndexEntries: false);

    private Decision Send(SlotCommand command, long? at, bool removeIndexEntries)
    {
        var timestamp = at ?? Now;
        var offset = NextOffset++;
        var decision = SlotDecisions.Decide(State?.Clone(), this, command, timestamp, 0, offset);
        WriteBeforeState(decision, decision.Reservations.Count);
        if (decision.State is not null) State = decision.State;
        if (removeIndexEntries)
        {
            foreach (var hold in decision.Index.HoldsRemoved) Holds.Remove((hold.ExpiresUnixMs, hold.ReservationId));
            foreach (var mark in decision.Index.ExpiredRemoved) Expired.Remove((mark.Offset, mark.ReservationId));
        }
        Log.Add((command, timestamp, offset, decision));
        return decision;
    }

    /// <summary>
    /// A crash mid-write: the command is decided and only the first <paramref name="keep"/> of its
    /// reservation records and all its added index entries reach the store, not the slot state;
    /// the same command comes again next.
    /// </summary>
    public void CrashAfterPartialWrite(SlotCommand command, int keep) =>
        WriteBeforeState(SlotDecisions.Decide(State?.Clone(), this, command, Now, 0, NextOffset), keep);

    private void WriteBeforeState(Decision decision, int records)
    {
        foreach (var record in decision.Reservations.Take(records)) Records[record.ReservationId] = record.Clone();
        foreach (var hold in decision.Index.HoldsAdded) Holds.Add((hold.ExpiresUnixMs, hold.ReservationId));
        foreach (var mark in decision.Index.ExpiredAdded) Expired[(mark.Offset, mark.ReservationId)] = mark.Clone();
    }

    /// <summary>Delivers a command again at a position already applied (a re-delivery after a crash).</summary>
    public Decision Redeliver(SlotCommand command, long timestamp, long offset) =>
        SlotDecisions.Decide(State?.Clone(), this, command, timestamp, 0, offset);

    /// <summary>Replaces the stored state, as a processor of an earlier version left it.</summary>
    public void Restore(SlotState state) => State = state;

    /// <summary>
    /// Stores the slot as the version before the hold index did: the held reservations and the
    /// expired-hold marks inside the slot state, no index keys.
    /// </summary>
    public void ToPreviousVersion()
    {
        foreach (var (expiry, id) in Holds) State!.LegacyHeld[id] = expiry;
        State!.LegacyRecentlyExpired.AddRange(Expired.Values);
        Holds.Clear();
        Expired.Clear();
    }

    public ReservationRecord? Reservation(string reservationId) => Records.TryGetValue(reservationId, out var r) ? r : null;

    public IEnumerable<HoldIndexEntry> HoldsDueBy(long unixMs) =>
        Holds.TakeWhile(h => h.Expiry <= unixMs).Select(h => new HoldIndexEntry { ExpiresUnixMs = h.Expiry, ReservationId = h.Id });

    public IEnumerable<ExpiredHold> ExpiredFrom(long offset) => Expired.Where(e => e.Key.Offset >= offset).Select(e => e.Value.Clone());

    public long Used(string counter) => State!.FleetUsed.TryGetValue(counter, out var v) ? v : 0;
    public long SharedUsed(string counter) => State!.SharedUsed.TryGetValue(counter, out var v) ? v : 0;

    public static SlotCommand Command(Action<SlotCommand> body, long deadline = 0)
    {
        var command = new SlotCommand
        {
            CommandId = Guid.NewGuid().ToString("N"),
            Slot = Slot,
            ReplyPartition = 0,
            CorrelationId = Guid.NewGuid().ToString("N"),
            DeadlineUnixMs = deadline,
        };
        body(command);
        return command;
    }

    public static SlotCommand Configure(SlotConfig config) => Command(c => c.Configure = new ConfigureSlot { Config = config });

    public static SlotCommand Reserve(string id, string zone = "north", long items = 1, long hold = 0, string[]? requires = null,
        string? order = null, long deadline = 0) =>
        Command(c => c.Reserve = new Reserve
        {
            ReservationId = id,
            OrderId = order ?? "order-" + id,
            Zone = zone,
            Needs = new OrderNeeds { Quantities = { ["items"] = items }, Requires = { requires ?? [] } },
            HoldExpiresUnixMs = hold,
        }, deadline);

    public static SlotCommand Confirm(string id) => Command(c => c.Confirm = new Confirm { ReservationId = id });
    public static SlotCommand Release(string id) => Command(c => c.Release = new Release { ReservationId = id, Reason = "order cancelled" });
    public static SlotCommand Abandon(string id) => Command(c => c.Abandon = new Abandon { ReservationId = id });
    public static SlotCommand AbandonAttempt(string id, SlotCommand attempt) =>
        Command(c => c.Abandon = new Abandon { ReservationId = id, ReserveCommandId = attempt.CommandId });
    public static SlotCommand ExpireHolds() => Command(c => c.ExpireHolds = new ExpireHolds());
    public static SlotCommand SetOpen(bool open) => Command(c => c.SetOpen = new SetSlotOpen { Open = open });

    public static FleetCounterConfig Fleet(string name, long capacity, string[]? zones = null, string[]? carries = null) =>
        new() { Name = name, CapacityOrders = capacity, Zones = { zones ?? [] }, Carries = { carries ?? [] } };

    public static SlotConfig Config(params FleetCounterConfig[] fleet)
    {
        var config = new SlotConfig { Open = true };
        config.Fleet.AddRange(fleet);
        return config;
    }
}
