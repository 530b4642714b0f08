using System.Diagnostics;
using System.Globalization;
using SlotCapacity.Contracts;
using SlotCapacity.Faults;

// The fault suite (`make chaos`): one experiment against the running system (`make run`): a steady
// stream of reserves through both gateways, made by a client that behaves like checkout (retries a
// call that got no definite answer, on the other gateway, with the same reservation id), one fault
// at a set time, then an audit of what the engine holds against what callers were told.
// Loopback only; bounded in time.
//   slot-faults EXPERIMENT [--rate N] [--seconds N] [--at S] [--out DIR] [--run .run]
var options = Options.Parse(args);
if (options is null) return 2;
var experiment = Experiments.Find(options.Experiment);
if (experiment is null)
{
    Console.Error.WriteLine($"unknown experiment '{options.Experiment}'; one of: {string.Join(", ", Experiments.All.Select(e => e.Name))}");
    return 2;
}

var system = new RunningSystem(options.RunDirectory);
if (experiment.Unmet(system) is { } unmet)
{
    Console.Error.WriteLine(unmet);
    return 2;
}
// The tokens `make run` issued (or $SLOT_CHECKOUT_TOKEN / $SLOT_PLANNER_TOKEN).
using var client = new CheckoutClient(system.Gateways(), SlotChannel.TokenFor("checkout", system.Directory), SlotChannel.TokenFor("planner", system.Directory));
var hub = $"FAULT-{experiment.Name}-{DateTime.UtcNow:HHmmss}";
var slots = await client.ConfigureSlotsAsync(hub, options.SlotCount, options.Capacity);
Console.WriteLine($"{experiment.Name}: {options.Rate} reserves/s for {options.Seconds} s on {slots.Count} slots of {options.Capacity} "
                  + $"(hub {hub}); fault at {options.At} s: {experiment.Description}");

var clock = Stopwatch.StartNew();
var calls = new List<Task<Call>>(options.Rate * options.Seconds);
Task? fault = null;
for (var i = 0; i < options.Rate * options.Seconds; i++)
{
    var due = TimeSpan.FromSeconds((double)i / options.Rate);
    if (due > clock.Elapsed) await Task.Delay(due - clock.Elapsed);
    if (fault is null && clock.Elapsed.TotalSeconds >= options.At)
        fault = Task.Run(() => experiment.Inject(system, clock, Console.Out));
    var n = i;
    calls.Add(client.ReserveAsync(slots[n % slots.Count], $"{hub}-{n}", n, clock));
}
var results = await Task.WhenAll(calls);
if (fault is not null) await fault;
Console.WriteLine($"calls done at t={clock.Elapsed.TotalSeconds:F1}s; waiting for abandons and the views to settle...");
var booked = await client.SettledBookingsAsync(hub, slots);
var report = FaultReport.From(experiment, options, results, booked, fault is null ? null : options.At);
report.Print(Console.Out);
foreach (var (kind, count) in client.FailedAttempts().Take(8))
    Console.WriteLine($"  attempts without an answer: {count,6}  {kind}");
if (options.Out is { } directory) report.Write(directory);
return report.Oversold > 0 || report.Phantom != 0 ? 1 : 0;

internal sealed record Options(string Experiment, int Rate, int Seconds, double At, int SlotCount, int Capacity, string? Out, string RunDirectory)
{
    public static Options? Parse(string[] args)
    {
        if (args.Length == 0 || args.Length % 2 != 1)
        {
            Console.Error.WriteLine("usage: slot-faults EXPERIMENT [--rate N] [--seconds N] [--at S] [--slots N] [--capacity N] [--out DIR] [--run DIR]");
            Console.Error.WriteLine($"experiments: {string.Join(", ", Experiments.All.Select(e => e.Name))}");
            return null;
        }
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 1; i + 1 < args.Length; i += 2) values[args[i]] = args[i + 1];
        var known = new[] { "--rate", "--seconds", "--at", "--slots", "--capacity", "--out", "--run" };
        if (values.Keys.FirstOrDefault(k => !known.Contains(k)) is { } unknown)
        {
            Console.Error.WriteLine($"unknown option '{unknown}'; options: {string.Join(" ", known)}");
            return null;
        }
        int? Int(string name, int fallback, int min, int max)
        {
            if (!values.TryGetValue(name, out var text)) return fallback;
            if (int.TryParse(text, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max) return v;
            Console.Error.WriteLine($"{name} is '{text}': a whole number from {min} to {max}");
            return null;
        }
        if (Int("--rate", 50, 1, 5_000) is not { } rate || Int("--seconds", 40, 5, 600) is not { } seconds
            || Int("--at", 10, 0, 600) is not { } at || Int("--slots", 24, 1, 1_000) is not { } slotCount
            || Int("--capacity", 0, 0, 1_000_000) is not { } capacity)
            return null;
        // By default the slots fill up about two thirds of the way through, so the audit sees full slots too.
        if (capacity == 0) capacity = Math.Max(1, rate * seconds * 2 / 3 / slotCount);
        return new Options(args[0], rate, seconds, Math.Min(at, seconds), slotCount, capacity, values.GetValueOrDefault("--out"),
            values.GetValueOrDefault("--run", ".run"));
    }
}
