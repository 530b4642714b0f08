using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using SlotCapacity.Contracts;

// Measures how long reserves fail when one process of the running system (`make run`) is
// signalled: a steady stream of reserves through both gateways, a signal to the process named in
// a pid file at a set time, and a timeline of the answers. Loopback only; bounded in time.
//   dotnet SlotCapacity.FailoverProbe.dll --pidfile .run/pids/processor-1.pid --signal KILL|TERM|NONE
//     [--gateways http://127.0.0.1:5101,http://127.0.0.1:5102] [--rate 100] [--seconds 40] [--at 10] [--out DIR]
var options = Options.Parse(args);
if (options is null) return 2;

using var channels = new Channels(options.Gateways);
var slots = await ConfigureProbeSlotsAsync(channels.Planning[0]);
Console.WriteLine(options.Signal == "NONE"
    ? $"{slots.Count} probe slots configured; {options.Rate} reserves/s for {options.Seconds} s, no signal"
    : $"{slots.Count} probe slots configured; {options.Rate} reserves/s for {options.Seconds} s, SIG{options.Signal} to {options.PidFile} at {options.At} s");

var outcomes = new List<Outcome>(options.Rate * options.Seconds);
var clock = Stopwatch.StartNew();
double? signalledAt = null;
var calls = new List<Task>();
var total = options.Rate * options.Seconds;
for (var i = 0; i < total; i++)
{
    var due = TimeSpan.FromSeconds((double)i / options.Rate);
    if (due > clock.Elapsed) await Task.Delay(due - clock.Elapsed);
    if (options.Signal != "NONE" && signalledAt is null && clock.Elapsed.TotalSeconds >= options.At)
    {
        var pid = int.Parse(File.ReadAllText(options.PidFile).Trim(), CultureInfo.InvariantCulture);
        using (var kill = Process.Start("kill", [$"-{options.Signal}", pid.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
            if (kill.ExitCode != 0) Console.Error.WriteLine($"could not signal pid {pid} from {options.PidFile}");
        }
        signalledAt = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"t={signalledAt:F2}s SIG{options.Signal} sent to pid {pid}");
    }
    var n = i;
    calls.Add(Task.Run(async () =>
    {
        var sent = clock.Elapsed.TotalSeconds;
        var outcome = await ReserveAsync(channels.Checkout[n % channels.Checkout.Count], slots[n % slots.Count], n);
        lock (outcomes) outcomes.Add(new Outcome(sent, clock.Elapsed.TotalSeconds - sent, outcome));
    }));
}
await Task.WhenAll(calls);

var failed = outcomes.Where(o => o.Answer != "accepted").OrderBy(o => o.SentAt).ToList();
var afterSignal = failed.Where(o => signalledAt is null || o.SentAt >= signalledAt - 0.2).ToList();
var window = afterSignal.Count == 0 ? 0 : afterSignal[^1].SentAt - afterSignal[0].SentAt;
Console.WriteLine();
Console.WriteLine("| calls | accepted | failed | failed after the signal | first failure | last failure | unavailability window |");
Console.WriteLine("|---|---|---|---|---|---|---|");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"| {outcomes.Count} | {outcomes.Count - failed.Count} | {failed.Count} | {afterSignal.Count} | "
    + $"{(afterSignal.Count > 0 ? $"t={afterSignal[0].SentAt:F2}s" : "-")} | {(afterSignal.Count > 0 ? $"t={afterSignal[^1].SentAt:F2}s" : "-")} | {window:F2} s |"));
foreach (var group in failed.GroupBy(o => o.Answer).OrderByDescending(g => g.Count()))
    Console.WriteLine($"  {group.Count()} x {group.Key}");

if (options.Out is { } directory)
{
    Directory.CreateDirectory(directory);
    var path = Path.Combine(directory, "timeline.csv");
    File.WriteAllLines(path, ["sent_s,latency_ms,answer", .. outcomes.OrderBy(o => o.SentAt).Select(o =>
        string.Create(CultureInfo.InvariantCulture, $"{o.SentAt:F3},{o.Latency * 1000:F1},{o.Answer}"))]);
    Console.WriteLine($"timeline: {path}");
}
return 0;

