using System.CommandLine;
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
/// The CLI in the gateway executable (`./slot`): planners' commands and checkout calls for trying things
/// out, each talking to a running gateway over gRPC, and `replay`, which reads the events topic. Without
/// a verb the executable runs the gateway itself. `--help` on any verb lists its options.
/// </summary>
public static class GatewayCli
{
    private const string DefaultGateway = "http://127.0.0.1:5101";

    /// <summary>Runs the verb <paramref name="args"/> name; without one, <paramref name="serve"/> runs the gateway on
    /// --urls (null when not given). A bad command line exits 2 with a line naming the option, before any call.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, Func<string?, Task<int>>? serve = null)
    {
        var stdout = output ?? Console.Out;
        var stderr = error ?? Console.Error;
        try
        {
            return await CommandLines.InvokeAsync(Root(stdout, serve), args, stdout, stderr, tool: "slot");
        }
        catch (PlanFile.PlanFileException e)
        {
            return Fail(stderr, e.Message);
        }
        catch (FileNotFoundException e)
        {
            return Fail(stderr, $"plan file not found: {e.FileName}");
        }
        catch (Exception e) when (e is StartupException or IncompleteHistoryException or TimeoutException)
        {
            return Fail(stderr, e.Message);
        }
        catch (RpcException e)
        {
            return Fail(stderr, $"gateway answered {e.StatusCode}: {e.Status.Detail}" + e.StatusCode switch
            {
                StatusCode.Unauthenticated => $" (pass --token TOKEN or set {SlotChannel.TokenVariable}; `make run` prints tokens)",
                StatusCode.PermissionDenied => " (use a token with that role)",
                _ => "",
            });
        }
        catch (ArgumentException e)
        {
            return Fail(stderr, e.Message);
        }
    }

    private static RootCommand Root(TextWriter stdout, Func<string?, Task<int>>? serve)
    {
        var urls = new Option<string?>("--urls") { Description = "Serve gRPC here (HTTP/2; port 0 = any free port). Default: the first of ASPNETCORE_URLS, else " + DefaultGateway };
        var root = new RootCommand("""
            Slot capacity gateway. Without a verb it runs the gateway (configured by KAFKA_BOOTSTRAP_SERVERS,
            GATEWAY_* and the other variables of gateway/README.md); the verbs are its CLI. Calls to a gateway
            present --token, else $SLOT_TOKEN: checkout calls need role checkout, plan apply planner,
            plan utilisation viewer or planner.
            """) { urls };
        if (serve is not null) root.SetAction(parsed => serve(parsed.GetValue(urls)));

        var plan = new Command("plan", "Planners' commands: apply a plan, read utilisation, write a sample plan.");
        plan.Subcommands.Add(PlanApply(stdout));
        plan.Subcommands.Add(PlanUtilisation(stdout));
        plan.Subcommands.Add(PlanSample(stdout));
        root.Subcommands.Add(plan);
        root.Subcommands.Add(Replay(stdout));
        root.Subcommands.Add(Reserve(stdout));
        root.Subcommands.Add(End("confirm", "Confirms a held reservation.", stdout));
        root.Subcommands.Add(End("release", "Releases a reservation (reason: cli).", stdout));
        root.Subcommands.Add(Availability(stdout));
        root.Subcommands.Add(Token(stdout));
        return root;
    }

    // Options shared by several verbs; each verb gets its own instance (System.CommandLine parents a symbol once).
    private static Option<string> GatewayOption() => new("--gateway") { Description = "Gateway gRPC URL", DefaultValueFactory = _ => DefaultGateway };

    // No default value in the option: help would print the token.
    private static Option<string?> TokenOption() => new("--token") { Description = $"Bearer token (default: ${SlotChannel.TokenVariable})" };

    private static Option<string?> HubOption(bool required) => new("--hub") { Description = "Hub, e.g. LON1" + (required ? "" : " (default: all)"), Required = required };

