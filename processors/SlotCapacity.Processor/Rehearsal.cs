using System.Diagnostics;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;
using Streamiz.Kafka.Net.SerDes;

namespace SlotCapacity.Processor;

/// <summary>
/// Before a processor joins the group it runs its own topology once, on Streamiz's TopologyTestDriver
/// (in memory, no broker) with a RocksDB store in a scratch directory, over one command of every
/// kind. Why: a freshly started process compiles Streamiz's task creation, RocksDB's bindings, the
/// protobuf contracts and the decision on first use, and a restarted processor used to pay that
/// with its first tasks (0.8 s to create them, measured) while their partitions, just taken from
/// the survivor, answered nothing. Rehearsed, that time is spent while the survivor still serves
/// every partition.
/// </summary>
public static class Rehearsal
{
    private const string Hub = "rehearsal";

    /// <summary>Runs the rehearsal and returns how many commands were answered; the scratch state is removed.</summary>
    public static int Run(ProcessorSettings settings, int replyPartitions, ILoggerFactory loggers)
    {
        var log = loggers.CreateLogger(typeof(Rehearsal));
        var started = Stopwatch.GetTimestamp();
        // Beside the real state (same disk), never inside a task's directory; a rehearsal cut short by a
        // kill leaves it behind, so it is cleared first.
        var scratch = Path.Combine(settings.StateDirectory, "rehearsal");
        Clear(scratch);
        var rehearsing = settings with { StateDirectory = scratch, ReadyFile = null };
        int answered;
        // Silent: the rehearsal's own malformed record must not read as a real one in the processor's log.
        var quiet = NullLoggerFactory.Instance;
        using (var checkpoints = new ChangelogCheckpoints(rehearsing, quiet))
        {
            using var driver = SlotTopology.InMemory(rehearsing, replyPartitions, checkpoints, quiet);
            var commands = driver.CreateInputTopic<string, byte[], StringSerDes, ByteArraySerDes>(settings.Topics.Commands);
            var replies = driver.CreateOutputTopic<string, byte[], StringSerDes, ByteArraySerDes>(settings.Topics.Replies);
            var now = DateTime.UtcNow;
            foreach (var command in Commands(now))
                commands.PipeInput(command.Slot, command.ToByteArray(), now);
            commands.PipeInput(Slot(now), [0xff, 0x01], now);
            answered = replies.ReadKeyValueList().Count();
        }
        Clear(scratch);
        log.LogInformation("Processor {Instance} rehearsed its topology: {Answered} commands answered in {ElapsedMs} ms",
            settings.InstanceName, answered, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return answered;
    }

    /// <summary>One of each kind, so that every path of the decision is compiled: configure, book, hold,
    /// confirm, release, abandon, a re-sent command, close, expire.</summary>
    private static IEnumerable<SlotCommand> Commands(DateTime now)
    {
        var slot = Slot(now);
        var config = new SlotConfig
        {
            Open = true,
            Fleet = { new FleetCounterConfig { Name = "vans", CapacityOrders = 2, Carries = { "bulky" } } },
            Shared = { new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 100 } },
        };
        var holdUntil = new DateTimeOffset(now).AddMinutes(5).ToUnixTimeMilliseconds();
        yield return Command(slot, "configure", c => c.Configure = new ConfigureSlot { Config = config, ChangedBy = Hub });
        var booking = Command(slot, "book", c => c.Reserve = Reserve("r1", holdUntil: 0));
        yield return booking;
        yield return booking;
        yield return Command(slot, "hold", c => c.Reserve = Reserve("r2", holdUntil));
        yield return Command(slot, "full", c => c.Reserve = Reserve("r3", holdUntil: 0));
        yield return Command(slot, "confirm", c => c.Confirm = new Confirm { ReservationId = "r2" });
        yield return Command(slot, "release", c => c.Release = new Release { ReservationId = "r1", Reason = Hub });
        yield return Command(slot, "abandon", c => c.Abandon = new Abandon { ReservationId = "r2", ReserveCommandId = "hold" });
        yield return Command(slot, "close", c => c.SetOpen = new SetSlotOpen { Open = false, ChangedBy = Hub });
        yield return Command(slot, "expire", c => c.ExpireHolds = new ExpireHolds());
    }

    /// <summary>Tomorrow's slot at this hour (a slot starts on the hour).</summary>
    private static string Slot(DateTime now) =>
        SlotKey.Create(Hub, new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero).AddDays(1)).ToString();

    private static Reserve Reserve(string id, long holdUntil) => new()
    {
        ReservationId = id,
        OrderId = id,
        Zone = "z1",
        Needs = new OrderNeeds { Quantities = { ["items"] = 10 } },
        HoldExpiresUnixMs = holdUntil,
    };

    private static SlotCommand Command(string slot, string id, Action<SlotCommand> body)
    {
        var command = new SlotCommand { CommandId = id, Slot = slot, CorrelationId = id, ReplyPartition = 0 };
        body(command);
        return command;
    }

    private static void Clear(string scratch)
    {
        if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true);
    }
}
