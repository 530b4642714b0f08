using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Configuration;
using SlotCapacity.Kafka;

namespace SlotCapacity.Warehouse;

/// <summary>Where the warehouse keeps its tables (--db and --postgres override these variables).</summary>
public sealed class WarehouseStoreOptions
{
    [ConfigurationKeyName("WAREHOUSE_DB")]
    public string Db { get; set; } = "warehouse.duckdb";

    /// <summary>A PostgreSQL connection string; when set, used instead of DuckDB.</summary>
    [ConfigurationKeyName("WAREHOUSE_POSTGRES")]
    public string? Postgres { get; set; }

    public WarehouseStore Open() => Postgres is { } connection ? WarehouseStore.Postgres(connection) : WarehouseStore.DuckDb(Db);
}

/// <summary>What the loader reads and how it batches (--group overrides WAREHOUSE_GROUP).</summary>
public sealed class WarehouseOptions : KafkaOptions
{
    private static readonly WarehouseSettings Defaults = new("", new TopicNames(), "");

    /// <summary>Null: {TOPIC_PREFIX}slot-warehouse. A new group loads from the beginning.</summary>
    [ConfigurationKeyName("WAREHOUSE_GROUP")]
    public string? Group { get; set; }

    [ConfigurationKeyName("WAREHOUSE_BATCH_WINDOW_MS"), Range(1, int.MaxValue, ErrorMessage = "must be a positive number of milliseconds")]
    public int BatchWindowMs { get; set; } = (int)Defaults.BatchWindow.TotalMilliseconds;

    public WarehouseSettings ToSettings() =>
        new(KafkaEndpoint.BootstrapServers(BootstrapServers), Topics(), Group ?? TopicPrefix + "slot-warehouse")
        {
            BatchWindow = TimeSpan.FromMilliseconds(BatchWindowMs),
        };
}
