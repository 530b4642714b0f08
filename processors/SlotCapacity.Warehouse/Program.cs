using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using SlotCapacity.Warehouse;

using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
    o.UseUtcTimestamp = true;
}));
var logger = loggers.CreateLogger("warehouse");

var db = new Option<string?>("--db") { Description = "DuckDB file (default: $WAREHOUSE_DB, else warehouse.duckdb)", Recursive = true };
var postgres = new Option<string?>("--postgres") { Description = "PostgreSQL connection string, used instead of DuckDB (default: $WAREHOUSE_POSTGRES)", Recursive = true };
var group = new Option<string?>("--group") { Description = "Consumer group (default: $WAREHOUSE_GROUP, else {TOPIC_PREFIX}slot-warehouse); a new group loads from the beginning" };
var sql = new Argument<string>("SQL") { Description = "The query" };
var query = new Command("query", "Runs one query against the warehouse and prints the rows.") { sql };
var root = new RootCommand("""
    Loads slot-events (KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX, WAREHOUSE_BATCH_WINDOW_MS) into the warehouse
    until SIGTERM or Ctrl-C; `query` reads it.
    """) { db, postgres, group, query };

// The options override the variables they name, and are bound and checked with them.
IConfiguration Configuration(ParseResult parsed) => SettingsBinder.Environment([
    new("WAREHOUSE_DB", parsed.GetValue(db)), new("WAREHOUSE_POSTGRES", parsed.GetValue(postgres)), new("WAREHOUSE_GROUP", parsed.GetValue(group))]);

query.SetAction(parsed =>
{
    var store = SettingsBinder.BindValid<WarehouseStoreOptions>(Configuration(parsed)).Open();
    var (columns, rows) = store.Query(parsed.GetRequiredValue(sql));
    var widths = columns.Select((c, i) => rows.Select(r => r[i].Length).Append(c.Length).Max()).ToList();
    Console.WriteLine(string.Join("  ", columns.Select((c, i) => c.PadRight(widths[i]))));
    foreach (var row in rows) Console.WriteLine(string.Join("  ", row.Select((v, i) => v.PadRight(widths[i]))));
    Console.WriteLine($"({rows.Count} rows)");
    return 0;
});
root.SetAction(async parsed =>
{
    var binder = new SettingsBinder(Configuration(parsed));
    var (storeOptions, options) = (binder.Bind<WarehouseStoreOptions>(), binder.Bind<WarehouseOptions>());
    binder.ThrowIfInvalid();
    var settings = options.ToSettings();
    var store = storeOptions.Open();
    await TopicProvisioner.VerifyAsync(settings.BootstrapServers, [settings.Topics.Specs().Single(s => s.Name == settings.Topics.Events)], TimeSpan.FromSeconds(30));
    using var stop = new CancellationTokenSource();
    using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
    using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
    using var loader = new WarehouseLoader(settings, store, logger);
    loader.Run(stop.Token);
    logger.LogInformation("warehouse stopping: {Loaded} events loaded, {Skipped} records skipped", loader.Loaded, loader.Skipped);
    return 0;
});

try
{
    return await CommandLines.InvokeAsync(root, args);
}
catch (StartupException e)
{
    foreach (var problem in e.Message.Split('\n')) logger.LogCritical("{Reason}", problem);
    return 1;
}
catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or ArgumentException)
{
    logger.LogCritical("warehouse: {Reason}", e.Message);
    return 1;
}
