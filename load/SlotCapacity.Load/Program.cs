using System.CommandLine;
using System.Globalization;
using SlotCapacity.Kafka;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

var root = new RootCommand("""
    slot-load: open-loop load harness for the slot-capacity system and its peers (Redis, PostgreSQL).
    Durations: 500ms, 30s, 2m, or seconds. Exit code: 0 all audits passed, 1 an audit failed or a
    target could not run, 2 bad usage.
    """);

// Options of more than one verb; each verb gets its own instance (System.CommandLine parents a symbol once).
Option<string> Out() => new("--out") { Description = "Results directory", DefaultValueFactory = _ => "load/results" };
Cli.DurationOption Duration(string name, string description, string fallback) => new(name, description, fallback);
(Option<int?> Channels, Option<bool> MultipleHttp2, Option<bool> HttpClient, Option<string> Client) ChannelOptions(Command command)
{
    var options = (new Option<int?>("--channels") { Description = "Clients per gateway (default: 1 with h2c, which opens connections as streams need them; 4 Grpc.Net.Client channels)" },
        new Option<bool>("--multiple-http2") { HelpName = "true|false", Description = "A channel opens more HTTP/2 connections past 100 streams", DefaultValueFactory = _ => true, Arity = ArgumentArity.ExactlyOne },
        new Option<bool>("--http-client") { HelpName = "true|false", Description = "Grpc.Net.Client channels over an HttpClient, without gRPC's client-side balancer", DefaultValueFactory = _ => true, Arity = ArgumentArity.ExactlyOne },
        new Option<string>("--client") { Description = "Checkout calls through h2c (the harness's own HTTP/2 client) or grpc-dotnet (Grpc.Net.Client)", DefaultValueFactory = _ => "h2c" });
    options.Item4.AcceptOnlyFromAmong("h2c", "grpc-dotnet");
    command.Options.Add(options.Item1);
    command.Options.Add(options.Item2);
    command.Options.Add(options.Item3);
    command.Options.Add(options.Item4);
    return options;
}
ChannelShape ChannelShapeOf(ParseResult parsed, (Option<int?> Channels, Option<bool> MultipleHttp2, Option<bool> HttpClient, Option<string> Client) o)
{
    var h2c = parsed.GetValue(o.Client) == "h2c";
    // Measured with the self-check: h2c writes the calls of a batch to one gateway together, so one
    // client per gateway is cheapest; Grpc.Net.Client contends on a channel's locks below four.
    return new(parsed.GetValue(o.Channels) ?? (h2c ? 1 : 4), parsed.GetValue(o.MultipleHttp2), parsed.GetValue(o.HttpClient), h2c);
}

var list = new Command("list", "The scenarios.");
list.SetAction(_ =>
{
    foreach (var s in Scenario.All) Console.WriteLine($"{s.Name,-24} {s.Description}");
    return 0;
});
root.Subcommands.Add(list);

var summarizeOut = Out();
var summarize = new Command("summarize", "Rebuilds DIR/README.md from every scenario's report.json.") { summarizeOut };
summarize.SetAction(parsed =>
{
    var dir = parsed.GetRequiredValue(summarizeOut);
    File.WriteAllText(Path.Combine(dir, "README.md"), ReportWriter.Index(dir));
    Console.WriteLine($"wrote {Path.Combine(dir, "README.md")}");
    return 0;
});
root.Subcommands.Add(summarize);

var runsOut = Out();
var runs = new Command("runs", "Writes DIR/README.md and DIR/cpu-per-reserve.png: the runs DIR/run-N of `make bench` side by side.") { runsOut };
runs.SetAction(parsed =>
{
    Console.WriteLine($"wrote {BenchRuns.Write(parsed.GetRequiredValue(runsOut))}");
    return 0;
});
root.Subcommands.Add(runs);

var ports = new Option<string>("--ports") { Description = "Comma list of loopback ports to serve", DefaultValueFactory = _ => "5201" };
var echo = new Command("echo-server", "A trivial gRPC server: Checkout and Planning answered at once.") { ports };
echo.SetAction(async parsed =>
{
    await EchoServer.RunAsync(parsed.GetRequiredValue(ports).Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToList(), CancellationToken.None);
    return 0;
});
root.Subcommands.Add(echo);

var rates = new Option<string>("--rates") { Description = "Comma list of rates, in multiples of nominal", DefaultValueFactory = _ => string.Join(',', SelfCheck.DefaultMultipliers) };
var selfStep = Duration("--step", "Length of each rate's step", "10s");
var selfOut = Out();
var selfCheck = new Command("self-check", """
    The harness against a trivial gRPC server (a child process, loopback): the highest rate it drives
    with p99 lateness < 5 ms, and its CPU per call.
    """) { rates, selfStep.Option, selfOut };
