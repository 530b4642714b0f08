using System.Data.Common;
using System.Globalization;
using DuckDB.NET.Data;
using Npgsql;

namespace SlotCapacity.Warehouse;

/// <summary>
/// The analytical store: an embedded DuckDB file by default, PostgreSQL when a connection string is
/// given; the same SQL for both. A connection is opened for each write and query and closed after
/// it: a DuckDB file admits one process at a time, so between batches a planner's query (the
/// `query` verb) can open it.
/// </summary>
public sealed class WarehouseStore
{
    private static readonly TimeSpan LockedFor = TimeSpan.FromSeconds(30);
    private const int RowsPerStatement = 100;
    private readonly Func<bool, DbConnection> _connect;

    public string Description { get; }

    private WarehouseStore(string description, Func<bool, DbConnection> connect)
    {
        Description = description;
        _connect = connect;
    }

    public static WarehouseStore DuckDb(string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        return new WarehouseStore($"DuckDB {full}", readOnly => new DuckDBConnection(
            $"Data Source={full}" + (readOnly ? ";ACCESS_MODE=READ_ONLY" : "")));
    }

    public static WarehouseStore Postgres(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return new WarehouseStore($"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database}", _ => new NpgsqlConnection(connectionString));
    }

    /// <summary>Creates the tables and views, and adds any column a table lacks.</summary>
    public void EnsureSchema()
    {
        using var connection = Open(readOnly: false);
        foreach (var statement in WarehouseSchema.Ddl()) Execute(connection, statement);
    }

    /// <summary>Upserts a batch in one transaction: all of it is written or none.</summary>
    public void Write(IReadOnlyList<EventRow> events, IReadOnlyList<SkippedRow> skipped)
    {
        using var connection = Open(readOnly: false);
        using var transaction = connection.BeginTransaction();
        Upsert(connection, WarehouseSchema.Events, events);
        Upsert(connection, WarehouseSchema.EventUnits, events.SelectMany(r => r.Event.SharedUnits.Select(u => (r, u.Key, u.Value))));
        var configs = events.Where(r => r.Event.Config is not null).ToList();
        Upsert(connection, WarehouseSchema.Configs, configs);
        Upsert(connection, WarehouseSchema.ConfigFleet, configs.SelectMany(r => r.Event.Config.Fleet.Select(f => (r, f))));
        Upsert(connection, WarehouseSchema.Skipped, skipped);
        transaction.Commit();
    }

    /// <summary>Runs a query; returns the column names and each row as text.</summary>
    public (List<string> Columns, List<string[]> Rows) Query(string sql)
    {
        using var connection = Open(readOnly: true);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var columns = Enumerable.Range(0, reader.FieldCount).Select(reader.GetName).ToList();
        var rows = new List<string[]>();
        while (reader.Read())
            rows.Add(Enumerable.Range(0, reader.FieldCount).Select(i => reader.IsDBNull(i) ? "" : Text(reader.GetValue(i))).ToArray());
        return (columns, rows);
    }

    private static string Text(object value) => value switch
    {
        DateTime time => time.ToString("yyyy-MM-dd HH:mm:ss.FFF", CultureInfo.InvariantCulture),
        DateOnly date => date.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>Upserts the rows, the last of several rows with one key winning, as a row-by-row write would.</summary>
    private static void Upsert<T>(DbConnection connection, Table<T> table, IEnumerable<T> rows)
    {
        var last = new Dictionary<string, T>(StringComparer.Ordinal);
        foreach (var row in rows) last[table.KeyOf(row)] = row;
        if (last.Count == 0) return;
        if (connection is DuckDBConnection duckDb) StageAndUpsert(duckDb, table, last.Values);
        else UpsertInStatements(connection, table, last.Values);
    }

    /// <summary>
    /// DuckDB: the rows go through its appender into a temporary table, then one INSERT ... SELECT
    /// upserts them all. Multi-row INSERT statements with a parameter per value cost DuckDB ~360 µs
    /// of CPU per event row (binding and planning thousands of parameters); this costs a few.
    /// </summary>
    private static void StageAndUpsert<T>(DuckDBConnection connection, Table<T> table, IEnumerable<T> rows)
    {
        var stage = "staged_" + table.Name;
        Execute(connection, $"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT {table.ColumnNames} FROM {table.Name} LIMIT 0");
        using (var appender = connection.CreateAppender(stage))
        {
            foreach (var row in rows)
            {
                var appended = appender.CreateRow();
                foreach (var column in table.Columns) appended = Append(appended, column.Value(row), table.Name, column.Name);
                appended.EndRow();
            }
        }
        Execute(connection, table.UpsertFrom(stage));
        Execute(connection, $"DROP TABLE {stage}");
    }

    private static IDuckDBAppenderRow Append(IDuckDBAppenderRow row, object? value, string table, string column) => value switch
    {
        null => row.AppendNullValue(),
        string text => row.AppendValue(text),
        long number => row.AppendValue(number),
        int number => row.AppendValue(number),
        bool flag => row.AppendValue(flag),
        DateTime time => row.AppendValue(time),
        _ => throw new InvalidOperationException($"{table}.{column}: no DuckDB appender for values of type {value.GetType().Name}"),
    };

    private static void Execute(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>PostgreSQL: statements of up to <see cref="RowsPerStatement"/> rows.</summary>
    private static void UpsertInStatements<T>(DbConnection connection, Table<T> table, IEnumerable<T> rows)
    {
        foreach (var chunk in rows.Chunk(RowsPerStatement))
        {
            using var command = connection.CreateCommand();
            command.CommandText = table.Upsert(chunk.Length);
            foreach (var row in chunk)
                foreach (var column in table.Columns)
                {
                    var parameter = command.CreateParameter();
                    parameter.Value = column.Value(row) ?? DBNull.Value;
                    command.Parameters.Add(parameter);
                }
            command.ExecuteNonQuery();
        }
    }

    /// <summary>Opens a connection; a DuckDB file held by another process is waited for, then named in the error.</summary>
    private DbConnection Open(bool readOnly)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        for (var attempt = 0; ; attempt++)
        {
            var connection = _connect(readOnly);
            try
            {
                connection.Open();
                return connection;
            }
            catch (DbException e) when (e.Message.Contains("lock", StringComparison.OrdinalIgnoreCase))
            {
                connection.Dispose();
                if (waited.Elapsed > LockedFor)
                    throw new InvalidOperationException($"{Description} is held by another process for over {LockedFor.TotalSeconds:0} s ({e.Message})", e);
                Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(1000, 50 << Math.Min(attempt, 5))));
            }
        }
    }
}
