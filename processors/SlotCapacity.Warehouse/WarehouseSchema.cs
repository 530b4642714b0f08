using Google.Protobuf;
using SlotCapacity.Contracts;

namespace SlotCapacity.Warehouse;

/// <summary>One event as the loader read it: where it came from and its slot key.</summary>
public sealed record EventRow(SlotEvent Event, SlotKey Slot, int Partition, long Offset);

/// <summary>A record that was not loaded, and why.</summary>
public sealed record SkippedRow(int Partition, long Offset, string Reason);

/// <summary>A column: its name, its SQL type (the same text in DuckDB and PostgreSQL) and its value in a row.</summary>
public sealed record Column<T>(string Name, string SqlType, Func<T, object?> Value);

/// <summary>
/// A table, written by an idempotent upsert on its key. Every column is declared once, here: the
/// loader creates the table with its key, then adds any column the database lacks
/// (ADD COLUMN IF NOT EXISTS), so adding a column is one line and an existing database gains it
/// (rows loaded before show NULL until a replay from the beginning rewrites them).
/// </summary>
public sealed record Table<T>(string Name, IReadOnlyList<string> Key, IReadOnlyList<Column<T>> Columns)
{
    public IEnumerable<string> Ddl()
    {
        var keyColumns = Key.Select(k => Columns.Single(c => c.Name == k));
        yield return $"CREATE TABLE IF NOT EXISTS {Name} ({string.Join(", ", keyColumns.Select(c => $"{c.Name} {c.SqlType} NOT NULL"))}, PRIMARY KEY ({string.Join(", ", Key)}))";
        foreach (var column in Columns.Where(c => !Key.Contains(c.Name)))
            yield return $"ALTER TABLE {Name} ADD COLUMN IF NOT EXISTS {column.Name} {column.SqlType}";
    }

    /// <summary>INSERT of <paramref name="rows"/> rows with positional parameters ($1...); a row already
    /// there is overwritten with the same values, so writing an event twice leaves one row.</summary>
    public string Upsert(int rows)
    {
        var values = string.Join(", ", Enumerable.Range(0, rows).Select(r =>
            "(" + string.Join(", ", Columns.Select((_, i) => $"${r * Columns.Count + i + 1}")) + ")"));
        return $"INSERT INTO {Name} ({ColumnNames}) VALUES {values} {OnConflict}";
    }

    /// <summary>The same upsert of every row of <paramref name="source"/>, a table with these columns.</summary>
    public string UpsertFrom(string source) => $"INSERT INTO {Name} ({ColumnNames}) SELECT {ColumnNames} FROM {source} {OnConflict}";

    public string ColumnNames => string.Join(", ", Columns.Select(c => c.Name));

    private string OnConflict
    {
        get
        {
            var updates = Columns.Where(c => !Key.Contains(c.Name)).Select(c => $"{c.Name} = EXCLUDED.{c.Name}").ToList();
            var action = updates.Count == 0 ? "DO NOTHING" : "DO UPDATE SET " + string.Join(", ", updates);
            return $"ON CONFLICT ({string.Join(", ", Key)}) {action}";
        }
    }

    /// <summary>The row's key, to keep one row per key in a statement (neither database lets one
    /// INSERT change a row twice).</summary>
    public string KeyOf(T row) => string.Join("\u0000", Key.Select(k => Convert.ToString(Columns.Single(c => c.Name == k).Value(row), System.Globalization.CultureInfo.InvariantCulture)));
}

/// <summary>
/// The warehouse's tables (documented in processors/README.md, "Warehouse tables"). Times are UTC
/// TIMESTAMP (without zone: the same type in DuckDB and PostgreSQL); names are the event kind
/// without its prefix, e.g. RESERVATION_BOOKED.
/// </summary>
public static class WarehouseSchema
{
    /// <summary>One row per event id, whatever the number of times it was delivered.</summary>
    public static readonly Table<EventRow> Events = new("slot_events", ["event_id"],
    [
        new("event_id", "TEXT", r => r.Event.EventId),
        new("hub", "TEXT", r => r.Slot.Hub),
        new("slot", "TEXT", r => r.Event.Slot),
        new("slot_start", "TIMESTAMP", r => Time(r.Slot.Start)),
        new("kind", "TEXT", r => KindName(r.Event.Kind)),
        new("occurred_at", "TIMESTAMP", r => Time(r.Event.OccurredUnixMs)),
        // How long before the slot starts the change happened (negative: after the start).
        new("lead_minutes", "BIGINT", r => (long)Math.Floor((r.Slot.Start - DateTimeOffset.FromUnixTimeMilliseconds(r.Event.OccurredUnixMs)).TotalMinutes)),
        new("command_id", "TEXT", r => Text(r.Event.CommandId)),
        new("reservation_id", "TEXT", r => Text(r.Event.ReservationId)),
        new("order_id", "TEXT", r => Text(r.Event.OrderId)),
        new("zone", "TEXT", r => Text(r.Event.Zone)),
        new("fleet_counter", "TEXT", r => Text(r.Event.FleetCounter)),
        new("fleet_units", "BIGINT", r => r.Event.FleetUnits),
        new("reason", "TEXT", r => Text(r.Event.Reason)),
        new("hold_expires_at", "TIMESTAMP", r => r.Event.HoldExpiresUnixMs == 0 ? null : Time(r.Event.HoldExpiresUnixMs)),
        new("source_partition", "INTEGER", r => r.Partition),
        new("source_offset", "BIGINT", r => r.Offset),
    ]);

