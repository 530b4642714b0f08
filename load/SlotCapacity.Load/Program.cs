using System.Globalization;
using SlotCapacity.Kafka;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

const string Usage = """
    slot-load: open-loop load harness for the slot-capacity system and its peers (Redis, PostgreSQL).

    slot-load run --scenario NAME|all [options]
      --targets LIST      comma list of system, redis, postgres, postgres-async (default: system)
      --duration D        measured time of a fixed-rate scenario          (default: 30s)
      --warmup D          warm-up before measuring, excluded              (default: 5s)
      --step D            length of each step of a ramped scenario        (default: 10s)
      --max-multiplier X  highest ramp step, in multiples of nominal      (default: 100)
      --gateways URLS     comma list of loopback gateway URLs             (default: LOAD_GATEWAYS or http://127.0.0.1:5101,http://127.0.0.1:5102)
                          tokens: SLOT_CHECKOUT_TOKEN and SLOT_PLANNER_TOKEN, else .run/tokens/ (written by `make run`)
      --kafka LIST        bootstrap servers for the audit                 (default: KAFKA_BOOTSTRAP_SERVERS)
      --topic-prefix P    topic prefix of the system under test           (default: TOPIC_PREFIX)
      --out DIR           results directory                               (default: load/results)
      --seed N            workload seed                                   (default: 1)
      --hubs N / --days N shape of the many-slot scenarios                (default: 24 / 3)
      --idle D            idle CPU measured before each target's run      (default: 3s; 0 = skip)
      --cost D            reserves-only and reads-only phases after a fixed-rate scenario, for CPU per kind of call (default: 10s; 0 = skip)
      --hold D            hold length in the checkout scenarios           (default: 20s)
      --pids DIR          pid files of the system's processes             (default: .run/pids; else /proc command lines)
      --channels N        gRPC channels per gateway                       (default: 4)
      --multiple-http2 B  a channel opens more HTTP/2 connections past 100 streams (default: true)
      --http-client B     channels over an HttpClient, without gRPC's client-side balancer (default: true)
    slot-load self-check [--rates LIST] [--step D] [--channels N] [--multiple-http2 B] [--http-client B] [--out DIR]
                        the harness against a trivial gRPC server (a child process, loopback):
                        the highest rate it drives with p99 lateness < 5 ms, and its CPU per call
    slot-load echo-server --ports P1,P2   that trivial server (Checkout and Planning answered at once)
    slot-load list                    the scenarios
    slot-load summarize [--out DIR]   rebuild DIR/README.md from every scenario's report.json

    Durations: 500ms, 30s, 2m, or seconds. Exit code: 0 all audits passed, 1 an audit failed or a
    target could not run, 2 bad usage.
    """;

if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Console.WriteLine(Usage);
    return 0;
}

var command = args[0];
var options = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 1; i < args.Length; i++)
{
    if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"slot-load: bad argument '{args[i]}' (options are --name value)\n\n{Usage}");
        return 2;
    }
    options[args[i][2..]] = args[++i];
}
string Opt(string name, string fallback) => options.GetValueOrDefault(name) is { Length: > 0 } v ? v : fallback;
ChannelShape ChannelShapeOf() => new(int.Parse(Opt("channels", "4"), CultureInfo.InvariantCulture),
    bool.Parse(Opt("multiple-http2", "true")), bool.Parse(Opt("http-client", "true")));

