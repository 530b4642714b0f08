using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Confluent.Kafka;
using Google.Protobuf;
using Grpc.Core;
using SlotCapacity.Contracts;
using SlotCapacity.History;

namespace SlotCapacity.Gateway;

/// <summary>
/// The planners' console on the admin port: the page, its assets and its JSON API under /console.
/// Every change goes through <see cref="PlanningService"/> (the Planning API's validation, metrics and
/// commands), run by <see cref="GatewayCalls"/> like a gRPC call (the in-flight limit). Reads and
/// writes are two route groups so authorization can be attached to each (viewer for reads, planner
/// for writes).
/// </summary>
public static class ConsoleEndpoints
{
    /// <summary>Protobuf JSON with every field, zeros included: the page reads a UtilisationReply as is.</summary>
    internal static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);
    private const int MaxPlanBytes = 4 * 1024 * 1024;
    private const int DetailEvents = 100;

    public static void AddConsole(this IServiceCollection services)
    {
        services.AddSingleton<ConsoleFeed>();
        services.AddSingleton<SlotEventsTail>();
        // One instance for gRPC calls and the console, so both run the same code with the same state.
        services.AddSingleton<PlanningService>();
        services.AddSingleton(provider =>
        {
            var settings = provider.GetRequiredService<GatewaySettings>();
            return new UtilisationReplay(settings.BootstrapServers, settings.Topics, provider.GetRequiredService<ILogger<UtilisationReplay>>());
        });
    }

    public static void MapConsole(this IEndpointRouteBuilder app)
    {
        var console = app.MapGroup("/console").AddEndpointFilter(ClearErrors);
        // The page and its assets hold no data: open, so a browser can load them and then send its
        // token (Authorization: Bearer, from the page's token box or the URL's #token=) with every call.
        var page = console.MapGroup("").AllowAnonymous();
        var reads = console.MapGroup("").RequireAuthorization(SlotPolicies.Viewer);
        var writes = console.MapGroup("").RequireAuthorization(SlotPolicies.Planner).RequireRateLimiting(SlotPolicies.PlanningRate);

        page.MapGet("", () => Asset("console.html"));
        page.MapGet("/assets/{name}", (string name) => Asset(name));
        reads.MapGet("/api/utilisation", async (PlanningService planning, GatewayCalls calls, string? hub, string? from, string? to) =>
        {
            var query = UtilisationQuery(hub, from, to, out _);
            return Proto(await calls.RunAsync(GatewayCalls.Utilisation, () => Task.FromResult(planning.GetUtilisation(query))));
        });
        reads.MapGet("/api/history", History);
        reads.MapGet("/api/stream", Stream);
        reads.MapGet("/api/slot", SlotDetail);
        reads.MapGet("/api/fill-curve", FillCurve);

        writes.MapPost("/api/slot/open", async (HttpRequest request, PlanningService planning, GatewayCalls calls, CancellationToken ct) =>
        {
            var change = await Body<OpenChange>(request, ct);
            var open = new SetSlotOpenRequest { Slot = SlotId(change.Slot), Open = change.Open };
            return Proto(await calls.RunAsync(GatewayCalls.SetOpen, () => planning.SetSlotOpen(open, Planner(request), ct)));
        });
        writes.MapPost("/api/slot/capacity", async (HttpRequest request, PlanningService planning, GatewayCalls calls, AvailabilityView view, CancellationToken ct) =>
        {
            var configure = Reconfigure(view, await Body<CapacityChange>(request, ct));
            return Proto(await calls.RunAsync(GatewayCalls.Configure, () => planning.ConfigureSlot(configure, Planner(request), ct)));
        });
        writes.MapPost("/api/plan/preview", async (HttpRequest request, AvailabilityView view, string? name) =>
        {
            var (_, preview) = await ReadPlan(request, view, name);
            return Results.Json(preview, WebJson, statusCode: preview.Problems.Count > 0 ? 400 : 200);
        });
        writes.MapPost("/api/plan/apply", async (HttpRequest request, AvailabilityView view, PlanningService planning, GatewayCalls calls, string? name, CancellationToken ct) =>
        {
            var (plan, preview) = await ReadPlan(request, view, name);
            // All or nothing at the file level: a plan with any bad slot is refused before one is sent.
            if (preview.Problems.Count > 0) return Results.Json(preview, WebJson, statusCode: 400);
            return Proto(await calls.RunAsync(GatewayCalls.ApplyPlan, () => planning.ApplyPlan(plan, Planner(request), ct)));
        });
    }

    /// <summary>The planner making a change (the token's subject), written into its commands and events.</summary>
    private static string Planner(HttpRequest request) => request.HttpContext.User.Identity?.Name ?? "";

    public sealed record OpenChange(string Slot, bool Open);

    /// <summary>New capacities by counter name; a zone mapped to null loses its order limit.</summary>
    public sealed record CapacityChange(string Slot, Dictionary<string, long>? Fleet, Dictionary<string, long>? Shared, Dictionary<string, long?>? Zones);

    /// <summary>A request the console refuses, with the reason shown to the planner.</summary>
    public sealed class ConsoleRequestException(string message, int status = 400) : Exception(message)
    {
        public int Status { get; } = status;
    }

    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    private static async ValueTask<object?> ClearErrors(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (ConsoleRequestException e)
        {
            return Error(e.Message, e.Status);
        }
        catch (RpcException e)
        {
            return Error(e.Status.Detail, e.StatusCode == StatusCode.InvalidArgument ? 400 : 503);
        }
        catch (BadHttpRequestException e)
        {
            return Error("bad request: " + e.Message, 400);
        }
        catch (KafkaException e)
        {
            return Error("the events topic cannot be read now: " + e.Error.Reason, 503);
        }
    }

    /// <summary>The JSON body, or a refusal that says what is wrong with it (the framework's own binding
    /// answers a bad body with an empty 400).</summary>
    private static async Task<T> Body<T>(HttpRequest request, CancellationToken ct) where T : class
    {
        if (!request.HasJsonContentType()) throw new ConsoleRequestException("send the change as JSON (Content-Type: application/json)", 415);
        try
        {
            return await request.ReadFromJsonAsync<T>(WebJson, ct) ?? throw new ConsoleRequestException("the request body is empty: send a JSON object");
        }
        catch (JsonException e)
        {
            throw new ConsoleRequestException($"the request body is not the JSON expected: {e.Message}");
        }
    }

    private static IResult Error(string message, int status) => Results.Json(new { error = message }, WebJson, statusCode: status);

    private static IResult Proto(IMessage message) => Results.Text(Json.Format(message), "application/json");

    private static IResult Asset(string name)
    {
        var type = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            _ => null,
        };
        var stream = type is null ? null : typeof(ConsoleEndpoints).Assembly.GetManifestResourceStream("console/" + name);
        return stream is null ? Error($"no console asset '{name}'", 404) : Results.Stream(stream, type);
    }

    private static SlotId SlotId(string? slot) =>
        SlotKey.TryParse(slot, out var key)
            ? new SlotId { Hub = key.Value.Hub, Start = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(key.Value.Start) }
            : throw new ConsoleRequestException($"slot '{slot}' is not a slot key (hub@yyyy-MM-ddTHH:mmZ)");

    /// <summary>from / to as yyyy-MM-dd (UTC days, to exclusive) or instants; default today and 14 days on.</summary>
    /// <summary>The longest a time-travel read may take: it reads the whole events topic.</summary>
    private static readonly TimeSpan HistoryTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Time travel: the same reply as /api/utilisation, rebuilt from `slot-events` as it was
    /// at <paramref name="at"/>. Refused when the topic no longer holds its oldest events.</summary>
    private static async Task<IResult> History(UtilisationReplay replay, string? hub, string? from, string? to, string? at, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(at)) throw new ConsoleRequestException("at: give the instant to rebuild, e.g. 2026-11-26T08:00:00Z");
        var asOf = Instant("at", at);
        if (asOf > DateTimeOffset.UtcNow) throw new ConsoleRequestException($"at: {asOf:yyyy-MM-dd'T'HH:mm:ss'Z'} is in the future; the live view shows now");
        UtilisationQuery(hub, from, to, out var range);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(HistoryTimeout);
        ReplayedSlots slots;
        try
        {
            slots = await replay.ReplayAsync(hub ?? "", asOf, progress: null, timeout.Token);
        }
        catch (IncompleteHistoryException e)
        {
            throw new ConsoleRequestException("the events topic no longer holds its oldest events, so the past cannot be rebuilt: " + e.Message, 409);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ConsoleRequestException($"reading the events topic took longer than {HistoryTimeout.TotalSeconds:0} s", 503);
        }
        var (start, end) = (range.From.ToUnixTimeMilliseconds(), range.To.ToUnixTimeMilliseconds());
        var inRange = slots.Snapshots().Where(s => s.StartUnixMs >= start && s.StartUnixMs < end).OrderBy(s => s.StartUnixMs).ThenBy(s => s.Hub, StringComparer.Ordinal).ToList();
        var reply = new UtilisationReply();
        reply.Days.AddRange(SlotCapacity.Domain.Utilisation.PerHubAndDay(inRange));
        reply.Slots.AddRange(inRange);
        return Proto(reply);
    }

    private static UtilisationRequest UtilisationQuery(string? hub, string? from, string? to, out (DateTimeOffset From, DateTimeOffset To) range)
    {
        var start = from is null ? new DateTimeOffset(DateTime.UtcNow.Date, TimeSpan.Zero) : Instant("from", from);
        var end = to is null ? start.AddDays(14) : Instant("to", to);
        range = (start, end);
        return new UtilisationRequest { Hub = hub ?? "", From = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(start), To = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(end), IncludeSlots = true };
    }

    private static DateTimeOffset Instant(string name, string text) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at)
            ? at
            : throw new ConsoleRequestException($"{name}: '{text}' is not a date (yyyy-MM-dd) or an instant");

    /// <summary>Server-sent events: "update" carries a UtilisationReply with the changed slots and their
    /// days, at most <see cref="ConsoleFeed.PushesPerSecond"/> a second; a comment keeps the stream alive.</summary>
    private static async Task Stream(HttpContext http, PlanningService planning, GatewayCalls calls, ConsoleFeed feed, IHostApplicationLifetime lifetime, string? hub, string? from, string? to)
    {
        // The same validation as the utilisation query, before the stream starts.
        var query = UtilisationQuery(hub, from, to, out var range);
        await calls.RunAsync(GatewayCalls.Utilisation, () => Task.FromResult(planning.GetUtilisation(query)));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, lifetime.ApplicationStopping);
        http.Response.Headers.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        using var listener = feed.Listen(hub ?? "", range.From, range.To);
        var response = http.Response;
        try
        {
            await response.WriteAsync(": listening\n\n", stop.Token);
            await response.Body.FlushAsync(stop.Token);
            while (!stop.IsCancellationRequested)
            {
                var update = await listener.NextAsync(KeepAlive, stop.Token);
                await response.WriteAsync(update is null ? ": keep-alive\n\n" : $"event: update\ndata: {Json.Format(update)}\n\n", stop.Token);
                await response.Body.FlushAsync(stop.Token);
                if (update is not null) await Task.Delay(1000 / ConsoleFeed.PushesPerSecond, stop.Token);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The page closed or the gateway is stopping: the stream simply ends.
        }
    }

    private static IResult SlotDetail(AvailabilityView view, SlotEventsTail events, string? key)
    {
        var slot = SlotKeyOf(key);
        var snapshot = view.Get(slot) ?? throw new ConsoleRequestException($"slot {slot} is not known to this gateway's view (not configured, or its snapshot is not read yet)", 404);
        var tail = events.Read([slot]);
        var detail = new JsonObject
        {
            ["slot"] = JsonNode.Parse(Json.Format(snapshot)),
            ["events"] = new JsonArray(tail.Events.TakeLast(DetailEvents).Reverse().Select(e => JsonNode.Parse(Json.Format(e))).ToArray()),
            ["eventsFound"] = tail.Events.Count,
            ["recordsScanned"] = tail.Scanned,
            ["malformed"] = tail.Malformed,
            ["incomplete"] = tail.Incomplete,
        };
        return Results.Text(detail.ToJsonString(), "application/json");
    }

    /// <summary>Orders taken by lead time (hours before the slot starts) for every slot of a hub's day,
    /// from the slots' events; each curve ends at the slot's current count.</summary>
    private static IResult FillCurve(AvailabilityView view, SlotEventsTail events, string? hub, string? date)
    {
        if (string.IsNullOrEmpty(hub)) throw new ConsoleRequestException("hub: is missing");
        if (!DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
            throw new ConsoleRequestException($"date: '{date}' is not yyyy-MM-dd");
        var start = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var slots = view.Slots(hub, start, start.AddDays(1));
        var tail = slots.Count == 0 ? null : events.Read(slots.Select(s => s.Slot).ToList());
        var curves = new JsonArray();
        foreach (var slot in slots)
        {
            var moves = tail!.Events.Where(e => e.Slot == slot.Slot && e.FleetUnits != 0).ToList();
            var used = slot.Fleet.Sum(f => f.UsedOrders);
            // Orders taken before the window read began (older records not read) start the curve.
            var level = Math.Max(0, used - moves.Sum(e => e.FleetUnits));
            var points = new JsonArray();
            foreach (var move in moves)
            {
                level += move.FleetUnits;
                points.Add(new JsonObject { ["leadHours"] = (slot.StartUnixMs - move.OccurredUnixMs) / 3_600_000.0, ["used"] = level });
            }
            curves.Add(new JsonObject
            {
                ["slot"] = slot.Slot,
                ["startUnixMs"] = slot.StartUnixMs,
                ["capacity"] = slot.Fleet.Sum(f => f.CapacityOrders),
                ["used"] = used,
                ["points"] = points,
            });
        }
        return Results.Text(new JsonObject { ["hub"] = hub, ["date"] = date, ["slots"] = curves, ["incomplete"] = tail?.Incomplete }.ToJsonString(), "application/json");
    }

    private static string SlotKeyOf(string? key) =>
        SlotKey.TryParse(key, out var slot) ? slot.Value.ToString() : throw new ConsoleRequestException($"key: '{key}' is not a slot key (hub@yyyy-MM-ddTHH:mmZ)");

    /// <summary>The slot's whole configuration as the view shows it, with the new capacities: a
    /// ConfigureSlot replaces the whole configuration.</summary>
    private static ConfigureSlotRequest Reconfigure(AvailabilityView view, CapacityChange change)
    {
        var slotId = SlotId(change.Slot);
        var now = view.Get(SlotKeyOf(change.Slot)) ?? throw new ConsoleRequestException($"slot {change.Slot} is not known to this gateway's view", 404);
        var config = new SlotConfig { Open = now.Open, CutoffUnixMs = now.CutoffUnixMs };
        foreach (var fleet in now.Fleet)
            config.Fleet.Add(new FleetCounterConfig { Name = fleet.Name, CapacityOrders = fleet.CapacityOrders, Zones = { fleet.Zones }, Carries = { fleet.Carries } });
        foreach (var shared in now.Shared)
            config.Shared.Add(new SharedCounterConfig { Name = shared.Name, Measure = shared.Measure, Capacity = shared.Capacity });
        foreach (var zone in now.Zones.Where(z => z.Closed || z.HasMaxOrders))
        {
            var rule = new ZoneRule { Zone = zone.Zone, Closed = zone.Closed };
            if (zone.HasMaxOrders) rule.MaxOrders = zone.MaxOrders;
            config.ZoneRules.Add(rule);
        }
        foreach (var (name, capacity) in change.Fleet ?? [])
            (config.Fleet.FirstOrDefault(f => f.Name == name) ?? throw new ConsoleRequestException($"fleet counter '{name}' is not in slot {change.Slot}")).CapacityOrders = capacity;
        foreach (var (name, capacity) in change.Shared ?? [])
            (config.Shared.FirstOrDefault(s => s.Name == name) ?? throw new ConsoleRequestException($"shared counter '{name}' is not in slot {change.Slot}")).Capacity = capacity;
        foreach (var (zone, max) in change.Zones ?? [])
        {
            var rule = config.ZoneRules.FirstOrDefault(r => r.Zone == zone);
            if (rule is null)
            {
                rule = new ZoneRule { Zone = zone };
                config.ZoneRules.Add(rule);
            }
            if (max is { } limit) rule.MaxOrders = limit;
            else rule.ClearMaxOrders();
        }
        return new ConfigureSlotRequest { Slot = slotId, Config = config };
    }

    private static async Task<(ApplyPlanRequest Plan, PlanDiff.Preview Preview)> ReadPlan(HttpRequest request, AvailabilityView view, string? name)
    {
        name = string.IsNullOrWhiteSpace(name) ? "plan.csv" : Path.GetFileName(name);
        if (request.ContentLength > MaxPlanBytes) throw new ConsoleRequestException($"{name}: larger than {MaxPlanBytes / 1024 / 1024} MiB", 413);
        using var reader = new StreamReader(request.Body);
        var text = await reader.ReadToEndAsync();
        if (text.Length > MaxPlanBytes) throw new ConsoleRequestException($"{name}: larger than {MaxPlanBytes / 1024 / 1024} MiB", 413);
        ApplyPlanRequest plan;
        List<string> sources;
        try
        {
            var json = name.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || text.TrimStart().StartsWith('{');
            plan = json ? PlanFile.ParseJson(name, text, out sources) : PlanFile.ParseCsv(name, text, out sources);
        }
        catch (PlanFile.PlanFileException e)
        {
            return (new ApplyPlanRequest(), new PlanDiff.Preview([], 0, 0, 0, 0, e.Message.Split('\n')));
        }
        return (plan, PlanDiff.Compute(plan, sources, view.Get, DateTimeOffset.UtcNow));
    }
}
