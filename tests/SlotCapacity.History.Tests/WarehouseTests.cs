using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Contracts;
using SlotCapacity.Warehouse;
using Xunit.Abstractions;

namespace SlotCapacity.History.Tests;

/// <summary>
/// The warehouse loader against the test broker and a DuckDB file per test: exactly once by event id
/// across a crash between the write and the offset commit, the same tables from a replay, malformed
/// records skipped and counted, and a column added to an existing database.
/// </summary>
public sealed class WarehouseTests(ITestOutputHelper output) : IDisposable
{
    private static readonly string[] Tables = ["slot_events", "slot_event_units", "slot_configs", "slot_config_fleet", "skipped_records"];
    private readonly string folder = Path.Combine(Path.GetTempPath(), "warehouse-tests", Guid.NewGuid().ToString("N"));

    private WarehouseStore Store(string name) => WarehouseStore.DuckDb(Path.Combine(folder, name + ".duckdb"));

    /// <summary>A schema of its own in the PostgreSQL database WAREHOUSE_TEST_POSTGRES names.</summary>
    private static WarehouseStore Postgres(string name)
    {
        var connection = Environment.GetEnvironmentVariable(PostgresFactAttribute.Variable)!;
        var schema = $"warehouse_{name}_{Guid.NewGuid():N}"[..40];
        using (var admin = new Npgsql.NpgsqlConnection(connection))
        {
            admin.Open();
            using var command = admin.CreateCommand();
            command.CommandText = $"CREATE SCHEMA {schema}";
            command.ExecuteNonQuery();
        }
        return WarehouseStore.Postgres(connection + $";Search Path={schema}");
    }

    [Fact]
    public Task A_crash_between_the_write_and_the_offset_commit_loses_and_duplicates_nothing() => CrashAndReplay(Store);

    [PostgresFact]
    public Task PostgreSQL_a_crash_between_the_write_and_the_offset_commit_loses_and_duplicates_nothing() => CrashAndReplay(Postgres);

    [Fact]
    public Task The_tables_answer_the_planners_questions() => Questions(Store("questions"));

    [PostgresFact]
    public Task PostgreSQL_the_tables_answer_the_planners_questions() => Questions(Postgres("questions"));

    private async Task CrashAndReplay(Func<string, WarehouseStore> storeNamed)
    {
        var duplicate = (0, EngineEvents.Bytes(EngineEvents.Events(EngineEvents.Day())[3]));
        var written = await TopicEvents.WriteAsync(duplicate, (1, [0xFF, 0xFF, 0xFF]), (1, EngineEvents.Bytes(new SlotEvent { Slot = "hub-a@2030-05-06T10:00Z" })));
        var settings = new WarehouseSettings(written.Broker.BootstrapServers, written.Topics, "warehouse-" + Guid.NewGuid().ToString("N"));
        var store = storeNamed("crashed");

        // The first loader writes what it consumed, then dies before committing the offsets.
        using (var crashed = new WarehouseLoader(settings, store, NullLogger.Instance))
        {
            LoadBatch? batch = null;
            for (var attempt = 0; attempt < 60 && batch is null; attempt++) batch = crashed.Poll(TimeSpan.FromSeconds(1), CancellationToken.None);
            Assert.NotNull(batch);
            crashed.Write(batch);
            output.WriteLine($"written, not committed: {batch.Records} records");
        }
        Assert.True(Count(store, "slot_events") > 0);

        // A fresh loader in the same group reads the uncommitted records again.
        var again = LoadAll(settings, store);
        Assert.True(again >= written.Events.Count + 3, $"the restarted loader read {again} records");

        Assert.Equal(written.Events.Count, Count(store, "slot_events"));
        Assert.Equal(written.Events.Select(e => e.EventId).Order(StringComparer.Ordinal), Column(store, "SELECT event_id FROM slot_events ORDER BY event_id"));
        Assert.Equal(2, Count(store, "skipped_records"));
        Assert.Equal(written.Events.Sum(e => e.SharedUnits.Count), Count(store, "slot_event_units"));
        Assert.Equal(written.Events.Count(e => e.Kind == SlotEventKind.SlotConfigured), Count(store, "slot_configs"));

        // A replay from the beginning, into a fresh database and over the loaded one, gives the same tables.
        var fresh = storeNamed("fresh");
        LoadAll(settings with { GroupId = "warehouse-" + Guid.NewGuid().ToString("N") }, fresh);
        LoadAll(settings with { GroupId = "warehouse-" + Guid.NewGuid().ToString("N") }, store);
        foreach (var table in Tables)
        {
            Assert.Equal(Dump(fresh, table), Dump(store, table));
            output.WriteLine($"{table}: {Dump(store, table).Count} rows");
        }
    }

