using SlotCapacity.Gateway;
using SlotCapacity.Kafka;

// `SlotCapacity.Gateway plan ...`, `reserve ...` etc. are the CLI; without a verb it runs the gateway.
return await GatewayCli.RunAsync(args, serve: ServeAsync);

static async Task<int> ServeAsync(string? url)
{
    try
    {
        var (settings, slotPartitions, replyPartitions) = GatewayConfiguration.Read(SettingsBinder.Environment(), url);
        GatewayHost.Loopback(settings.Url, settings.Security.Tls);
        var needed = settings.Topics.Specs(slotPartitions, replyPartitions)
            .Where(t => t.Name == settings.Topics.Commands || t.Name == settings.Topics.Replies || t.Name == settings.Topics.Availability);
        await TopicProvisioner.VerifyAsync(settings.BootstrapServers, needed, TimeSpan.FromSeconds(15));

        var app = GatewayHost.Build(settings);
        await app.RunAsync();
        return 0;
    }
    catch (StartupException e)
    {
        foreach (var problem in e.Message.Split('\n')) await Console.Error.WriteLineAsync($"gateway: {problem}");
        return 2;
    }
    catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException or System.Net.Sockets.SocketException)
    {
        await Console.Error.WriteLineAsync($"gateway: {e.Message.TrimEnd('.')}; pick free ports with --urls http://127.0.0.1:PORT (gRPC) and GATEWAY_ADMIN_URL (default: gRPC port + 1000)");
        return 2;
    }
}
