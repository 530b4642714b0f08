namespace SlotCapacity.Load.Targets;

/// <summary>
/// A system under load: this project's gateways, or a peer a user would pick instead. The same
/// scenario, arrival process and audit drive every target.
/// </summary>
public interface ITarget : IAsyncDisposable
{
    /// <summary>"system", "redis" or "postgres".</summary>
    string Name { get; }

    /// <summary>Where it listens (always loopback), for the report.</summary>
    string Endpoint { get; }

    /// <summary>How it is set up (durability, pool sizes), for the report.</summary>
    string Notes { get; }

    /// <summary>Starts it if the harness owns it, and configures the plan's slots with their capacities.</summary>
    Task PrepareAsync(SlotPlan plan, CancellationToken ct);

    /// <summary>The processes whose CPU the run accounts to this target (known after PrepareAsync).</summary>
    IReadOnlyList<WatchedProcess> Processes { get; }

    /// <summary>
    /// One attempt of a call. Attempt 0 is the first; a retry after a transport failure sends the
    /// same operation again (same reservation id) with the next attempt number, and a target with
    /// several endpoints moves it to another one, as checkout's client would fail over.
    /// </summary>
    Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct);

    Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct);

    /// <summary>Reads back what the target recorded, for the audit.</summary>
    Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct);
}

/// <summary>
/// A target that models the checkout flow: a reserve with HoldSeconds &gt; 0 holds capacity until
/// it is confirmed, released, or expires by itself. The answers are ReserveOutcomes: accepted, or
/// the reason it was refused.
/// </summary>
public interface IHoldingTarget : ITarget
{
    Task<ReserveOutcome> ConfirmAsync(ReserveOperation op, int attempt, CancellationToken ct);

    Task<ReserveOutcome> ReleaseAsync(ReserveOperation op, int attempt, CancellationToken ct);
}

/// <summary>A reservation answer. Reason is a domain reject reason (SLOT_FULL, ...) or null when accepted.</summary>
public sealed record ReserveOutcome(bool Accepted, string? Reason, string? FleetCounter)
{
    public static ReserveOutcome Accept(string fleetCounter) => new(true, null, fleetCounter);
    public static ReserveOutcome Reject(string reason) => new(false, reason, null);

    /// <summary>Rejects that are not a decision about capacity: the target could not answer in time.</summary>
    public bool IsFailure => !Accepted && Reason is "UNAVAILABLE" or "EXPIRED_DEADLINE";
}

/// <summary>An availability answer: how many slots it listed and how many could take the order.</summary>
public sealed record ReadOutcome(int Slots, int CanTake);

/// <summary>A reservation the target told the harness it accepted.</summary>
public sealed record AcceptedReservation(string ReservationId, string Slot, string? FleetCounter, string Zone, long Items, long Totes);

public enum CounterKind { Fleet, Shared, Zone }

/// <summary>
/// Usage of one counter as the target recorded it. Peak is the highest running total seen in
/// the target's own history (events replayed in order) where it has one, else equal to Used.
/// </summary>
public sealed record CounterReading(string Slot, CounterKind Kind, string Name, long Used, long Peak);

/// <summary>
/// What a target recorded: counter usage, every reservation it ever accepted, and the ones that
/// still hold capacity at the end (Live; null when the target cannot tell them apart).
/// </summary>
public sealed record Readback(
    string Source,
    IReadOnlyList<CounterReading> Counters,
    IReadOnlySet<string> RecordedReservationIds,
    IReadOnlyList<string> Problems,
    IReadOnlyDictionary<string, string>? LiveReservationSlots = null);