    /// <summary>Shared-counter units each reservation event drew (positive) or gave back (negative).</summary>
    public static readonly Table<(EventRow Row, string Counter, long Units)> EventUnits = new("slot_event_units", ["event_id", "shared_counter"],
    [
        new("event_id", "TEXT", u => u.Row.Event.EventId),
        new("shared_counter", "TEXT", u => u.Counter),
        new("units", "BIGINT", u => u.Units),
    ]);

    /// <summary>Every configuration a slot was given (SLOT_CONFIGURED: a plan, a change, an open or close).</summary>
    public static readonly Table<EventRow> Configs = new("slot_configs", ["event_id"],
    [
        new("event_id", "TEXT", r => r.Event.EventId),
        new("hub", "TEXT", r => r.Slot.Hub),
        new("slot", "TEXT", r => r.Event.Slot),
        new("slot_start", "TIMESTAMP", r => Time(r.Slot.Start)),
        new("occurred_at", "TIMESTAMP", r => Time(r.Event.OccurredUnixMs)),
        new("open", "BOOLEAN", r => r.Event.Config.Open),
        new("cutoff_at", "TIMESTAMP", r => r.Event.Config.CutoffUnixMs == 0 ? null : Time(r.Event.Config.CutoffUnixMs)),
        new("capacity_orders", "BIGINT", r => r.Event.Config.Fleet.Sum(f => f.CapacityOrders)),
        new("config_json", "TEXT", r => JsonFormatter.Default.Format(r.Event.Config)),
        new("source_partition", "INTEGER", r => r.Partition),
        new("source_offset", "BIGINT", r => r.Offset),
    ]);

    /// <summary>The fleet counters of each configuration.</summary>
    public static readonly Table<(EventRow Row, FleetCounterConfig Fleet)> ConfigFleet = new("slot_config_fleet", ["event_id", "fleet_counter"],
    [
        new("event_id", "TEXT", f => f.Row.Event.EventId),
        new("fleet_counter", "TEXT", f => f.Fleet.Name),
        new("capacity_orders", "BIGINT", f => f.Fleet.CapacityOrders),
        new("zones", "TEXT", f => string.Join(",", f.Fleet.Zones)),
        new("carries", "TEXT", f => string.Join(",", f.Fleet.Carries)),
    ]);

    /// <summary>Records of the topic that were not loaded (malformed, unusable, or a gap in the topic's history).</summary>
    public static readonly Table<SkippedRow> Skipped = new("skipped_records", ["source_partition", "source_offset"],
    [
        new("source_partition", "INTEGER", s => s.Partition),
        new("source_offset", "BIGINT", s => s.Offset),
        new("reason", "TEXT", s => s.Reason),
    ]);

    /// <summary>
    /// Views every query builds on; standard SQL that DuckDB and PostgreSQL both run. Records of one
    /// slot are in one partition, so the source offset orders its changes.
    /// </summary>
    public static readonly IReadOnlyList<string> Views =
    [
        """
        CREATE OR REPLACE VIEW slot_capacity AS
        SELECT c.* FROM slot_configs c
        WHERE NOT EXISTS (SELECT 1 FROM slot_configs n WHERE n.slot = c.slot AND n.source_offset > c.source_offset)
        """,
        """
        CREATE OR REPLACE VIEW reservations AS
        SELECT slot, reservation_id, MIN(hub) AS hub, MIN(slot_start) AS slot_start, MIN(order_id) AS order_id,
               MIN(zone) AS zone, MIN(fleet_counter) AS fleet_counter,
               MIN(CASE WHEN kind IN ('RESERVATION_HELD', 'RESERVATION_BOOKED') THEN occurred_at END) AS reserved_at,
               MIN(CASE WHEN kind IN ('RESERVATION_HELD', 'RESERVATION_BOOKED') THEN lead_minutes END) AS reserved_lead_minutes,
               MIN(CASE WHEN kind = 'RESERVATION_HELD' THEN occurred_at END) AS held_at,
               MIN(CASE WHEN kind IN ('RESERVATION_BOOKED', 'RESERVATION_CONFIRMED') THEN occurred_at END) AS booked_at,
               MIN(CASE WHEN fleet_units < 0 THEN occurred_at END) AS ended_at,
               MIN(CASE WHEN fleet_units < 0 THEN kind END) AS end_kind,
               MIN(CASE WHEN fleet_units < 0 THEN reason END) AS end_reason
        FROM slot_events WHERE reservation_id IS NOT NULL
        GROUP BY slot, reservation_id
        """,
    ];

    public static IEnumerable<string> Ddl() =>
        Events.Ddl().Concat(EventUnits.Ddl()).Concat(Configs.Ddl()).Concat(ConfigFleet.Ddl()).Concat(Skipped.Ddl()).Concat(Views);

    private static string KindName(SlotEventKind kind) => kind switch
    {
        SlotEventKind.ReservationHeld => "RESERVATION_HELD",
        SlotEventKind.ReservationBooked => "RESERVATION_BOOKED",
        SlotEventKind.ReservationConfirmed => "RESERVATION_CONFIRMED",
        SlotEventKind.ReservationReleased => "RESERVATION_RELEASED",
        SlotEventKind.HoldExpired => "HOLD_EXPIRED",
        SlotEventKind.ReservationAbandoned => "RESERVATION_ABANDONED",
        SlotEventKind.SlotConfigured => "SLOT_CONFIGURED",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "checked by SlotEventCheck before loading"),
    };

    private static string? Text(string value) => value.Length == 0 ? null : value;

    // Kind Unspecified: PostgreSQL's TIMESTAMP (without zone) refuses a UTC DateTime; every time here is UTC.
    private static DateTime Time(long unixMs) => DateTime.SpecifyKind(DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime, DateTimeKind.Unspecified);

    private static DateTime Time(DateTimeOffset at) => DateTime.SpecifyKind(at.UtcDateTime, DateTimeKind.Unspecified);
}
