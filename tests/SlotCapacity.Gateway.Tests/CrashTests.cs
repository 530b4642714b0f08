using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

public partial class EndToEndTests
{
    [Fact]
    public async Task A_killed_gateways_in_flight_reserve_is_reported_by_its_replacement_and_settled_by_the_callers_retry()
    {
        await using var system = await EngineAndGateways.StartAsync(output);
        var other = await system.StartGatewayAsync("gw-b", deadline: TimeSpan.FromSeconds(2), share: new ReplyShare(1, 2));
        var slot = EngineAndGateways.Slot("LON1", Start.AddHours(6));
        await system.ConfigureAsync(other, slot, Config(vans: 1));

        var (port, adminPort) = (FreePort(), FreePort());
        var logs = new ConcurrentQueue<string>();
        var keyFile = system.StatePath("signing-key");
        await File.WriteAllTextAsync(keyFile, Convert.ToBase64String(EngineAndGateways.SigningKey));
        Process StartGatewayProcess()
        {
            var info = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { Path.Combine(AppContext.BaseDirectory, "SlotCapacity.Gateway.dll"), "--urls", $"http://127.0.0.1:{port}" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            info.Environment["KAFKA_BOOTSTRAP_SERVERS"] = system.Broker.BootstrapServers;
            info.Environment["TOPIC_PREFIX"] = system.Topics.Prefix;
            info.Environment["SLOT_PARTITIONS"] = "4";
            info.Environment["REPLY_PARTITIONS"] = "4";
            info.Environment["GATEWAY_INSTANCE"] = "gw-a";
            info.Environment["GATEWAY_ORDINAL"] = "0";
            info.Environment["GATEWAY_COUNT"] = "2";
            info.Environment["GATEWAY_DEADLINE_MS"] = "10000";
            info.Environment["GATEWAY_ADMIN_URL"] = $"http://127.0.0.1:{adminPort}";
            info.Environment["GATEWAY_JWT_SIGNING_KEY_FILE"] = keyFile;
            var process = Process.Start(info) ?? throw new InvalidOperationException("cannot start the gateway process");
            process.OutputDataReceived += (_, e) => { if (e.Data is { } line) logs.Enqueue(line); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is { } line) logs.Enqueue(line); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return process;
        }
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{adminPort}") };
        async Task<string> HealthAsync()
        {
            try
            {
                return await http.GetStringAsync("/health");
            }
            catch (HttpRequestException e)
            {
                return e.Message;
            }
        }
        async Task WaitReadyAsync() => await WaitForAsync(async () => (await HealthAsync()).Contains("\"ready\": true", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "the gateway process did not become ready");

        var first = StartGatewayProcess();
        Process? second = null;
        try
        {
            await WaitReadyAsync();
            await system.StopProcessorsAsync();
            using var channel = SlotChannel.ForAddress($"http://127.0.0.1:{port}", EngineAndGateways.Token(SlotRoles.Checkout));
            var call = new Checkout.CheckoutClient(channel).ReserveAsync(Reserve("crash-victim", slot)).ResponseAsync;
            await WaitForAsync(async () => (await HealthAsync()).Contains("\"inFlight\": 1", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the Reserve never in flight");
            first.Kill();
            await first.WaitForExitAsync();
            // The caller learns nothing about its reservation: a transport failure, outcome unknown.
            var lost = await Assert.ThrowsAsync<RpcException>(async () => await call);
            output.WriteLine($"caller saw {lost.StatusCode}: {lost.Status.Detail}");

            second = StartGatewayProcess();
            await WaitReadyAsync();
            await system.StartProcessorAsync("processor-back");
            // The engine accepts the Reserve and replies to the partition the killed process named;
            // its replacement reads it, finds no call of its own waiting, and reports it.
            await WaitForAsync(async () => (await HealthAsync()).Contains("\"orphanedAccepts\": 1", StringComparison.Ordinal),
                TimeSpan.FromSeconds(60), "the replacement did not report the orphaned accept");

            // The contract for a transport failure: the same id again, on any gateway, gets the answer.
            var retried = await system.Checkout(other).ReserveAsync(Reserve("crash-victim", slot));
            Assert.True(retried.Accepted, retried.Detail);
            Assert.Equal(RejectReason.SlotFull, (await system.Checkout(other).ReserveAsync(Reserve("someone-else", slot))).Reason);
        }
        finally
        {
            foreach (var process in new[] { first, second })
            {
                if (process is null) continue;
                if (!process.HasExited) process.Kill();
                process.Dispose();
            }
            output.WriteLine(string.Join(Environment.NewLine, logs.Where(l => l.Contains("Warning", StringComparison.Ordinal) || l.Contains("incarnation", StringComparison.Ordinal)).Take(20)));
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > timeout) throw new TimeoutException(what);
            await Task.Delay(100);
        }
    }
}
