using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// Checks requests before anything is written: every problem is reported at once, each naming its
/// field ("slot.start: ..."), as gRPC INVALID_ARGUMENT.
/// </summary>
public static class RequestValidation
{
    public const int MaxIdLength = 128;
    public const int MaxNameLength = 64;
    public const int MaxHoldSeconds = 24 * 3600;
    public static readonly TimeSpan MaxQueryRange = TimeSpan.FromDays(62);

    /// <summary>Collected field problems of one request.</summary>
    public sealed class Problems
    {
        private readonly List<string> list = [];
        public IReadOnlyList<string> All => list;
        public bool Any => list.Count > 0;
        public void Add(string field, string problem) => list.Add($"{field}: {problem}");
        public override string ToString() => string.Join("; ", list);

        public void ThrowIfAny()
        {
            if (Any) throw new RpcException(new Status(StatusCode.InvalidArgument, ToString()));
        }
    }

    public static Problems Reserve(ReserveRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        Id(problems, "reservation_id", request.ReservationId);
        Id(problems, "order_id", request.OrderId);
        slot = Slot(problems, "slot", request.Slot);
        Name(problems, "zone", request.Zone, required: true);
        Needs(problems, "needs", request.Needs);
        if (request.HoldSeconds < 0 || request.HoldSeconds > MaxHoldSeconds)
            problems.Add("hold_seconds", $"{request.HoldSeconds} is outside 0..{MaxHoldSeconds}");
        return problems;
    }

    public static Problems Confirm(ConfirmRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        Id(problems, "reservation_id", request.ReservationId);
        slot = Slot(problems, "slot", request.Slot);
        return problems;
    }

    public static Problems Release(ReleaseRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        Id(problems, "reservation_id", request.ReservationId);
        slot = Slot(problems, "slot", request.Slot);
        if (request.Reason.Length > 256) problems.Add("reason", "is longer than 256 characters");
        return problems;
    }

    public static Problems Availability(AvailabilityRequest request, out DateTimeOffset from, out DateTimeOffset to)
    {
        var problems = new Problems();
        Name(problems, "hub", request.Hub, required: true);
        Range(problems, request.From, request.To, out from, out to);
        Name(problems, "zone", request.Zone, required: false);
        Needs(problems, "needs", request.Needs);
        return problems;
    }

    public static Problems Utilisation(UtilisationRequest request, out DateTimeOffset from, out DateTimeOffset to)
    {
        var problems = new Problems();
        Name(problems, "hub", request.Hub, required: false);
        Range(problems, request.From, request.To, out from, out to);
        return problems;
    }

    public static Problems SetOpen(SetSlotOpenRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        slot = Slot(problems, "slot", request.Slot);
        return problems;
    }

    public static Problems Configure(ConfigureSlotRequest request, out SlotKey slot)
    {
        var problems = new Problems();
        slot = Slot(problems, "slot", request.Slot);
        var config = request.Config;
        if (config is null)
        {
            problems.Add("config", "is missing");
            return problems;
        }
        if (config.Fleet.Count == 0) problems.Add("config.fleet", "has no fleet counter");
        UniqueNames(problems, "config.fleet", config.Fleet.Select(f => f.Name));
        for (var i = 0; i < config.Fleet.Count; i++)
        {
            var fleet = config.Fleet[i];
            var field = $"config.fleet[{i}]";
            Name(problems, field + ".name", fleet.Name, required: true);
            if (fleet.CapacityOrders < 0) problems.Add(field + ".capacity_orders", $"{fleet.CapacityOrders} is negative");
            for (var z = 0; z < fleet.Zones.Count; z++) Name(problems, $"{field}.zones[{z}]", fleet.Zones[z], required: true);
            for (var c = 0; c < fleet.Carries.Count; c++) Name(problems, $"{field}.carries[{c}]", fleet.Carries[c], required: true);
        }
        UniqueNames(problems, "config.shared", config.Shared.Select(s => s.Name));
        for (var i = 0; i < config.Shared.Count; i++)
        {
            var shared = config.Shared[i];
            var field = $"config.shared[{i}]";
            Name(problems, field + ".name", shared.Name, required: true);
            Name(problems, field + ".measure", shared.Measure, required: true);
            if (shared.Capacity < 0) problems.Add(field + ".capacity", $"{shared.Capacity} is negative");
        }
        UniqueNames(problems, "config.zone_rules", config.ZoneRules.Select(z => z.Zone));
        for (var i = 0; i < config.ZoneRules.Count; i++)
        {
            var rule = config.ZoneRules[i];
            var field = $"config.zone_rules[{i}]";
            Name(problems, field + ".zone", rule.Zone, required: true);
            if (rule.HasMaxOrders && rule.MaxOrders < 0) problems.Add(field + ".max_orders", $"{rule.MaxOrders} is negative");
        }
        if (config.CutoffUnixMs < 0) problems.Add("config.cutoff_unix_ms", $"{config.CutoffUnixMs} is negative");
        return problems;
    }