    private static Option<DateOnly?> FromOption(string fallback) => CommandLines.Parsed<DateOnly?>("--from", $"First day, yyyy-MM-dd UTC (default: {fallback})", (string text, out DateOnly? date) =>
    {
        var ok = DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed);
        date = parsed;
        return ok;
    }, "a date yyyy-MM-dd");

    private static Option<int> DaysOption(int fallback) => CommandLines.WholeNumber("--days", "Number of days", 0, int.MaxValue, fallback);

    private static Option<SlotId> StartOption()
    {
        var start = CommandLines.Parsed("--start", "Slot start, yyyy-MM-ddTHH:mmZ", (string text, out SlotId slot) =>
        {
            var ok = DateTimeOffset.TryParseExact(text, "yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at);
            slot = new SlotId { Start = Timestamp.FromDateTimeOffset(at) };
            return ok;
        }, "yyyy-MM-ddTHH:mmZ");
        start.Required = true;
        return start;
    }

    /// <summary>--items and --requires: what an order needs.</summary>
    private sealed class NeedsOptions
    {
        public readonly Option<long> Items = CommandLines.WholeNumber("--items", "Items in the order", 0, long.MaxValue);
        public readonly Option<string?> Requires = new("--requires") { Description = "Fleet counters the order requires, comma-separated, e.g. a,b" };

        public void AddTo(Command command)
        {
            command.Options.Add(Items);
            command.Options.Add(Requires);
        }

        public OrderNeeds Read(ParseResult parsed)
        {
            var needs = new OrderNeeds();
            if (parsed.GetResult(Items) is not null) needs.Quantities["items"] = parsed.GetValue(Items);
            if (parsed.GetValue(Requires) is { } requires) needs.Requires.AddRange(requires.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            return needs;
        }
    }

    /// <summary>A verb that calls a gateway: --gateway and --token, and the channel they open.</summary>
    private sealed class GatewayCall
    {
        private readonly Option<string> _gateway = GatewayOption();
        private readonly Option<string?> _token = TokenOption();

        public GatewayCall(Command command)
        {
            command.Options.Add(_gateway);
            command.Options.Add(_token);
        }

        public GrpcChannel Channel(ParseResult parsed) => SlotChannel.ForAddress(parsed.GetRequiredValue(_gateway),
            parsed.GetValue(_token) is { Length: > 0 } token ? token : Environment.GetEnvironmentVariable(SlotChannel.TokenVariable));
    }

    private static Command PlanApply(TextWriter stdout)
    {
        var file = new Argument<string>("PLAN") { Description = "PLAN.csv or PLAN.json; - reads CSV from stdin" };
        var retries = CommandLines.WholeNumber("--retries", "Times the slots that got no reply in time are sent again", 0, 100, fallback: 3);
        var command = new Command("apply", "Applies a plan (every slot's capacity) through the Planning API.") { file, retries };
        var call = new GatewayCall(command);
        command.SetAction(parsed => ApplyAsync(parsed.GetRequiredValue(file), call.Channel(parsed), parsed.GetValue(retries), stdout));
        return command;
    }

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

    private static Command PlanUtilisation(TextWriter stdout)
    {
        var (hub, from, days) = (HubOption(required: false), FromOption("today"), DaysOption(14));
        var command = new Command("utilisation", "Utilisation per hub and day, from the gateway's live view.") { hub, from, days };
        var call = new GatewayCall(command);
        command.SetAction(async parsed =>
        {
            using var channel = call.Channel(parsed);
            var (start, end) = DayRange(parsed.GetValue(from) ?? DateOnly.FromDateTime(DateTime.UtcNow), parsed.GetValue(days));
            var reply = await new Planning.PlanningClient(channel).GetUtilisationAsync(new UtilisationRequest
            {
                Hub = parsed.GetValue(hub) ?? "",
                From = start,
                To = end,
            }, deadline: DateTime.UtcNow.AddSeconds(30));
            WriteDays(reply.Days, stdout);
            stdout.WriteLine($"({reply.Days.Count} hub-days; view lag {reply.ViewLagMs} ms)");
            return 0;
        });
        return command;
    }

    private static Command PlanSample(TextWriter stdout)
    {
        var (from, days) = (FromOption("tomorrow"), DaysOption(14));
        var command = new Command("sample", "Writes a sample plan (CSV) to stdout.") { from, days };
        command.SetAction(parsed =>
        {
            stdout.Write(PlanFile.SampleCsv(parsed.GetValue(from) ?? DateOnly.FromDateTime(DateTime.UtcNow).AddDays(1), parsed.GetValue(days)));
            return 0;
        });
        return command;
    }

    /// <summary>The utilisation table as it was at --at (default: now), rebuilt from the events topic
    /// of the cluster at --bootstrap (default KAFKA_BOOTSTRAP_SERVERS) under --topic-prefix (default TOPIC_PREFIX).</summary>
    private static Command Replay(TextWriter stdout)
    {
        var (hub, from, days) = (HubOption(required: false), FromOption("the day of --at"), DaysOption(14));
        var at = CommandLines.Parsed<DateTimeOffset?>("--at", "Rebuild as of this time, ISO 8601 (default: now)", (string text, out DateTimeOffset? value) =>
        {
            var ok = DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var parsed);
            value = parsed;
            return ok;
        }, "an ISO 8601 time, e.g. 2026-11-26T08:00:00Z");
        var bootstrap = new Option<string?>("--bootstrap")
        {
            Description = $"Kafka bootstrap servers (default: ${KafkaEndpoint.BootstrapVariable})",
            DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration[KafkaEndpoint.BootstrapVariable],
        };
        var prefix = new Option<string>("--topic-prefix")
        {
            Description = $"Topic prefix (default: ${TopicNames.PrefixVariable})",
            DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration[TopicNames.PrefixVariable] ?? "",
        };
        var command = new Command("replay", "Utilisation as it was at --at, rebuilt from slot-events (progress on stderr).") { hub, at, from, days, bootstrap, prefix };
        command.SetAction(async parsed =>
        {
            var asOf = parsed.GetValue(at) ?? DateTimeOffset.UtcNow;
            var (start, end) = DayRange(parsed.GetValue(from) ?? DateOnly.FromDateTime(asOf.UtcDateTime), parsed.GetValue(days));
            using var loggers = LoggerFactory.Create(b =>
            {
                b.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true);
                // stdout carries only the table.
                b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            });
            var replay = new UtilisationReplay(KafkaEndpoint.BootstrapServers(parsed.GetValue(bootstrap)),
                new TopicNames(parsed.GetRequiredValue(prefix)), loggers.CreateLogger("replay"));
            var slots = await replay.ReplayAsync(parsed.GetValue(hub) ?? "", asOf, new StderrProgress(), CancellationToken.None);
            string fromDate = start.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), toDate = end.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
            var inRange = slots.Utilisation().Days
                .Where(d => string.CompareOrdinal(d.Date, fromDate) >= 0 && string.CompareOrdinal(d.Date, toDate) < 0).ToList();
            WriteDays(inRange, stdout);
            stdout.WriteLine($"({inRange.Count} hub-days as of {asOf:yyyy-MM-dd'T'HH:mm:ss'Z'}, rebuilt from {slots.Applied} events; "
                             + $"{slots.Later} later ones left out, {slots.Skipped} skipped, {slots.Inconsistent} inconsistent)");
            return 0;
        });
        return command;
    }

    private static void WriteDays(IEnumerable<DayUtilisation> days, TextWriter stdout)
    {
        stdout.WriteLine($"{"hub",-8} {"date",-10} {"slots",5} {"capacity",8} {"used",6} {"held",6} {"util",6} {"over",4} {"closed",6}");
        foreach (var d in days)
            stdout.WriteLine($"{d.Hub,-8} {d.Date,-10} {d.Slots,5} {d.CapacityOrders,8} {d.UsedOrders,6} {d.HeldOrders,6} {d.Utilisation,6:P0} {d.OverCommittedSlots,4} {d.ClosedSlots,6}");
    }

    /// <summary>Replay progress on stderr, written as it is reported (stdout keeps only the table).</summary>
    private sealed class StderrProgress : IProgress<ReplayProgress>
    {
        public void Report(ReplayProgress value) => Console.Error.WriteLine($"replay: {value}");
    }

    private static Command Reserve(TextWriter stdout)
    {
        var (hub, start) = (HubOption(required: true), StartOption());
        var zone = new Option<string>("--zone") { Description = "Delivery zone", Required = true };
        var hold = CommandLines.WholeNumber("--hold", "Hold the capacity this many seconds before a confirm (0: book at once)", 0, int.MaxValue, fallback: 0);
        var reservation = new Option<string?>("--reservation") { Description = "Reservation id (default: cli-RANDOM)" };
        var order = new Option<string?>("--order") { Description = "Order id (default: order-RESERVATION)" };
        var needs = new NeedsOptions();
        var command = new Command("reserve", "Reserves capacity in a slot for an order.") { hub, start, zone };
        needs.AddTo(command);
        command.Options.Add(hold);
        command.Options.Add(reservation);
        command.Options.Add(order);
        var call = new GatewayCall(command);
        command.SetAction(async parsed =>
        {
            using var channel = call.Channel(parsed);
            var request = new ReserveRequest
            {
                ReservationId = parsed.GetValue(reservation) ?? "cli-" + Guid.NewGuid().ToString("N")[..12],
                Slot = Slot(parsed, hub, start),
                Zone = parsed.GetRequiredValue(zone),
                Needs = needs.Read(parsed),
                HoldSeconds = parsed.GetValue(hold),
            };
            request.OrderId = parsed.GetValue(order) ?? "order-" + request.ReservationId;
            var watch = Stopwatch.StartNew();
            var reply = await new Checkout.CheckoutClient(channel).ReserveAsync(request);
            stdout.WriteLine($"{reply} ({watch.Elapsed.TotalMilliseconds:0.0} ms)");
            return reply.Accepted ? 0 : 1;
        });
        return command;
    }

    private static Command End(string verb, string description, TextWriter stdout)
    {
        var (hub, start) = (HubOption(required: true), StartOption());
        var reservation = new Option<string>("--reservation") { Description = "Reservation id", Required = true };
        var command = new Command(verb, description) { hub, start, reservation };
        var call = new GatewayCall(command);
        command.SetAction(async parsed =>
        {
            using var channel = call.Channel(parsed);
            var (slot, id) = (Slot(parsed, hub, start), parsed.GetRequiredValue(reservation));
            var client = new Checkout.CheckoutClient(channel);
            var reply = verb == "confirm"
                ? await client.ConfirmAsync(new ConfirmRequest { ReservationId = id, Slot = slot })
                : await client.ReleaseAsync(new ReleaseRequest { ReservationId = id, Slot = slot, Reason = "cli" });
            stdout.WriteLine(reply);
            return reply.Accepted ? 0 : 1;
        });
        return command;
    }

    private static Command Availability(TextWriter stdout)
    {
        var (hub, from, days) = (HubOption(required: true), FromOption("today"), DaysOption(1));
        var zone = new Option<string?>("--zone") { Description = "Delivery zone (default: any)" };
        var needs = new NeedsOptions();
        var command = new Command("availability", "Which slots of a hub can take an order, from the gateway's view.") { hub, from, days, zone };
        needs.AddTo(command);
        var call = new GatewayCall(command);
        command.SetAction(async parsed =>
        {
            using var channel = call.Channel(parsed);
            var (start, end) = DayRange(parsed.GetValue(from) ?? DateOnly.FromDateTime(DateTime.UtcNow), parsed.GetValue(days));
            var reply = await new Checkout.CheckoutClient(channel).QueryAvailabilityAsync(new AvailabilityRequest
            {
                Hub = parsed.GetValue(hub) ?? "",
                From = start,
                To = end,
                Zone = parsed.GetValue(zone) ?? "",
                Needs = needs.Read(parsed),
            });
            stdout.WriteLine($"{"slot",-24} {"open",5} {"can take",8} {"reason",-28} {"fill",5} {"remaining",9}");
            foreach (var s in reply.Slots)
                stdout.WriteLine($"{SlotText(s.Slot),-24} {s.Open,5} {s.CanTake,8} {(s.CanTake ? "" : s.Reason.ToString()),-28} {s.FillRatio,5:P0} {s.RemainingOrders,9}");
            stdout.WriteLine($"({reply.Slots.Count} slots; view lag {reply.ViewLagRecords} records, {reply.ViewLagMs} ms)");
            return 0;
        });
        return command;
    }

    /// <summary>Prints a token signed with the gateway's key: `token --role planner --subject alice --ttl 8h`.</summary>
    private static Command Token(TextWriter stdout)
    {
        var role = new Option<string>("--role") { Description = $"Roles, comma-separated: {string.Join(", ", SlotRoles.All)}", Required = true };
        var subject = new Option<string>("--subject") { Description = "The caller, e.g. alice", Required = true };
        var ttl = CommandLines.Parsed<TimeSpan?>("--ttl", "Lifetime: 90s, 30m or 8h, at most 24h (default: 8h)", (string text, out TimeSpan? lifetime) =>
        {
            var ok = TryDuration(text, out var parsed);
            lifetime = parsed;
            return ok;
        }, "a duration like 90s, 30m or 8h");
        var keyFile = new Option<string?>("--key-file") { Description = "File with the signing key in base64 (default: $GATEWAY_JWT_SIGNING_KEY_FILE)" };
        var command = new Command("token", "Issues a token signed with the gateways' key (issuer and audience: GATEWAY_JWT_ISSUER, GATEWAY_JWT_AUDIENCE).")
            { role, subject, ttl, keyFile };
        command.SetAction(parsed =>
        {
            var security = SettingsBinder.BindValid<GatewaySecurityOptions>(KafkaEndpoint.ProcessConfiguration);
            var file = parsed.GetValue(keyFile) ?? security.SigningKeyFile
                ?? throw new ArgumentException("--key-file is required (or set GATEWAY_JWT_SIGNING_KEY_FILE): the key the gateways validate with");
            var roles = parsed.GetRequiredValue(role).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            stdout.WriteLine(SlotTokens.Issue(SlotTokens.ReadKey(file), parsed.GetRequiredValue(subject), roles, parsed.GetValue(ttl) ?? TimeSpan.FromHours(8), security.Issuer, security.Audience));
            return 0;
        });
        return command;
    }

    private static bool TryDuration(string text, out TimeSpan duration)
    {
        duration = default;
        if (text.Length < 2 || !long.TryParse(text[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return false;
        duration = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            _ => default,
        };
        return text[^1] is 's' or 'm' or 'h';
    }

    private static SlotId Slot(ParseResult parsed, Option<string?> hub, Option<SlotId> start)
    {
        var slot = parsed.GetRequiredValue(start);
        slot.Hub = parsed.GetValue(hub) ?? "";
        return slot;
    }

    /// <summary>--from and --days as the half-open range [from, from + days), UTC.</summary>
    private static (Timestamp From, Timestamp To) DayRange(DateOnly from, int days)
    {
        var start = new DateTimeOffset(from.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        return (Timestamp.FromDateTimeOffset(start), Timestamp.FromDateTimeOffset(start.AddDays(days)));
    }

    private static string SlotText(SlotId? slot) =>
        slot?.Start is null ? "?" : new SlotKey(slot.Hub, slot.Start.ToDateTimeOffset()).ToString();

    private static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine(message);
        return CommandLines.BadUsage;
    }
}
