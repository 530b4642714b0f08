using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway;

/// <summary>
/// Checks requests before anything is written: every problem is reported at once, each naming its
/// field ("slot.start: ..."), as gRPC INVALID_ARGUMENT. The slot rules (names, sizes, configs,
/// orders) are the domain's <see cref="SlotValidation"/>, which the engine applies again.
/// </summary>
public static class RequestValidation
{
    public const int MaxHoldSeconds = 24 * 3600;
    /// <summary>Slots in one ApplyPlan call.</summary>
    public const int MaxPlanSlots = 10_000;
    public static readonly TimeSpan MaxQueryRange = TimeSpan.FromDays(62);

    /// <summary>Collected field problems of one request.</summary>
    public sealed class Problems
    {
        public List<FieldProblem> All { get; } = [];
        public bool Any => All.Count > 0;
        public void Add(string field, string problem) => All.Add(new FieldProblem(field, problem));
        public override string ToString() => FieldProblem.Join(All);

        public void ThrowIfAny()
        {
            if (Any) throw new RpcException(new Status(StatusCode.InvalidArgument, ToString()));
        }
    }

    public static Problems Reserve(ReserveRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        SlotValidation.Id(problems.All, "reservation_id", request.ReservationId);
        SlotValidation.Id(problems.All, "order_id", request.OrderId);
        slot = Slot(problems, "slot", request.Slot);
        SlotValidation.Order(problems.All, "zone", request.Zone, "needs", request.Needs);
        if (request.HoldSeconds < 0 || request.HoldSeconds > MaxHoldSeconds)
            problems.Add("hold_seconds", $"{request.HoldSeconds} is outside 0..{MaxHoldSeconds}");
        return problems;
    }

    public static Problems Confirm(ConfirmRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        SlotValidation.Id(problems.All, "reservation_id", request.ReservationId);
        slot = Slot(problems, "slot", request.Slot);
        return problems;
    }

    public static Problems Release(ReleaseRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        SlotValidation.Id(problems.All, "reservation_id", request.ReservationId);
        slot = Slot(problems, "slot", request.Slot);
        if (request.Reason.Length > 256) problems.Add("reason", "is longer than 256 characters");
        return problems;
    }

    public static Problems Availability(AvailabilityRequest request, out DateTimeOffset from, out DateTimeOffset to)
    {
        var problems = new Problems();
        SlotValidation.Name(problems.All, "hub", request.Hub);
        Range(problems, request.From, request.To, out from, out to);
        // Empty zone = any zone.
        if (request.Zone.Length > 0) SlotValidation.Name(problems.All, "zone", request.Zone);
        SlotValidation.Needs(problems.All, "needs", request.Needs);
        return problems;
    }

    public static Problems Utilisation(UtilisationRequest request, out DateTimeOffset from, out DateTimeOffset to)
    {
        var problems = new Problems();
        // Empty hub = every hub.
        if (request.Hub.Length > 0) SlotValidation.Name(problems.All, "hub", request.Hub);
        Range(problems, request.From, request.To, out from, out to);
        return problems;
    }

    public static Problems SetOpen(SetSlotOpenRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        slot = Slot(problems, "slot", request.Slot);
        return problems;
    }

    /// <summary>A slot's configuration at <paramref name="now"/> (the engine checks it again at the command's time).</summary>
    public static Problems Configure(ConfigureSlotRequest request, DateTimeOffset now, out SlotKey slot)
    {
        var problems = new Problems();
        slot = Slot(problems, "slot", request.Slot);
        problems.All.AddRange(SlotValidation.Config(problems.Any ? null : slot, request.Config, now.ToUnixTimeMilliseconds()));
        return problems;
    }

    private static SlotKey Slot(Problems problems, string field, SlotId? slot)
    {
        if (slot is null)
        {
            problems.Add(field, "is missing");
            return default;
        }
        var hubOk = SlotValidation.NameProblem(slot.Hub) is null;
        SlotValidation.Name(problems.All, field + ".hub", slot.Hub);
        DateTimeOffset? start = null;
        if (slot.Start is null) problems.Add(field + ".start", "is missing");
        else if ((start = Instant(slot.Start)) is null) problems.Add(field + ".start", "is not a valid timestamp");
        if (!hubOk || start is not { } at) return default;
        // A valid name has no '@' and is short enough: what SlotKey can still refuse is the start.
        if (SlotKey.Problem(slot.Hub, at) is { } problem)
        {
            problems.Add(field + ".start", problem);
            return default;
        }
        return SlotKey.Create(slot.Hub, at);
    }

    private static void Range(Problems problems, Timestamp? fromTs, Timestamp? toTs, out DateTimeOffset from, out DateTimeOffset to)
    {
        from = to = default;
        if (fromTs is null) problems.Add("from", "is missing");
        if (toTs is null) problems.Add("to", "is missing");
        if (fromTs is null || toTs is null) return;
        var fromOk = Instant(fromTs) is { } f;
        var toOk = Instant(toTs) is { } t;
        if (!fromOk) problems.Add("from", "is not a valid timestamp");
        if (!toOk) problems.Add("to", "is not a valid timestamp");
        if (!fromOk || !toOk) return;
        from = Instant(fromTs)!.Value;
        to = Instant(toTs)!.Value;
        if (to <= from) problems.Add("to", $"{to:O} is not after from {from:O}");
        else if (to - from > MaxQueryRange) problems.Add("to", $"range is longer than {MaxQueryRange.TotalDays:0} days");
    }

    /// <summary>Null for a timestamp outside what protobuf allows (ToDateTimeOffset would throw).</summary>
    private static DateTimeOffset? Instant(Timestamp ts) =>
        ts.Seconds is >= -62_135_596_800L and <= 253_402_300_799L && ts.Nanos is >= 0 and < 1_000_000_000
            ? ts.ToDateTimeOffset()
            : null;
}