var selfChannels = ChannelOptions(selfCheck);
selfCheck.SetAction(async parsed =>
{
    var multipliers = parsed.GetRequiredValue(rates).Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToList();
    var step = selfStep.Read(parsed);
    using var selfCts = new CancellationTokenSource(TimeSpan.FromSeconds(multipliers.Count * (step.TotalSeconds + 20) + 60));
    var report = await new SelfCheck(multipliers, step, ChannelShapeOf(parsed, selfChannels), Console.Out).RunAsync(selfCts.Token);
    var dir = Path.Combine(parsed.GetRequiredValue(selfOut), "self-check");
    SelfCheck.Write(report, dir);
    Console.WriteLine($"results: {Path.Combine(dir, "summary.md")}");
    return 0;
});
root.Subcommands.Add(selfCheck);

var scenarioOption = new Option<string>("--scenario") { Description = "A scenario (see `list`), a comma list of them, or all", DefaultValueFactory = _ => "nominal" };
var targetsOption = new Option<string>("--targets") { Description = "Comma list of system, redis, postgres, postgres-async", DefaultValueFactory = _ => "system" };
var durationOption = Duration("--duration", "Measured time of a fixed-rate scenario", "30s");
var warmupOption = Duration("--warmup", "Warm-up before measuring, excluded: this long at a quarter, half, then all of the first rate", "5s");
var stepOption = Duration("--step", "Length of each step of a ramped scenario", "10s");
var maxMultiplierOption = new Option<double>("--max-multiplier") { Description = "Highest ramp step, in multiples of nominal", DefaultValueFactory = _ => 100 };
var gatewaysOption = new Option<string>("--gateways")
{
    Description = "Comma list of loopback gateway URLs: $LOAD_GATEWAYS when set. "
                  + "Tokens: SLOT_CHECKOUT_TOKEN and SLOT_PLANNER_TOKEN, else .run/tokens/ (written by `make run`)",
    DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration["LOAD_GATEWAYS"] ?? "http://127.0.0.1:5101,http://127.0.0.1:5102",
};
var kafkaOption = new Option<string>("--kafka")
{
    Description = $"Bootstrap servers for the audit (default: ${KafkaEndpoint.BootstrapVariable})",
    DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration[KafkaEndpoint.BootstrapVariable] ?? "",
};
var topicPrefixOption = new Option<string>("--topic-prefix")
{
    Description = $"Topic prefix of the system under test (default: ${TopicNames.PrefixVariable})",
    DefaultValueFactory = _ => KafkaEndpoint.ProcessConfiguration[TopicNames.PrefixVariable] ?? "",
};
var runOut = Out();
var seedOption = new Option<int>("--seed") { Description = "Workload seed", DefaultValueFactory = _ => 1 };
var hubsOption = new Option<int>("--hubs") { Description = "Hubs of the many-slot scenarios", DefaultValueFactory = _ => 24 };
var daysOption = new Option<int>("--days") { Description = "Days of the many-slot scenarios", DefaultValueFactory = _ => 3 };
var idleOption = Duration("--idle", "Idle CPU measured before each target's run (0 = skip)", "3s");
var costOption = Duration("--cost", "Reserves-only and reads-only phases after a fixed-rate scenario, for CPU per kind of call (0 = skip)", "10s");
var holdOption = Duration("--hold", "Hold length in the checkout scenarios", "20s");
var pidsOption = new Option<string>("--pids") { Description = "Pid files of the system's processes (else /proc command lines)", DefaultValueFactory = _ => ".run/pids" };
var run = new Command("run", "Runs scenarios against the targets and audits what the system answered.")
{
    scenarioOption, targetsOption, durationOption.Option, warmupOption.Option, stepOption.Option, maxMultiplierOption, gatewaysOption, kafkaOption,
    topicPrefixOption, runOut, seedOption, hubsOption, daysOption, idleOption.Option, costOption.Option, holdOption.Option, pidsOption,
};
var runChannels = ChannelOptions(run);
run.SetAction(async parsed =>
{
    var scenarioName = parsed.GetRequiredValue(scenarioOption);
    var scenarios = scenarioName == "all" ? Scenario.All : scenarioName.Split(',').Select(Scenario.Find).ToList();
    var scenarioOptions = new ScenarioOptions(
        Duration: durationOption.Read(parsed),
        Warmup: warmupOption.Read(parsed),
        Step: stepOption.Read(parsed),
        Seed: parsed.GetValue(seedOption),
        Hubs: parsed.GetValue(hubsOption),
        Days: parsed.GetValue(daysOption),
        MaxMultiplier: parsed.GetValue(maxMultiplierOption),
        IdleSeconds: idleOption.Read(parsed).TotalSeconds,
        CostSeconds: costOption.Read(parsed).TotalSeconds,
        Checkout: CheckoutShape.Default with { HoldSeconds = (int)holdOption.Read(parsed).TotalSeconds });
    var gateways = parsed.GetRequiredValue(gatewaysOption)
        .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(u => new Uri(u)).ToList();
    foreach (var g in gateways) SystemTarget.RequireLoopback(g);
    var kafka = parsed.GetRequiredValue(kafkaOption);
    var topics = new TopicNames(parsed.GetRequiredValue(topicPrefixOption));
    var channelShape = ChannelShapeOf(parsed, runChannels);
    var pidDir = parsed.GetRequiredValue(pidsOption);
    SystemProcesses.Found FindSystem() =>
        SystemProcesses.Find(ProcCpu.Machine, pidDir, Directory.GetCurrentDirectory(), gateways.Select(g => g.Port).ToList());
    var targetNames = parsed.GetRequiredValue(targetsOption).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    var factories = targetNames.Select(name => name switch
    {
        "system" => (Func<ITarget>)(() => new SystemTarget(gateways, kafka, topics, channelShape, FindSystem, SystemTarget.GatewayTokens.FromEnvironment())),
        "redis" => () => new RedisTarget(),
        "postgres" => () => new PostgresTarget(),
        "postgres-async" => () => new PostgresTarget(synchronousCommit: false),
        _ => throw new ArgumentException($"unknown target '{name}': choose from system, redis, postgres, postgres-async"),
    }).ToList();

    // Every run is bounded in time whatever happens: its planned length plus a generous margin.
    var planned = scenarios.Sum(s =>
        (scenarioOptions.Warmup * ScenarioRunner.WarmupClimb.Length + (s.Ramped ? scenarioOptions.Step * s.Multipliers.Count : scenarioOptions.Duration)).TotalSeconds
        + scenarioOptions.IdleSeconds + 2 * scenarioOptions.CostSeconds + (s.Checkout ? scenarioOptions.CheckoutShape.HoldSeconds : 0));
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(planned * factories.Count + 120 * scenarios.Count * factories.Count));
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        Console.Error.WriteLine("slot-load: stopping (peers are shut down, partial results are not written)");
        cts.Cancel();
    };

    var outDir = parsed.GetRequiredValue(runOut);
    var passed = true;
    foreach (var scenario in scenarios)
    {
        var report = await new ScenarioRunner(scenario, scenarioOptions, Console.Out).RunAsync(factories, outDir, cts.Token);
        passed &= report.Passed;
    }
    File.WriteAllText(Path.Combine(outDir, "README.md"), ReportWriter.Index(outDir));
    Console.WriteLine(passed ? "slot-load: every audit passed" : "slot-load: FAILED (an audit found a violation or a target could not run; see summary.md)");
    return passed ? 0 : 1;
});
root.Subcommands.Add(run);

