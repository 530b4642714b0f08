using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// The planners' CLI, in the gateway executable:
/// <code>
/// SlotCapacity.Gateway plan apply PLAN.csv|PLAN.json [--gateway http://127.0.0.1:5101]
/// SlotCapacity.Gateway plan utilisation [--hub HUB] [--from yyyy-MM-dd] [--days N] [--gateway URL]
/// SlotCapacity.Gateway plan sample [--from yyyy-MM-dd] [--days N]      (writes a sample CSV plan to stdout)
/// </code>
/// </summary>
public static class PlanCli
{
    private const string Usage = """
        usage:
          SlotCapacity.Gateway plan apply PLAN.csv|PLAN.json [--gateway http://127.0.0.1:5101]
          SlotCapacity.Gateway plan utilisation [--hub HUB] [--from yyyy-MM-dd] [--days N] [--gateway URL]
          SlotCapacity.Gateway plan sample [--from yyyy-MM-dd] [--days N] > plan.csv
        """;

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null)
    {
        var stdout = output ?? Console.Out;
        try
        {
            var (positional, options) = Parse(args);
            var gateway = options.GetValueOrDefault("gateway", "http://127.0.0.1:5101");
            return positional switch
            {
                ["apply", var file] => await ApplyAsync(file, gateway, stdout),
                ["utilisation"] => await UtilisationAsync(options, gateway, stdout),
                ["sample"] => Sample(options, stdout),
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
        catch (RpcException e)
        {
            return Fail($"gateway answered {e.StatusCode}: {e.Status.Detail}");
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message + Environment.NewLine + Usage);
        }
    }

    private static async Task<int> ApplyAsync(string file, string gateway, TextWriter stdout)
    {
        var plan = PlanFile.Read(file);
        using var channel = GrpcChannel.ForAddress(gateway);
        var client = new Planning.PlanningClient(channel);
        var watch = Stopwatch.StartNew();
        var reply = await client.ApplyPlanAsync(plan, deadline: DateTime.UtcNow.AddMinutes(5));
        stdout.WriteLine($"Applied {reply.Applied} of {reply.Results.Count} slots from {file} in {watch.Elapsed.TotalSeconds:0.0} s ({reply.Failed} failed)");
        if (reply.Failed > 0)
        {
            stdout.WriteLine($"{"slot",-24} {"reason",-28} detail");
            foreach (var result in reply.Results.Where(r => !r.Applied))
                stdout.WriteLine($"{SlotText(result.Slot),-24} {result.Reason,-28} {result.Detail}");
        }
        return reply.Failed == 0 ? 0 : 1;
    }

    private static async Task<int> UtilisationAsync(Dictionary<string, string> options, string gateway, TextWriter stdout)
    {
        var from = options.TryGetValue("from", out var fromText)
            ? DateOnly.ParseExact(fromText, "yyyy-MM-dd", CultureInfo.InvariantCulture)
            : DateOnly.FromDateTime(DateTime.UtcNow);
        var days = options.TryGetValue("days", out var daysText) ? int.Parse(daysText, CultureInfo.InvariantCulture) : 14;
        var start = new DateTimeOffset(from.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        using var channel = GrpcChannel.ForAddress(gateway);
        var client = new Planning.PlanningClient(channel);
        var reply = await client.GetUtilisationAsync(new UtilisationRequest
        {
            Hub = options.GetValueOrDefault("hub", ""),
            From = Timestamp.FromDateTimeOffset(start),
            To = Timestamp.FromDateTimeOffset(start.AddDays(days)),
        }, deadline: DateTime.UtcNow.AddSeconds(30));
        stdout.WriteLine($"{"hub",-8} {"date",-10} {"slots",5} {"capacity",8} {"used",6} {"held",6} {"util",6} {"over",4} {"closed",6}");
        foreach (var d in reply.Days)
            stdout.WriteLine($"{d.Hub,-8} {d.Date,-10} {d.Slots,5} {d.CapacityOrders,8} {d.UsedOrders,6} {d.HeldOrders,6} {d.Utilisation,6:P0} {d.OverCommittedSlots,4} {d.ClosedSlots,6}");
        stdout.WriteLine($"({reply.Days.Count} hub-days; view lag {reply.ViewLagMs} ms)");
        return 0;
    }

    private static int Sample(Dictionary<string, string> options, TextWriter stdout)
    {
        var from = options.TryGetValue("from", out var fromText)
            ? DateOnly.ParseExact(fromText, "yyyy-MM-dd", CultureInfo.InvariantCulture)
            : DateOnly.FromDateTime(DateTime.UtcNow).AddDays(1);
        var days = options.TryGetValue("days", out var daysText) ? int.Parse(daysText, CultureInfo.InvariantCulture) : 14;
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
        slot?.Start is null ? "?" : $"{slot.Hub}@{slot.Start.ToDateTimeOffset():yyyy-MM-dd'T'HH:mm'Z'}";

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