    private async Task Questions(WarehouseStore store)
    {
        var written = await TopicEvents.WriteAsync();
        LoadAll(new WarehouseSettings(written.Broker.BootstrapServers, written.Topics, "warehouse-" + Guid.NewGuid().ToString("N")), store);

        // Bookings per hub per day: held-1 (confirmed), booked-1 (abandoned later), booked-2 (released), booked-3.
        var perDay = store.Query("""
            SELECT hub, CAST(CAST(slot_start AS DATE) AS TEXT) AS day, COUNT(*) AS bookings
            FROM slot_events WHERE kind IN ('RESERVATION_BOOKED', 'RESERVATION_CONFIRMED')
            GROUP BY hub, day ORDER BY hub, day
            """).Rows;
        Assert.Equal([["hub-a", "2030-05-06", "4"], ["hub-b", "2030-05-06", "4"]], perDay);

        var reservations = store.Query("SELECT reservation_id, held_at IS NOT NULL, booked_at IS NOT NULL, end_kind FROM reservations WHERE hub = 'hub-a' ORDER BY reservation_id").Rows;
        Assert.Equal(
            [
                ["booked-1", "False", "True", "RESERVATION_ABANDONED"], ["booked-2", "False", "True", "RESERVATION_RELEASED"], ["booked-3", "False", "True", ""],
                ["held-1", "True", "True", ""], ["held-2", "True", "False", "HOLD_EXPIRED"], ["held-3", "True", "False", ""], ["never-arrived", "False", "False", ""],
            ], reservations);

        // The latest configuration of each slot: lowered and closed.
        var capacity = store.Query("SELECT slot, capacity_orders, open FROM slot_capacity ORDER BY slot").Rows;
        Assert.Equal([["hub-a@2030-05-06T10:00Z", "3", "False"], [TopicEvents.SecondSlot, "3", "False"]], capacity);
    }

    [Fact]
    public async Task A_loader_reading_in_rounds_loads_every_event_written_between_them_once_and_reports_no_gap()
    {
        var written = await TopicEvents.WriteAsync();
        var settings = new WarehouseSettings(written.Broker.BootstrapServers, written.Topics, "warehouse-" + Guid.NewGuid().ToString("N"))
        {
            BatchWindow = TimeSpan.FromMilliseconds(500),
        };
        var store = Store("rounds");
        var events = written.Events.ToList();
        using var loader = new WarehouseLoader(settings, store, NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        var running = Task.Run(() => loader.Run(stop.Token));
        using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig { BootstrapServers = written.Broker.BootstrapServers }).Build();
        for (var wave = 1; wave <= 3; wave++)
        {
            // Everything so far loaded and a round ended since: the next wave is read by a later round.
            var rounds = loader.Rounds;
            await Until(() => loader.Loaded >= events.Count && loader.Rounds > rounds, () => $"wave {wave}: {loader.Loaded} of {events.Count} events loaded, {loader.Rounds} rounds");
            var more = EngineEvents.Moved(written.Events.Where(e => e.Slot != TopicEvents.SecondSlot), $"hub-c{wave}@2030-05-06T14:00Z", 10 + wave);
            foreach (var e in more)
                await producer.ProduceAsync(new TopicPartition(written.Topics.Events, wave % 2), new Message<string, byte[]> { Key = e.Slot, Value = EngineEvents.Bytes(e) });
            events.AddRange(more);
        }
        await Until(() => loader.Loaded >= events.Count, () => $"{loader.Loaded} of {events.Count} events loaded");
        await stop.CancelAsync();
        await running;
        output.WriteLine($"{loader.Loaded} events loaded in {loader.Rounds} rounds");

        Assert.True(loader.Rounds >= 3, $"{loader.Rounds} rounds");
        Assert.Equal(events.Count, loader.Loaded);
        Assert.Equal(events.Select(e => e.EventId).Order(StringComparer.Ordinal), Column(store, "SELECT event_id FROM slot_events ORDER BY event_id"));
        Assert.Equal(0, Count(store, "skipped_records"));
    }