try
{
    return await CommandLines.InvokeAsync(root, args);
}
catch (Exception e) when (e is ArgumentException or FormatException or UriFormatException)
{
    Console.Error.WriteLine($"slot-load: {e.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("slot-load: stopped before the end; no report written for the unfinished scenario");
    return 1;
}

internal static class Cli
{
    /// <summary>A duration option whose help shows its default as written (30s, not 00:00:30).</summary>
    public sealed class DurationOption(string name, string description, string fallback)
    {
        public Option<TimeSpan?> Option { get; } = CommandLines.Parsed<TimeSpan?>(name, $"{description} (default: {fallback})", (string text, out TimeSpan? value) =>
        {
            var ok = TryDuration(text, out var duration);
            value = duration;
            return ok;
        }, "a duration from 0 to 1h: 500ms, 30s, 2m or seconds");

        public TimeSpan Read(ParseResult parsed) => parsed.GetValue(Option) ?? Duration(fallback);
    }

    public static bool TryDuration(string text, out TimeSpan duration)
    {
        try
        {
            duration = Duration(text);
            return true;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            duration = default;
            return false;
        }
    }

    public static TimeSpan Duration(string text)
    {
        text = text.Trim();
        double Number(string s) => double.Parse(s, CultureInfo.InvariantCulture);
        var d = text switch
        {
            _ when text.EndsWith("ms", StringComparison.Ordinal) => TimeSpan.FromMilliseconds(Number(text[..^2])),
            _ when text.EndsWith('s') => TimeSpan.FromSeconds(Number(text[..^1])),
            _ when text.EndsWith('m') => TimeSpan.FromMinutes(Number(text[..^1])),
            _ => TimeSpan.FromSeconds(Number(text)),
        };
        if (d < TimeSpan.Zero || d > TimeSpan.FromHours(1))
            throw new ArgumentException($"duration '{text}' is outside 0..1h");
        return d;
    }
}
