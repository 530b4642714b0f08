using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using SlotCapacity.Warehouse;

const string usage = """
    usage:
      SlotCapacity.Warehouse [--db FILE.duckdb | --postgres CONNECTION] [--group ID]
          loads slot-events (KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX) until SIGTERM or Ctrl-C
      SlotCapacity.Warehouse query [--db FILE.duckdb | --postgres CONNECTION] "SQL"
          runs one query against the warehouse and prints the rows
    defaults: --db $WAREHOUSE_DB or warehouse.duckdb; --postgres $WAREHOUSE_POSTGRES (when set, used instead of DuckDB);
              --group $WAREHOUSE_GROUP or {TOPIC_PREFIX}slot-warehouse (a new group loads from the beginning)
    """;

using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
    o.UseUtcTimestamp = true;
}));
var logger = loggers.CreateLogger("warehouse");
try
{
    var (positional, options) = Arguments(args);
    var postgres = options.GetValueOrDefault("postgres") ?? Environment.GetEnvironmentVariable("WAREHOUSE_POSTGRES");
    var store = string.IsNullOrWhiteSpace(postgres)
        ? WarehouseStore.DuckDb(options.GetValueOrDefault("db") ?? Environment.GetEnvironmentVariable("WAREHOUSE_DB") ?? "warehouse.duckdb")
        : WarehouseStore.Postgres(postgres);
    switch (positional)
    {
        case ["query", var sql]:
            var (columns, rows) = store.Query(sql);
            var widths = columns.Select((c, i) => rows.Select(r => r[i].Length).Append(c.Length).Max()).ToList();
            Console.WriteLine(string.Join("  ", columns.Select((c, i) => c.PadRight(widths[i]))));
            foreach (var row in rows) Console.WriteLine(string.Join("  ", row.Select((v, i) => v.PadRight(widths[i]))));
            Console.WriteLine($"({rows.Count} rows)");
            return 0;
        case []:
            var topics = TopicNames.FromEnvironment();
            var settings = new WarehouseSettings(KafkaEndpoint.BootstrapServers(), topics,
                options.GetValueOrDefault("group") ?? Environment.GetEnvironmentVariable("WAREHOUSE_GROUP") ?? topics.Prefix + "slot-warehouse");
            if (Environment.GetEnvironmentVariable("WAREHOUSE_BATCH_WINDOW_MS") is { } window)
                settings = settings with
                {
                    BatchWindow = int.TryParse(window, out var ms) && ms > 0 ? TimeSpan.FromMilliseconds(ms)
                        : throw new ArgumentException($"WAREHOUSE_BATCH_WINDOW_MS='{window}' is not a positive number of milliseconds"),
                };
            await TopicProvisioner.VerifyAsync(settings.BootstrapServers, [topics.Specs().Single(s => s.Name == topics.Events)], TimeSpan.FromSeconds(30));
            using (var stop = new CancellationTokenSource())
            using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); }))
            using (PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); }))
            using (var loader = new WarehouseLoader(settings, store, logger))
            {
                loader.Run(stop.Token);
                logger.LogInformation("warehouse stopping: {Loaded} events loaded, {Skipped} records skipped", loader.Loaded, loader.Skipped);
            }
            return 0;
        default:
            Console.Error.WriteLine(usage);
            return 2;
    }
}
catch (StartupException e)
{
    logger.LogCritical("{Reason}", e.Message);
    return 1;
}
catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or ArgumentException)
{
    logger.LogCritical("warehouse: {Reason}", e.Message);
    return 1;
}

static (string[] Positional, Dictionary<string, string> Options) Arguments(string[] args)
{
    var positional = new List<string>();
    var options = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) positional.Add(args[i]);
        else if (i + 1 < args.Length) options[args[i][2..]] = args[++i];
        else throw new ArgumentException($"option {args[i]} needs a value");
    }
    return (positional.ToArray(), options);
}
