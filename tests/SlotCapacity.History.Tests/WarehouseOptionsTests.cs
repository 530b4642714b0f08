using Microsoft.Extensions.Configuration;
using SlotCapacity.Kafka;
using SlotCapacity.Warehouse;

namespace SlotCapacity.History.Tests;

/// <summary>How the warehouse's settings are bound from its variables, and its options laid over them.</summary>
public class WarehouseOptionsTests
{
    private static IConfiguration Configuration(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create(v.Key, v.Value))).Build();

    [Fact]
    public void Unset_variables_take_the_defaults_and_the_group_follows_the_topic_prefix()
    {
        var settings = SettingsBinder.BindValid<WarehouseOptions>(Configuration(("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("TOPIC_PREFIX", "t1."))).ToSettings();
        Assert.Equal(("kafka:9092", "t1.slot-warehouse", new WarehouseSettings("", new TopicNames(), "").BatchWindow), (settings.BootstrapServers, settings.GroupId, settings.BatchWindow));
        Assert.Equal(("warehouse.duckdb", (string?)null), Store(Configuration()));
    }

    [Fact]
    public void A_variable_overrides_its_default_and_a_command_line_option_the_variable()
    {
        var environment = Configuration(("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("WAREHOUSE_GROUP", "g1"), ("WAREHOUSE_BATCH_WINDOW_MS", "5000"), ("WAREHOUSE_DB", "a.duckdb"));
        var settings = SettingsBinder.BindValid<WarehouseOptions>(environment).ToSettings();
        Assert.Equal(("g1", TimeSpan.FromSeconds(5)), (settings.GroupId, settings.BatchWindow));
        Assert.Equal(("a.duckdb", (string?)null), Store(environment));
        // The executable lays --db over WAREHOUSE_DB; an option not given leaves its variable as it is.
        var withOption = SettingsBinder.Environment([new("WAREHOUSE_DB", "b.duckdb"), new("WAREHOUSE_GROUP", null)]);
        Assert.Equal("b.duckdb", Store(withOption).Db);
        Assert.Equal(Environment.GetEnvironmentVariable("WAREHOUSE_GROUP"), withOption["WAREHOUSE_GROUP"]);
    }

    [Fact]
    public void A_bad_batch_window_is_one_line_naming_its_variable()
    {
        var error = Assert.Throws<StartupException>(() => SettingsBinder.BindValid<WarehouseOptions>(
            Configuration(("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"), ("WAREHOUSE_BATCH_WINDOW_MS", "0"))));
        Assert.Equal("WAREHOUSE_BATCH_WINDOW_MS='0': must be a positive number of milliseconds", error.Message);
    }

    private static (string Db, string? Postgres) Store(IConfiguration configuration)
    {
        var options = SettingsBinder.BindValid<WarehouseStoreOptions>(configuration);
        return (options.Db, options.Postgres);
    }
}