    [Fact]
    public async Task Stopping_a_loader_between_rounds_does_not_wait_out_the_pause()
    {
        var written = await TopicEvents.WriteAsync();
        var settings = new WarehouseSettings(written.Broker.BootstrapServers, written.Topics, "warehouse-" + Guid.NewGuid().ToString("N"))
        {
            BatchWindow = TimeSpan.FromMinutes(10),
        };
        using var loader = new WarehouseLoader(settings, Store("stop"), NullLogger.Instance);
        using var stop = new CancellationTokenSource();
        var running = Task.Run(() => loader.Run(stop.Token));
        await Until(() => loader.Rounds >= 1, () => $"no round ended: {loader.Loaded} events loaded");

        await stop.CancelAsync();
        // A loader that waited out its pause would take ten minutes.
        Assert.Same(running, await Task.WhenAny(running, Task.Delay(TimeSpan.FromMinutes(2))));
        Assert.Equal(written.Events.Count, loader.Loaded);
    }

    /// <summary>Polls <paramref name="condition"/> for up to 60 s.</summary>
    private static async Task Until(Func<bool> condition, Func<string> state)
    {
        for (var i = 0; i < 600 && !condition(); i++) await Task.Delay(100);
        Assert.True(condition(), state());
    }

    [Fact]
    public void A_column_added_to_the_schema_is_added_to_an_existing_database()
    {
        var store = Store("older");
        Directory.CreateDirectory(folder);
        using (var older = new DuckDB.NET.Data.DuckDBConnection($"Data Source={Path.Combine(folder, "older.duckdb")}"))
        {
            older.Open();
            using var command = older.CreateCommand();
            command.CommandText = "CREATE TABLE slot_events (event_id TEXT NOT NULL, hub TEXT, PRIMARY KEY (event_id)); INSERT INTO slot_events VALUES ('0:0:0', 'hub-a')";
            command.ExecuteNonQuery();
        }

        store.EnsureSchema();

        var columns = Column(store, "SELECT column_name FROM information_schema.columns WHERE table_name = 'slot_events' ORDER BY ordinal_position");
        Assert.Equal(WarehouseSchema.Events.Columns.Select(c => c.Name).Order(StringComparer.Ordinal), columns.Order(StringComparer.Ordinal));
        Assert.Equal(["0:0:0|hub-a|"], Column(store, "SELECT event_id || '|' || hub || '|' || COALESCE(kind, '') FROM slot_events"));
    }

    /// <summary>Loads until the loader has read to the end of the topic and committed; returns the records read.</summary>
    private long LoadAll(WarehouseSettings settings, WarehouseStore store)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var loader = new WarehouseLoader(settings, store, NullLogger.Instance);
        long read = 0;
        var idle = 0;
        for (var attempt = 0; attempt < 120 && idle < 1; attempt++)
        {
            var batch = loader.Poll(TimeSpan.FromSeconds(1), CancellationToken.None);
            if (batch is null)
            {
                if (read > 0) idle++;
                continue;
            }
            idle = 0;
            loader.Write(batch);
            loader.Commit(batch);
            read += batch.Records;
        }
        Assert.True(read > 0, "the loader read nothing in 120 s");
        output.WriteLine($"loaded {read} records into {store.Description} in {clock.ElapsedMilliseconds} ms");
        return read;
    }

    private static long Count(WarehouseStore store, string table) => long.Parse(store.Query($"SELECT COUNT(*) FROM {table}").Rows[0][0], System.Globalization.CultureInfo.InvariantCulture);

    private static List<string> Column(WarehouseStore store, string sql) => store.Query(sql).Rows.Select(r => r[0]).ToList();

    private static List<string> Dump(WarehouseStore store, string table) =>
        store.Query($"SELECT * FROM {table}").Rows.Select(r => string.Join("|", r)).Order(StringComparer.Ordinal).ToList();

    public void Dispose()
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
            // Nothing was written.
        }
    }
}

/// <summary>A test that needs a PostgreSQL server: skipped unless WAREHOUSE_TEST_POSTGRES holds a connection string.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public const string Variable = "WAREHOUSE_TEST_POSTGRES";

    public PostgresFactAttribute()
    {
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(Variable)))
            Skip = $"{Variable} is not set: no PostgreSQL server to test the warehouse against";
    }
}
