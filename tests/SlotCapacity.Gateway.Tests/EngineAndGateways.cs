using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using SlotCapacity.Processor;
using SlotCapacity.Testing;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>One test's system: fresh topics on the shared test broker, the engine (slot processor)
/// in this process, and gateways started through <see cref="GatewayHost"/>.</summary>
internal sealed class EngineAndGateways : IAsyncDisposable
{
    private readonly ITestOutputHelper output;
    // Streamiz keeps the logger factory of the last stream in a static, so one factory serves every
    // processor this test process starts and is never disposed.
    private static readonly ILoggerFactory EngineLoggers =
        LoggerFactory.Create(b => b.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
    private readonly string stateRoot = Path.Combine(Path.GetTempPath(), "gateway-tests", Guid.NewGuid().ToString("N"));
    private readonly List<IAsyncDisposable> processors = [];
    private readonly List<RunningGateway> gateways = [];
    private readonly List<GrpcChannel> channels = [];

    public TestBroker Broker { get; }
    public TopicNames Topics { get; }

    /// <summary>The key every test gateway validates tokens with (one per test process).</summary>
    public static readonly byte[] SigningKey = SlotTokens.NewKey();
    public const string PlannerName = "test-planner";

    /// <summary>A token signed with <see cref="SigningKey"/>, valid for an hour.</summary>
    public static string Token(string role, string subject = "test-caller") =>
        SlotTokens.Issue(SigningKey, subject, [role], TimeSpan.FromHours(1));

    public static SecuritySettings Security { get; } = new() { SigningKey = SigningKey };

    private EngineAndGateways(ITestOutputHelper output, TestBroker broker, TopicNames topics)
    {
        this.output = output;
        Broker = broker;
        Topics = topics;
    }

    public static async Task<EngineAndGateways> StartAsync(ITestOutputHelper output, int processors = 1)
    {
        var broker = await TestBroker.SharedAsync();
        var topics = await broker.CreateTopicsAsync(slotPartitions: 4, replyPartitions: 4);
        output.WriteLine($"broker {broker.Kind} at {broker.BootstrapServers}, topics {topics.Prefix}*");
        var system = new EngineAndGateways(output, broker, topics);
        for (var i = 0; i < processors; i++) await system.StartProcessorAsync($"processor-{i}");
        return system;
    }

    public async Task StartProcessorAsync(string name)
    {
        var settings = new ProcessorSettings(Broker.BootstrapServers, Topics, Path.Combine(stateRoot, name), name);
        processors.Add(await SlotProcessor.StartAsync(settings, EngineLoggers, CancellationToken.None));
    }

    public async Task StopProcessorsAsync()
    {
        foreach (var processor in processors) await processor.DisposeAsync();
        processors.Clear();
    }

    public async Task<RunningGateway> StartGatewayAsync(string instance, TimeSpan? deadline = null, int maxInFlight = 2_000,
        ReplyShare? share = null, string? viewCheckpoint = null, SecuritySettings? security = null)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var gateway = await GatewayHost.StartAsync(new GatewaySettings
        {
            BootstrapServers = Broker.BootstrapServers,
            Security = security ?? Security,
            Topics = Topics,
            Instance = instance,
            Url = (security ?? Security).Tls ? "https://127.0.0.1:0" : "http://127.0.0.1:0",
            Deadline = deadline ?? TimeSpan.FromMilliseconds(150),
            MaxInFlight = maxInFlight,
            ReplyShare = share,
            ViewCheckpoint = viewCheckpoint,
            ConfigureLogging = b => b.AddProvider(new TestOutputLoggerProvider(output, instance)),
        });
        gateways.Add(gateway);
        await gateway.WaitUntilReadyAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"{instance} ready at {gateway.Address} {started.ElapsedMilliseconds} ms after start: {gateway.Status()}");
        return gateway;
    }

    /// <summary>A file path in this test's own folder (removed at the end).</summary>
    public string StatePath(string name)
    {
        Directory.CreateDirectory(stateRoot);
        return Path.Combine(stateRoot, name);
    }

    /// <summary>Checkout calls with a checkout token.</summary>
    public Checkout.CheckoutClient Checkout(RunningGateway gateway) => new(Channel(gateway, Token(SlotRoles.Checkout)));
    /// <summary>Planning calls with the token of planner <see cref="PlannerName"/>.</summary>
    public Planning.PlanningClient Planning(RunningGateway gateway) => new(Channel(gateway, Token(SlotRoles.Planner, PlannerName)));

    /// <summary>A channel presenting <paramref name="token"/> (none when null), closed with the system.</summary>
    public GrpcChannel Channel(RunningGateway gateway, string? token)
    {
        var channel = SlotChannel.ForAddress(gateway.Address, token);
        channels.Add(channel);
        return channel;
    }

    public static SlotId Slot(string hub, DateTimeOffset start) => new() { Hub = hub, Start = Timestamp.FromDateTimeOffset(start) };

    /// <summary>Configures a slot through the planning API and asserts the engine applied it; the
    /// gateway's view shows it a moment later (tests that read the view poll for it).</summary>
    public async Task ConfigureAsync(RunningGateway gateway, SlotId slot, SlotConfig config)
    {
        var result = await Planning(gateway).ConfigureSlotAsync(new ConfigureSlotRequest { Slot = slot, Config = config });
        Assert.True(result.Applied, $"configure {slot}: {result.Reason} {result.Detail}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in channels) channel.Dispose();
        foreach (var gateway in gateways) await gateway.StopAsync();
        await StopProcessorsAsync();
        try
        {
            Directory.Delete(stateRoot, recursive: true);
        }
        catch (IOException)
        {
            // RocksDB may still hold a lock file for a moment; the temp folder is cleaned by the OS.
        }
    }
}
