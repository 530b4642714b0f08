using System.CommandLine;
using System.Diagnostics;
using SlotCapacity.Contracts;
using SlotCapacity.Faults;
using SlotCapacity.Kafka;

// The fault suite (`make chaos`): one experiment against the running system (`make run`): a steady
// stream of reserves through both gateways, made by a client that behaves like checkout (retries a
// call that got no definite answer, on the other gateway, with the same reservation id), one fault
// at a set time, then an audit of what the engine holds against what callers were told.
// Loopback only; bounded in time.
//   slot-faults EXPERIMENT [--rate N] [--seconds N] [--at S] [--out DIR] [--run .run]   (--help: every option)
var root = Options.Command(RunAsync);
return await CommandLines.InvokeAsync(root, args);

static async Task<int> RunAsync(Options options)
{
    var experiment = Experiments.Find(options.Experiment)!;
    var system = new RunningSystem(options.RunDirectory);
    if (experiment.Unmet(system) is { } unmet)
    {
        Console.Error.WriteLine(unmet);
        return 2;
    }
    // The tokens `make run` issued (or $SLOT_CHECKOUT_TOKEN / $SLOT_PLANNER_TOKEN).
    using var client = new CheckoutClient(system.Gateways(), SlotChannel.TokenFor("checkout", system.Directory), SlotChannel.TokenFor("planner", system.Directory));
    var hub = $"FAULT-{experiment.Name}-{DateTime.UtcNow:HHmmss}";
    List<SlotId> slots;
    try
    {
        slots = await client.ConfigureSlotsAsync(hub, options.SlotCount, options.Capacity);
    }
    catch (Exception e) when (e is SlotsNotConfiguredException or Grpc.Core.RpcException)
    {
        Console.Error.WriteLine($"slot-faults: {experiment.Name}: the system did not take the experiment's slots, nothing was run: {e.Message}");
        return 2;
    }
    Console.WriteLine($"{experiment.Name}: {options.Rate} reserves/s ({options.Rate * options.Seconds} calls, climbing to that rate over the first {options.Ramp} s) "
                      + $"on {slots.Count} slots of {options.Capacity} (hub {hub}); fault at {options.At} s: {experiment.Description}");

    var clock = Stopwatch.StartNew();
    var calls = new List<Task<Call>>(options.Rate * options.Seconds);
    Task? fault = null;
    var clientLag = TimeSpan.Zero;
    for (var i = 0; i < options.Rate * options.Seconds; i++)
    {
        var due = Options.Due(i, options.Rate, options.Ramp);
        // One reading of the clock: read twice, it can pass `due` in between, and a negative delay throws.
        var wait = due - clock.Elapsed;
        if (wait > TimeSpan.Zero) await Task.Delay(wait);
        // How late this client starts calls against its schedule: when it falls behind, the machine
        // (or the client itself) was saturated, and the run measured that as well as the system.
        var late = clock.Elapsed - due;
        if (late > clientLag) clientLag = late;
        if (fault is null && clock.Elapsed.TotalSeconds >= options.At)
            fault = Task.Run(() => experiment.Inject(system, clock, Console.Out));
        var n = i;
        calls.Add(client.ReserveAsync(slots[n % slots.Count], $"{hub}-{n}", n, clock));
    }
    var results = await Task.WhenAll(calls);
    if (fault is not null) await fault;
    Console.WriteLine($"calls done at t={clock.Elapsed.TotalSeconds:F1}s; retrying unanswered releases, then waiting for abandons and the views to settle...");
    var (answeredLater, neverAnswered) = await client.SettleReleasesAsync(TimeSpan.FromSeconds(90));
    var releases = new Releases(results.Sum(c => c.Released), results.Sum(c => c.ReleasesUnanswered), answeredLater, neverAnswered);
    var booked = await client.SettledBookingsAsync(hub, slots, () => CommandsTaken.AllAsync(system.Bootstrap(), RunningSystem.Topics()));
    var report = FaultReport.From(experiment, options, results, booked, fault is null ? null : options.At, releases, clientLag);
    report.Print(Console.Out);
    foreach (var (kind, count) in client.FailedAttempts().Take(8))
        Console.WriteLine($"  attempts without an answer: {count,6}  {kind}");
    if (options.Out is { } directory) report.Write(directory);
    return report.Oversold > 0 || report.Phantom != 0 ? 1 : 0;
}

