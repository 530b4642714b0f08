using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Console;
using SlotCapacity.Contracts;
using SlotCapacity.History;
using SlotCapacity.Kafka;

namespace SlotCapacity.Gateway;

/// <summary>
/// The CLI in the gateway executable: planners' commands and checkout calls for trying things out
/// (see <see cref="Usage"/>). Every command talks to a running gateway over gRPC.
/// </summary>
public static class GatewayCli
{
    public const string Usage = """
        usage:
          SlotCapacity.Gateway plan apply PLAN.csv|PLAN.json|- [--gateway http://127.0.0.1:5101] [--retries 3]   (- = CSV on stdin)
          SlotCapacity.Gateway plan utilisation [--hub HUB] [--from yyyy-MM-dd] [--days N] [--gateway URL]
          SlotCapacity.Gateway replay [--hub HUB] [--at yyyy-MM-ddTHH:mm:ssZ] [--from yyyy-MM-dd] [--days N] [--bootstrap HOST:PORT] [--topic-prefix P]
                                      (utilisation as it was at --at, rebuilt from slot-events; progress on stderr)
          SlotCapacity.Gateway plan sample [--from yyyy-MM-dd] [--days N] > plan.csv
          SlotCapacity.Gateway reserve --hub HUB --start yyyy-MM-ddTHH:mmZ --zone ZONE [--items N] [--requires a,b]
                                       [--hold SECONDS] [--reservation ID] [--order ID] [--gateway URL]
          SlotCapacity.Gateway confirm|release --hub HUB --start yyyy-MM-ddTHH:mmZ --reservation ID [--gateway URL]
          SlotCapacity.Gateway availability --hub HUB [--from yyyy-MM-dd] [--days N] [--zone ZONE] [--items N] [--requires a,b] [--gateway URL]
          SlotCapacity.Gateway token --role checkout|planner|viewer[,...] --subject NAME [--ttl 8h] [--key-file FILE]
        Calls to a gateway present --token TOKEN, else $SLOT_TOKEN: checkout calls need role checkout,
        plan apply needs planner, plan utilisation viewer or planner. `token` signs with --key-file, else
        $GATEWAY_JWT_SIGNING_KEY_FILE (issuer/audience: $GATEWAY_JWT_ISSUER/$GATEWAY_JWT_AUDIENCE, default slot-capacity).
        """;