static async Task<string> ReserveAsync(Checkout.CheckoutClient client, SlotId slot, int n)
{
    try
    {
        var reply = await client.ReserveAsync(new ReserveRequest
        {
            ReservationId = $"probe-{Environment.ProcessId}-{n}",
            OrderId = $"probe-order-{n}",
            Slot = slot,
            Zone = "north",
            Needs = new OrderNeeds(),
        }, deadline: DateTime.UtcNow.AddSeconds(2));
        return reply.Accepted ? "accepted" : reply.Reason.ToString();
    }
    catch (RpcException e)
    {
        return "grpc " + e.StatusCode;
    }
}

// Slots of their own with room for every call, so only unavailability can reject a reserve.
static async Task<List<SlotId>> ConfigureProbeSlotsAsync(Planning.PlanningClient planning)
{
    var day = DateTime.UtcNow.Date.AddDays(30);
    var slots = Enumerable.Range(0, 24).Select(h => new SlotId { Hub = "PROBE", Start = Timestamp.FromDateTime(day.AddHours(h)) }).ToList();
    var config = new SlotConfig { Open = true, Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = 1_000_000, Zones = { "north" } } } };
    var reply = await planning.ApplyPlanAsync(new ApplyPlanRequest { Slots = { slots.Select(s => new ConfigureSlotRequest { Slot = s, Config = config }) } },
        deadline: DateTime.UtcNow.AddSeconds(30));
    if (reply.Failed > 0) throw new InvalidOperationException($"{reply.Failed} probe slots were not configured: {reply.Results.First(r => !r.Applied).Detail}");
    return slots;
}

internal sealed record Outcome(double SentAt, double Latency, string Answer);

internal sealed record Options(IReadOnlyList<string> Gateways, string PidFile, string Signal, int Rate, int Seconds, double At, string? Out)
{
    public static Options? Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < args.Length; i += 2) values[args[i]] = args[i + 1];
        var signal = values.GetValueOrDefault("--signal", "KILL");
        if (args.Length % 2 != 0 || (signal != "NONE" && !values.ContainsKey("--pidfile")))
        {
            Console.Error.WriteLine("usage: --pidfile FILE [--signal KILL|TERM|NONE] [--gateways URL,URL] [--rate N] [--seconds N] [--at S] [--out DIR]");
            return null;
        }
        if (signal is not ("KILL" or "TERM" or "NONE"))
        {
            Console.Error.WriteLine($"--signal must be KILL, TERM or NONE (a steady run), not '{signal}'");
            return null;
        }
        var pidFile = values.GetValueOrDefault("--pidfile", "");
        var gateways = values.GetValueOrDefault("--gateways", "http://127.0.0.1:5101,http://127.0.0.1:5102").Split(',');
        if (gateways.Any(g => !g.StartsWith("http://127.0.0.1:", StringComparison.Ordinal)))
        {
            Console.Error.WriteLine("--gateways must be loopback addresses (http://127.0.0.1:PORT)");
            return null;
        }
        int Int(string name, int fallback, int max) =>
            Math.Clamp(int.Parse(values.GetValueOrDefault(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture), 1, max);
        var seconds = Int("--seconds", 40, 600);
        return new Options(gateways, pidFile, signal, Int("--rate", 100, 5_000), seconds,
            Math.Min(double.Parse(values.GetValueOrDefault("--at", "10"), CultureInfo.InvariantCulture), seconds), values.GetValueOrDefault("--out"));
    }
}

internal sealed class Channels : IDisposable
{
    private readonly List<GrpcChannel> _channels;
    public List<Checkout.CheckoutClient> Checkout { get; }
    public List<Planning.PlanningClient> Planning { get; }

    public Channels(IReadOnlyList<string> gateways)
    {
        _channels = gateways.Select(g => GrpcChannel.ForAddress(g)).ToList();
        Checkout = _channels.Select(c => new Checkout.CheckoutClient(c)).ToList();
        Planning = _channels.Select(c => new Planning.PlanningClient(c)).ToList();
    }

    public void Dispose() => _channels.ForEach(c => c.Dispose());
}
