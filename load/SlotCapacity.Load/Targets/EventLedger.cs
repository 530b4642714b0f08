using System.Diagnostics;
using Confluent.Kafka;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// Replays the events topic for the run's slots: every reservation that took capacity
/// (RESERVATION_HELD / RESERVATION_BOOKED), and the running total of every counter in partition
/// order, so an oversell that was later given back still shows as a peak above capacity.
/// Duplicates (a re-delivered command re-emits events with the same event id) count once.
/// </summary>
public sealed class EventLedger
{
    private readonly SlotPlan _plan;
    private readonly HashSet<string> _seenEvents = new(StringComparer.Ordinal);

    public HashSet<string> AcceptedIds { get; } = new(StringComparer.Ordinal);

    /// <summary>Reservations holding capacity after the last event read (id -> slot): taken and not given back.</summary>
    public Dictionary<string, string> Live { get; } = new(StringComparer.Ordinal);
    public Dictionary<(string Slot, CounterKind Kind, string Name), long> Totals { get; } = [];
    public Dictionary<(string Slot, CounterKind Kind, string Name), long> Peaks { get; } = [];
    public List<string> Problems { get; } = [];
    public long Events { get; private set; }

    public EventLedger(SlotPlan plan) => _plan = plan;

    public void Apply(SlotEvent e)
    {
        if (!_plan.ById.TryGetValue(e.Slot, out var slot)) return;
        if (!string.IsNullOrEmpty(e.EventId) && !_seenEvents.Add(e.EventId)) return;
        Events++;
        if (e.Kind is SlotEventKind.ReservationHeld or SlotEventKind.ReservationBooked)
        {
            AcceptedIds.Add(e.ReservationId);
            Live[e.ReservationId] = e.Slot;
        }
        else if (e.Kind is SlotEventKind.ReservationReleased or SlotEventKind.HoldExpired or SlotEventKind.ReservationAbandoned)
        {
            Live.Remove(e.ReservationId);
        }
        if (e.FleetUnits != 0 && !string.IsNullOrEmpty(e.FleetCounter))
        {
            Move((e.Slot, CounterKind.Fleet, e.FleetCounter), e.FleetUnits);
            if (!string.IsNullOrEmpty(e.Zone) && slot.Config.ZoneRules.Any(z => z.Zone == e.Zone && (z.HasMaxOrders || z.Closed)))
                Move((e.Slot, CounterKind.Zone, e.Zone), e.FleetUnits);
        }
        foreach (var (name, units) in e.SharedUnits)
            if (units != 0) Move((e.Slot, CounterKind.Shared, name), units);
    }

    private void Move((string, CounterKind, string) key, long units)
    {
        var total = Totals.GetValueOrDefault(key) + units;
        Totals[key] = total;
        if (total > Peaks.GetValueOrDefault(key)) Peaks[key] = total;
    }

    /// <summary>Reads the topic until every wanted reservation id was seen, or the end plus a timeout.</summary>
    public static EventLedger Read(string bootstrap, string topic, SlotPlan plan, IReadOnlySet<string> wanted, TimeSpan timeout, CancellationToken ct)
    {
        var ledger = new EventLedger(plan);
        var missing = new HashSet<string>(wanted, StringComparer.Ordinal);
        TopicReader.ReadToEnd(bootstrap, topic, timeout, ledger.Problems, (key, value) =>
        {
            if (!plan.ById.ContainsKey(key)) return;
            var e = ProtobufSerde<SlotEvent>.Instance.Deserialize(value, false, new SerializationContext(MessageComponentType.Value, topic));
            ledger.Apply(e);
            if (e.Kind is SlotEventKind.ReservationHeld or SlotEventKind.ReservationBooked) missing.Remove(e.ReservationId);
        }, () => missing.Count == 0, ct);
        return ledger;
    }
}

/// <summary>Reads a whole topic from the beginning with a group-less assignment (no offsets committed).</summary>
internal static class TopicReader
{
    public static void ReadToEnd(string bootstrap, string topic, TimeSpan timeout,
        List<string> problems, Action<string, byte[]> onRecord, Func<bool> satisfied, CancellationToken ct)
    {
        List<int> partitions;
        using (var admin = new AdminClientBuilder(KafkaEndpoint.Secured(new AdminClientConfig { BootstrapServers = bootstrap })).Build())
        {
            var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
            var t = metadata.Topics.FirstOrDefault(x => x.Topic == topic);
            if (t is null || t.Error.IsError || t.Partitions.Count == 0)
            {
                problems.Add($"topic '{topic}' not found on {bootstrap}: {t?.Error.Reason ?? "no metadata"}");
                return;
            }
            partitions = t.Partitions.Select(p => p.PartitionId).ToList();
        }
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = $"slot-load-audit-{Guid.NewGuid():N}",
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnablePartitionEof = true,
            FetchWaitMaxMs = 5,
        };
        using var consumer = new ConsumerBuilder<string, byte[]>(KafkaEndpoint.Secured(config)).Build();
        consumer.Assign(partitions.Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        // An audit over a history the cluster has partly dropped would report its gaps as missing bookings.
        foreach (var partition in partitions)
        {
            var tp = new TopicPartition(topic, partition);
            if (RetainedHistory.Gap(tp, RetainedHistory.StartOffset(consumer, tp, TimeSpan.FromSeconds(10)), 0) is { } gap)
                problems.Add($"incomplete history, the audit cannot see every event: {gap}");
        }
        var atEnd = new HashSet<int>();
        var clock = Stopwatch.StartNew();
        long malformed = 0;
        while (!ct.IsCancellationRequested)
        {
            if (atEnd.Count == partitions.Count && satisfied()) break;
            if (clock.Elapsed > timeout)
            {
                if (atEnd.Count < partitions.Count)
                    problems.Add($"topic '{topic}': reached the end of only {atEnd.Count}/{partitions.Count} partitions in {timeout.TotalSeconds:0} s");
                break;
            }
            var record = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (record is null) continue;
            if (record.IsPartitionEOF)
            {
                atEnd.Add(record.Partition.Value);
                continue;
            }
            atEnd.Remove(record.Partition.Value);
            try
            {
                onRecord(record.Message.Key, record.Message.Value);
            }
            catch (MalformedRecordException)
            {
                malformed++;
            }
        }
        if (malformed > 0) problems.Add($"topic '{topic}': {malformed} records could not be decoded");
        consumer.Close();
    }
}
