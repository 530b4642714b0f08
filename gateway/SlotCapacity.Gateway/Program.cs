using SlotCapacity.Gateway;
using SlotCapacity.Kafka;

// `SlotCapacity.Gateway plan ...`, `reserve ...` etc. are the CLI; anything else runs the gateway.
if (GatewayCli.IsCommand(args))
    return await GatewayCli.RunAsync(args);

try
{
    var settings = GatewaySettings.FromEnvironment(UrlArgument(args) ?? "http://127.0.0.1:5101");
    GatewayHost.Loopback(settings.Url, settings.Security.Tls);
    var slotPartitions = PartitionsFromEnvironment("SLOT_PARTITIONS", TopicNames.DefaultSlotPartitions);
    var replyPartitions = PartitionsFromEnvironment("REPLY_PARTITIONS", TopicNames.DefaultReplyPartitions);
    var needed = settings.Topics.Specs(slotPartitions, replyPartitions)
        .Where(t => t.Name == settings.Topics.Commands || t.Name == settings.Topics.Replies || t.Name == settings.Topics.Availability);
    await TopicProvisioner.VerifyAsync(settings.BootstrapServers, needed, TimeSpan.FromSeconds(15));

    var app = GatewayHost.Build(settings);
    await app.RunAsync();
    return 0;
}
catch (StartupException e)
{
    Console.Error.WriteLine($"gateway: {e.Message}");
    return 2;
}
catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException or System.Net.Sockets.SocketException)
{
    Console.Error.WriteLine($"gateway: {e.Message.TrimEnd('.')}; pick free ports with --urls http://127.0.0.1:PORT (gRPC) and GATEWAY_ADMIN_URL (default: gRPC port + 1000)");
    return 2;
}

static string? UrlArgument(string[] args)
{
    for (var i = 0; i < args.Length; i++)
    {
        if (args[i] == "--urls" && i + 1 < args.Length) return args[i + 1];
        if (args[i].StartsWith("--urls=", StringComparison.Ordinal)) return args[i]["--urls=".Length..];
    }
    return Environment.GetEnvironmentVariable("ASPNETCORE_URLS") is { Length: > 0 } env ? env.Split(';')[0] : null;
}

static int PartitionsFromEnvironment(string name, int fallback)
{
    var text = Environment.GetEnvironmentVariable(name);
    if (string.IsNullOrEmpty(text)) return fallback;
    return int.TryParse(text, out var value) && value > 0
        ? value
        : throw new StartupException($"{name}='{text}' is not a positive partition count; unset it to use {fallback}");
}