    /// <summary>Whether the arguments are a CLI command rather than the service's own.</summary>
    public static bool IsCommand(string[] args) =>
        args.Length > 0 && args[0] is "plan" or "replay" or "reserve" or "confirm" or "release" or "availability" or "token";

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null)
    {
        var stdout = output ?? Console.Out;
        try
        {
            var (positional, options) = Parse(args);
            var gateway = options.GetValueOrDefault("gateway", "http://127.0.0.1:5101");
            var token = options.GetValueOrDefault("token") is { Length: > 0 } given ? given : Environment.GetEnvironmentVariable(SlotChannel.TokenVariable);
            return positional switch
            {
                ["token"] => IssueToken(options, stdout),
                ["plan", "apply", var file] => await ApplyAsync(file, SlotChannel.ForAddress(gateway, token), Retries(options), stdout),
                ["plan", "utilisation"] => await UtilisationAsync(options, SlotChannel.ForAddress(gateway, token), stdout),
                ["plan", "sample"] => Sample(options, stdout),
                ["replay"] => await ReplayAsync(options, stdout),
                ["reserve"] => await ReserveAsync(options, SlotChannel.ForAddress(gateway, token), stdout),
                ["confirm" or "release"] => await EndAsync(positional[0], options, SlotChannel.ForAddress(gateway, token), stdout),
                ["availability"] => await AvailabilityAsync(options, SlotChannel.ForAddress(gateway, token), stdout),
                _ => Fail(Usage),
            };
        }
        catch (PlanFile.PlanFileException e)
        {
            return Fail(e.Message);
        }
        catch (FileNotFoundException e)
        {
            return Fail($"plan file not found: {e.FileName}");
        }
        catch (Exception e) when (e is StartupException or IncompleteHistoryException or TimeoutException)
        {
            return Fail(e.Message);
        }
        catch (RpcException e)
        {
            return Fail($"gateway answered {e.StatusCode}: {e.Status.Detail}" + e.StatusCode switch
            {
                StatusCode.Unauthenticated => $" (pass --token TOKEN or set {SlotChannel.TokenVariable}; `make run` prints tokens)",
                StatusCode.PermissionDenied => " (use a token with that role)",
                _ => "",
            });
        }
        catch (StartupException e)
        {
            return Fail(e.Message);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            return Fail(e.Message + Environment.NewLine + Usage);
        }
    }

    private static int Retries(Dictionary<string, string> options) => (int)Number(options, "retries", 3, 100);

    private static async Task<int> ApplyAsync(string file, GrpcChannel channel, int retries, TextWriter stdout)
    {
        using var _ = channel;
        var plan = file == "-" ? PlanFile.ParseCsv("stdin", await Console.In.ReadToEndAsync()) : PlanFile.Read(file);
        var client = new Planning.PlanningClient(channel);
        var watch = Stopwatch.StartNew();
        var reply = await client.ApplyPlanAsync(plan, deadline: DateTime.UtcNow.AddMinutes(5));
        // Slots answered UNAVAILABLE (no reply in time, e.g. while the engine rebalances) are sent
        // again: a ConfigureSlot replaces the whole configuration, so re-sending is safe.
        for (var round = 1; round <= retries && reply.Results.Any(r => r.Reason == RejectReason.Unavailable); round++)
        {
            var again = reply.Results.Select((r, i) => (r, i)).Where(x => x.r.Reason == RejectReason.Unavailable).Select(x => x.i).ToList();
            stdout.WriteLine($"{again.Count} slots got no reply in time; sending them again ({round}/{retries})");
            await Task.Delay(TimeSpan.FromSeconds(2));
            var retry = await client.ApplyPlanAsync(new ApplyPlanRequest { Slots = { again.Select(i => plan.Slots[i]) } }, deadline: DateTime.UtcNow.AddMinutes(5));
            for (var k = 0; k < again.Count; k++) reply.Results[again[k]] = retry.Results[k];
            reply.Applied = reply.Results.Count(r => r.Applied);
            reply.Failed = reply.Results.Count - reply.Applied;
        }
        stdout.WriteLine($"Applied {reply.Applied} of {reply.Results.Count} slots from {file} in {watch.Elapsed.TotalSeconds:0.0} s ({reply.Failed} failed)");
        if (reply.Failed > 0)
        {
            stdout.WriteLine($"{"slot",-24} {"reason",-28} detail");
            foreach (var result in reply.Results.Where(r => !r.Applied))
                stdout.WriteLine($"{SlotText(result.Slot),-24} {result.Reason,-28} {result.Detail}");
        }
        return reply.Failed == 0 ? 0 : 1;
    }

    private static async Task<int> UtilisationAsync(Dictionary<string, string> options, GrpcChannel channel, TextWriter stdout)
    {
        using var _ = channel;
        var (from, to) = DayRange(options, DateOnly.FromDateTime(DateTime.UtcNow), defaultDays: 14);
        var client = new Planning.PlanningClient(channel);
        var reply = await client.GetUtilisationAsync(new UtilisationRequest
        {
            Hub = options.GetValueOrDefault("hub", ""),
            From = from,
            To = to,
        }, deadline: DateTime.UtcNow.AddSeconds(30));
        WriteDays(reply.Days, stdout);
        stdout.WriteLine($"({reply.Days.Count} hub-days; view lag {reply.ViewLagMs} ms)");
        return 0;
    }

    /// <summary>The utilisation table as it was at --at (default: now), rebuilt from the events topic
    /// of the cluster at --bootstrap (default KAFKA_BOOTSTRAP_SERVERS) under --topic-prefix (default TOPIC_PREFIX).</summary>
    private static async Task<int> ReplayAsync(Dictionary<string, string> options, TextWriter stdout)
    {
        var asOf = At(options);
        var (from, to) = DayRange(options, DateOnly.FromDateTime(asOf.UtcDateTime), defaultDays: 14);
        var bootstrap = KafkaEndpoint.BootstrapServers(options.GetValueOrDefault("bootstrap") ?? Environment.GetEnvironmentVariable(KafkaEndpoint.BootstrapVariable));
        using var loggers = LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true);
            // stdout carries only the table.
            b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
        var replay = new UtilisationReplay(bootstrap,
            options.TryGetValue("topic-prefix", out var prefix) ? new TopicNames(prefix) : TopicNames.FromEnvironment(), loggers.CreateLogger("replay"));
        var slots = await replay.ReplayAsync(options.GetValueOrDefault("hub", ""), asOf, new StderrProgress(), CancellationToken.None);
        string fromDate = from.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), toDate = to.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        var days = slots.Utilisation().Days
            .Where(d => string.CompareOrdinal(d.Date, fromDate) >= 0 && string.CompareOrdinal(d.Date, toDate) < 0).ToList();
        WriteDays(days, stdout);
        stdout.WriteLine($"({days.Count} hub-days as of {asOf:yyyy-MM-dd'T'HH:mm:ss'Z'}, rebuilt from {slots.Applied} events; "
                         + $"{slots.Later} later ones left out, {slots.Skipped} skipped, {slots.Inconsistent} inconsistent)");
        return 0;
    }

    private static void WriteDays(IEnumerable<DayUtilisation> days, TextWriter stdout)
    {
        stdout.WriteLine($"{"hub",-8} {"date",-10} {"slots",5} {"capacity",8} {"used",6} {"held",6} {"util",6} {"over",4} {"closed",6}");
        foreach (var d in days)
            stdout.WriteLine($"{d.Hub,-8} {d.Date,-10} {d.Slots,5} {d.CapacityOrders,8} {d.UsedOrders,6} {d.HeldOrders,6} {d.Utilisation,6:P0} {d.OverCommittedSlots,4} {d.ClosedSlots,6}");
    }

    private static DateTimeOffset At(Dictionary<string, string> options)
    {
        if (!options.TryGetValue("at", out var text)) return DateTimeOffset.UtcNow;
        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at)
            ? at
            : throw new ArgumentException($"--at '{text}' is not an ISO 8601 time, e.g. 2026-11-26T08:00:00Z");
    }

    /// <summary>Replay progress on stderr, written as it is reported (stdout keeps only the table).</summary>
    private sealed class StderrProgress : IProgress<ReplayProgress>
    {
        public void Report(ReplayProgress value) => Console.Error.WriteLine($"replay: {value}");
    }

    private static async Task<int> ReserveAsync(Dictionary<string, string> options, GrpcChannel channel, TextWriter stdout)
    {
        using var _ = channel;
        var request = new ReserveRequest
        {
            ReservationId = options.GetValueOrDefault("reservation", "cli-" + Guid.NewGuid().ToString("N")[..12]),
            Slot = SlotOption(options),
            Zone = Required(options, "zone"),
            Needs = Needs(options),
            HoldSeconds = (int)Number(options, "hold", 0, int.MaxValue),
        };
        request.OrderId = options.GetValueOrDefault("order", "order-" + request.ReservationId);
        var watch = Stopwatch.StartNew();
        var reply = await new Checkout.CheckoutClient(channel).ReserveAsync(request);
        stdout.WriteLine($"{reply} ({watch.Elapsed.TotalMilliseconds:0.0} ms)");
        return reply.Accepted ? 0 : 1;
    }

    private static async Task<int> EndAsync(string what, Dictionary<string, string> options, GrpcChannel channel, TextWriter stdout)
    {
        using var _ = channel;
        var slot = SlotOption(options);
        var id = Required(options, "reservation");
        var client = new Checkout.CheckoutClient(channel);
        var reply = what == "confirm"
            ? await client.ConfirmAsync(new ConfirmRequest { ReservationId = id, Slot = slot })
            : await client.ReleaseAsync(new ReleaseRequest { ReservationId = id, Slot = slot, Reason = "cli" });
        stdout.WriteLine(reply);
        return reply.Accepted ? 0 : 1;
    }

    private static async Task<int> AvailabilityAsync(Dictionary<string, string> options, GrpcChannel channel, TextWriter stdout)
    {
        using var _ = channel;
        var (from, to) = DayRange(options, DateOnly.FromDateTime(DateTime.UtcNow), defaultDays: 1);
        var reply = await new Checkout.CheckoutClient(channel).QueryAvailabilityAsync(new AvailabilityRequest
        {
            Hub = Required(options, "hub"),
            From = from,
            To = to,
            Zone = options.GetValueOrDefault("zone", ""),
            Needs = Needs(options),
        });
        stdout.WriteLine($"{"slot",-24} {"open",5} {"can take",8} {"reason",-28} {"fill",5} {"remaining",9}");
        foreach (var s in reply.Slots)
            stdout.WriteLine($"{SlotText(s.Slot),-24} {s.Open,5} {s.CanTake,8} {(s.CanTake ? "" : s.Reason.ToString()),-28} {s.FillRatio,5:P0} {s.RemainingOrders,9}");
        stdout.WriteLine($"({reply.Slots.Count} slots; view lag {reply.ViewLagRecords} records, {reply.ViewLagMs} ms)");
        return 0;
    }

    private static SlotId SlotOption(Dictionary<string, string> options)
    {
        var start = Required(options, "start");
        if (!DateTimeOffset.TryParseExact(start, "yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
            throw new ArgumentException($"--start '{start}' is not yyyy-MM-ddTHH:mmZ");
        return new SlotId { Hub = Required(options, "hub"), Start = Timestamp.FromDateTimeOffset(at) };
    }

    private static OrderNeeds Needs(Dictionary<string, string> options)
    {
        var needs = new OrderNeeds();
        if (options.ContainsKey("items")) needs.Quantities["items"] = Number(options, "items", 0, long.MaxValue);
        if (options.TryGetValue("requires", out var requires)) needs.Requires.AddRange(requires.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return needs;
    }

    /// <summary>--from (yyyy-MM-dd, UTC) and --days as the half-open range [from, from + days).</summary>
    private static (Timestamp From, Timestamp To) DayRange(Dictionary<string, string> options, DateOnly defaultFrom, int defaultDays)
    {
        var start = new DateTimeOffset(Date(options, defaultFrom).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var days = Number(options, "days", defaultDays, int.MaxValue);
        return (Timestamp.FromDateTimeOffset(start), Timestamp.FromDateTimeOffset(start.AddDays(days)));
    }

    private static DateOnly Date(Dictionary<string, string> options, DateOnly fallback)
    {
        if (!options.TryGetValue("from", out var text)) return fallback;
        return DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date)
            ? date
            : throw new ArgumentException($"--from '{text}' is not a date yyyy-MM-dd");
    }

    private static long Number(Dictionary<string, string> options, string name, long fallback, long max)
    {
        if (!options.TryGetValue(name, out var text)) return fallback;
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value <= max
            ? value
            : throw new ArgumentException($"--{name} '{text}' is not a whole number from 0 to {max}");
    }

    private static string Required(Dictionary<string, string> options, string name) =>
        options.TryGetValue(name, out var value) ? value : throw new ArgumentException($"--{name} is required");

    /// <summary>Prints a token signed with the gateway's key: `token --role planner --subject alice --ttl 8h`.</summary>
    private static int IssueToken(Dictionary<string, string> options, TextWriter stdout)
    {
        var keyFile = options.GetValueOrDefault("key-file") ?? Environment.GetEnvironmentVariable("GATEWAY_JWT_SIGNING_KEY_FILE")
            ?? throw new ArgumentException("--key-file is required (or set GATEWAY_JWT_SIGNING_KEY_FILE): the key the gateways validate with");
        var roles = Required(options, "role").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        stdout.WriteLine(SlotTokens.Issue(SlotTokens.ReadKey(keyFile), Required(options, "subject"), roles, Ttl(options.GetValueOrDefault("ttl", "8h")),
            Environment.GetEnvironmentVariable("GATEWAY_JWT_ISSUER") is { Length: > 0 } issuer ? issuer : SecuritySettings.DefaultIssuer,
            Environment.GetEnvironmentVariable("GATEWAY_JWT_AUDIENCE") is { Length: > 0 } audience ? audience : SecuritySettings.DefaultAudience));
        return 0;
    }

    /// <summary>--ttl as 90s, 30m or 8h.</summary>
    private static TimeSpan Ttl(string text)
    {
        if (text.Length >= 2 && long.TryParse(text[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            switch (text[^1])
            {
                case 's': return TimeSpan.FromSeconds(n);
                case 'm': return TimeSpan.FromMinutes(n);
                case 'h': return TimeSpan.FromHours(n);
            }
        }
        throw new ArgumentException($"--ttl '{text}' is not a duration like 90s, 30m or 8h");
    }

    private static int Sample(Dictionary<string, string> options, TextWriter stdout)
    {
        var from = Date(options, DateOnly.FromDateTime(DateTime.UtcNow).AddDays(1));
        var days = (int)Number(options, "days", 14, int.MaxValue);
        stdout.Write(PlanFile.SampleCsv(from, days));
        return 0;
    }

    private static (string[] Positional, Dictionary<string, string> Options) Parse(string[] args)
    {
        var positional = new List<string>();
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                positional.Add(args[i]);
                continue;
            }
            if (i + 1 >= args.Length) throw new ArgumentException($"option {args[i]} needs a value");
            options[args[i][2..]] = args[++i];
        }
        return (positional.ToArray(), options);
    }

    private static string SlotText(SlotId? slot) =>
        slot?.Start is null ? "?" : new SlotKey(slot.Hub, slot.Start.ToDateTimeOffset()).ToString();

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