    private static void Id(Problems problems, string field, string value)
    {
        if (string.IsNullOrWhiteSpace(value)) problems.Add(field, "is empty");
        else if (value.Length > MaxIdLength) problems.Add(field, $"is longer than {MaxIdLength} characters");
        else if (value.Any(char.IsWhiteSpace) || value.Any(char.IsControl)) problems.Add(field, "contains whitespace or control characters");
    }

    private static void Name(Problems problems, string field, string value, bool required)
    {
        if (value.Length == 0)
        {
            if (required) problems.Add(field, "is empty");
            return;
        }
        if (string.IsNullOrWhiteSpace(value)) problems.Add(field, "is blank");
        else if (value.Length > MaxNameLength) problems.Add(field, $"is longer than {MaxNameLength} characters");
        else if (value.Any(char.IsControl)) problems.Add(field, "contains control characters");
    }

    private static SlotKey Slot(Problems problems, string field, SlotId? slot)
    {
        if (slot is null)
        {
            problems.Add(field, "is missing");
            return default;
        }
        if (slot.Start is null)
        {
            problems.Add(field + ".start", "is missing");
            Name(problems, field + ".hub", slot.Hub, required: true);
            return default;
        }
        if (Instant(slot.Start) is not { } start)
        {
            problems.Add(field + ".start", "is not a valid timestamp");
            return default;
        }
        var problem = SlotKey.Problem(slot.Hub, start);
        if (problem is not null)
        {
            problems.Add(problem.StartsWith("hub", StringComparison.Ordinal) ? field + ".hub" : field + ".start", problem);
            return default;
        }
        return SlotKey.Create(slot.Hub, start);
    }

    private static void Needs(Problems problems, string field, OrderNeeds? needs)
    {
        if (needs is null) return;
        foreach (var (measure, quantity) in needs.Quantities)
        {
            if (string.IsNullOrWhiteSpace(measure)) problems.Add(field + ".quantities", "has an empty measure name");
            else if (quantity < 0) problems.Add($"{field}.quantities[{measure}]", $"{quantity} is negative");
        }
        for (var i = 0; i < needs.Requires.Count; i++) Name(problems, $"{field}.requires[{i}]", needs.Requires[i], required: true);
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

    private static void UniqueNames(Problems problems, string field, IEnumerable<string> names)
    {
        foreach (var duplicate in names.Where(n => n.Length > 0).GroupBy(n => n, StringComparer.Ordinal).Where(g => g.Count() > 1))
            problems.Add(field, $"name '{duplicate.Key}' appears more than once");
    }

    /// <summary>Null for a timestamp outside what protobuf allows (ToDateTimeOffset would throw).</summary>
    private static DateTimeOffset? Instant(Timestamp ts) =>
        ts.Seconds is >= -62_135_596_800L and <= 253_402_300_799L && ts.Nanos is >= 0 and < 1_000_000_000
            ? ts.ToDateTimeOffset()
            : null;
}