internal sealed record Options(string Experiment, int Rate, int Seconds, double At, int SlotCount, int Capacity, string? Out, string RunDirectory, int Ramp)
{
    /// <summary>
    /// When call <paramref name="call"/> is due: the rate climbs linearly from zero to <paramref name="rate"/>
    /// over the first <paramref name="ramp"/> seconds (rate x ramp / 2 calls), then stays there. A fresh system
    /// and a fresh client taken from idle to 500/s at once spend their first seconds compiling their hot paths
    /// on a saturated machine, and some runs collapsed then, before the fault, measuring nothing about it.
    /// </summary>
    public static TimeSpan Due(int call, int rate, int ramp)
    {
        var inRamp = rate * ramp / 2.0;
        return TimeSpan.FromSeconds(call < inRamp ? Math.Sqrt(2.0 * ramp * call / rate) : call / (double)rate + ramp / 2.0);
    }

    /// <summary>The command line: the experiment and its options; a bad one is refused naming it, before anything runs.</summary>
    public static RootCommand Command(Func<Options, Task<int>> run)
    {
        var names = string.Join(", ", Experiments.All.Select(e => e.Name));
        var experiment = new Argument<string>("EXPERIMENT") { Description = $"The fault to inject: {names}" };
        experiment.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is { } name && Experiments.Find(name) is null)
                result.AddError($"unknown experiment '{name}'; one of: {names}");
        });
        var rate = CommandLines.WholeNumber("--rate", "Reserves per second", 1, 5_000, fallback: 50);
        var seconds = CommandLines.WholeNumber("--seconds", "Length of the run", 5, 600, fallback: 40);
        var at = CommandLines.WholeNumber("--at", "Second at which the fault is injected", 0, 600, fallback: 10);
        var slots = CommandLines.WholeNumber("--slots", "Slots the reserves are spread over", 1, 1_000, fallback: 24);
        var capacity = CommandLines.WholeNumber("--capacity", "Orders per slot (0: the slots fill about two thirds of the way through)", 0, 1_000_000, fallback: 0);
        var ramp = CommandLines.WholeNumber("--ramp", "Seconds over which the rate climbs from zero to --rate at the start (0: full rate at once)", 0, 60, fallback: 5);
        var output = new Option<string?>("--out") { Description = "Directory the report is written to" };
        var runDirectory = new Option<string>("--run") { Description = "The running system's directory (`make run`)", DefaultValueFactory = _ => ".run" };
        var root = new RootCommand("""
            The fault suite (`make chaos`): one experiment against the running system: a steady stream of reserves
            through both gateways by a client that behaves like checkout, one fault at a set time, then an audit of
            what the engine holds against what callers were told.
            """) { experiment, rate, seconds, at, slots, capacity, ramp, output, runDirectory };
        root.SetAction(parsed =>
        {
            var (r, s, n) = (parsed.GetValue(rate), parsed.GetValue(seconds), parsed.GetValue(slots));
            // By default the slots fill up about two thirds of the way through, so the audit sees full slots too.
            var c = parsed.GetValue(capacity) is > 0 and var given ? given : Math.Max(1, r * s * 2 / 3 / n);
            return run(new Options(parsed.GetRequiredValue(experiment), r, s, Math.Min(parsed.GetValue(at), s), n, c,
                parsed.GetValue(output), parsed.GetRequiredValue(runDirectory), parsed.GetValue(ramp)));
        });
        return root;
    }
}