try
{
    switch (command)
    {
        case "list":
            foreach (var s in Scenario.All) Console.WriteLine($"{s.Name,-24} {s.Description}");
            return 0;
        case "summarize":
        {
            var dir = Opt("out", "load/results");
            File.WriteAllText(Path.Combine(dir, "README.md"), ReportWriter.Index(dir));
            Console.WriteLine($"wrote {Path.Combine(dir, "README.md")}");
            return 0;
        }
        case "echo-server":
            await EchoServer.RunAsync(Opt("ports", "5201").Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToList(), CancellationToken.None);
            return 0;
        case "self-check":
        {
            var rates = Opt("rates", string.Join(',', SelfCheck.DefaultMultipliers)).Split(',')
                .Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToList();
            var shape = ChannelShapeOf();
            using var selfCts = new CancellationTokenSource(TimeSpan.FromSeconds(rates.Count * (Cli.Duration(Opt("step", "10s")).TotalSeconds + 20) + 60));
            var report = await new SelfCheck(rates, Cli.Duration(Opt("step", "10s")), shape, Console.Out).RunAsync(selfCts.Token);
            var dir = Path.Combine(Opt("out", "load/results"), "self-check");
            SelfCheck.Write(report, dir);
            Console.WriteLine($"results: {Path.Combine(dir, "summary.md")}");
            return 0;
        }
        case "run":
            break;
        default:
            Console.Error.WriteLine($"slot-load: unknown command '{command}'\n\n{Usage}");
            return 2;
    }

    var scenarioName = Opt("scenario", "nominal");
    var scenarios = scenarioName == "all" ? Scenario.All : scenarioName.Split(',').Select(Scenario.Find).ToList();
    var scenarioOptions = new ScenarioOptions(
        Duration: Cli.Duration(Opt("duration", "30s")),
        Warmup: Cli.Duration(Opt("warmup", "5s")),
        Step: Cli.Duration(Opt("step", "10s")),
        Seed: int.Parse(Opt("seed", "1"), CultureInfo.InvariantCulture),
        Hubs: int.Parse(Opt("hubs", "24"), CultureInfo.InvariantCulture),
        Days: int.Parse(Opt("days", "3"), CultureInfo.InvariantCulture),
        MaxMultiplier: double.Parse(Opt("max-multiplier", "100"), CultureInfo.InvariantCulture),
        IdleSeconds: Cli.Duration(Opt("idle", "3s")).TotalSeconds,
        CostSeconds: Cli.Duration(Opt("cost", "10s")).TotalSeconds,
        Checkout: CheckoutShape.Default with { HoldSeconds = (int)Cli.Duration(Opt("hold", "20s")).TotalSeconds });
    var gateways = Opt("gateways", Environment.GetEnvironmentVariable("LOAD_GATEWAYS") ?? "http://127.0.0.1:5101,http://127.0.0.1:5102")
        .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(u => new Uri(u)).ToList();
    foreach (var g in gateways) SystemTarget.RequireLoopback(g);
    var kafka = Opt("kafka", Environment.GetEnvironmentVariable(KafkaEndpoint.BootstrapVariable) ?? "");
    var topics = new TopicNames(Opt("topic-prefix", Environment.GetEnvironmentVariable("TOPIC_PREFIX") ?? ""));
    var channelShape = ChannelShapeOf();
    var pidDir = Opt("pids", ".run/pids");
    SystemProcesses.Found FindSystem() =>
        SystemProcesses.Find(ProcCpu.Machine, pidDir, Directory.GetCurrentDirectory(), gateways.Select(g => g.Port).ToList());
    var targetNames = Opt("targets", "system").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
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
        (scenarioOptions.Warmup + (s.Ramped ? scenarioOptions.Step * s.Multipliers.Count : scenarioOptions.Duration)).TotalSeconds
        + scenarioOptions.IdleSeconds + 2 * scenarioOptions.CostSeconds + (s.Checkout ? scenarioOptions.CheckoutShape.HoldSeconds : 0));
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(planned * factories.Count + 120 * scenarios.Count * factories.Count));
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        Console.Error.WriteLine("slot-load: stopping (peers are shut down, partial results are not written)");
        cts.Cancel();
    };

    var outDir = Opt("out", "load/results");
    var passed = true;
    foreach (var scenario in scenarios)
    {
        var report = await new ScenarioRunner(scenario, scenarioOptions, Console.Out).RunAsync(factories, outDir, cts.Token);
        passed &= report.Passed;
    }
    File.WriteAllText(Path.Combine(outDir, "README.md"), ReportWriter.Index(outDir));
    Console.WriteLine(passed ? "slot-load: every audit passed" : "slot-load: FAILED (an audit found a violation or a target could not run; see summary.md)");
    return passed ? 0 : 1;
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
