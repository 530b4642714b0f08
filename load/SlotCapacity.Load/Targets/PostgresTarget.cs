using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// The peer "PostgreSQL with a conditional UPDATE": counters are rows, and a reservation is one
/// call of a PL/pgSQL function that locks the slot row, runs `UPDATE ... SET used = used + n WHERE used + n &lt;= capacity`
/// on the slot's zone, shared and fleet rows, all or nothing, and records the reservation row.
/// One round trip per reservation (what a careful user would write). The harness runs its own
/// cluster (initdb + pg_ctl, as the postgres user when run as root) on a loopback port in a temp
/// dir, with default durability (fsync on, synchronous_commit on).
/// </summary>
public sealed class PostgresTarget : ITarget
{
    public const int PoolSize = 32;

    private const string Schema = """
        CREATE TABLE slot (slot text PRIMARY KEY, hub text NOT NULL, start_at timestamptz NOT NULL, open boolean NOT NULL);
        CREATE INDEX slot_hub_start ON slot (hub, start_at);
        CREATE TABLE fleet_counter (slot text NOT NULL, ord int NOT NULL, name text NOT NULL, capacity bigint NOT NULL,
            used bigint NOT NULL DEFAULT 0, zones text[] NOT NULL, carries text[] NOT NULL, PRIMARY KEY (slot, name));
        CREATE TABLE shared_counter (slot text NOT NULL, name text NOT NULL, measure text NOT NULL, capacity bigint NOT NULL,
            used bigint NOT NULL DEFAULT 0, PRIMARY KEY (slot, name));
        CREATE TABLE zone_rule (slot text NOT NULL, zone text NOT NULL, closed boolean NOT NULL, max_orders bigint,
            used bigint NOT NULL DEFAULT 0, PRIMARY KEY (slot, zone));
        CREATE TABLE reservation (reservation_id text PRIMARY KEY, slot text NOT NULL, fleet text NOT NULL,
            zone text NOT NULL, items bigint NOT NULL, totes bigint NOT NULL);

        CREATE FUNCTION reserve(p_slot text, p_id text, p_zone text, p_requires text[], p_items bigint, p_totes bigint)
        RETURNS text LANGUAGE plpgsql AS $$
        DECLARE
          v_prev text; v_closed boolean; v_max bigint; v_fleet text; v_rows int; v_shared int;
        BEGIN
          SELECT fleet INTO v_prev FROM reservation WHERE reservation_id = p_id;
          IF FOUND THEN RETURN 'OK:' || v_prev; END IF;
          -- One lock per slot, taken first: the counter rows below are then updated by one
          -- reservation at a time, in no particular physical order, without deadlocks.
          PERFORM 1 FROM slot WHERE slot = p_slot AND open FOR UPDATE;
          IF NOT FOUND THEN RETURN 'SLOT_CLOSED'; END IF;
          SELECT closed, max_orders INTO v_closed, v_max FROM zone_rule WHERE slot = p_slot AND zone = p_zone;
          IF v_closed THEN RETURN 'ZONE_RESTRICTED'; END IF;
          PERFORM 1 FROM fleet_counter WHERE slot = p_slot
            AND (cardinality(zones) = 0 OR p_zone = ANY (zones)) AND carries @> p_requires;
          IF NOT FOUND THEN RETURN 'NO_ELIGIBLE_FLEET'; END IF;
          BEGIN
            IF v_max IS NOT NULL THEN
              UPDATE zone_rule SET used = used + 1 WHERE slot = p_slot AND zone = p_zone AND used + 1 <= max_orders;
              IF NOT FOUND THEN RAISE EXCEPTION 'ZONE_FULL'; END IF;
            END IF;
            UPDATE shared_counter SET used = used + CASE measure WHEN 'items' THEN p_items WHEN 'totes' THEN p_totes ELSE 0 END
              WHERE slot = p_slot AND used + CASE measure WHEN 'items' THEN p_items WHEN 'totes' THEN p_totes ELSE 0 END <= capacity;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            SELECT count(*) INTO v_shared FROM shared_counter WHERE slot = p_slot;
            IF v_rows < v_shared THEN RAISE EXCEPTION 'SLOT_FULL'; END IF;
            UPDATE fleet_counter SET used = used + 1
              WHERE slot = p_slot AND used + 1 <= capacity AND name = (
                SELECT name FROM fleet_counter WHERE slot = p_slot AND used < capacity
                  AND (cardinality(zones) = 0 OR p_zone = ANY (zones)) AND carries @> p_requires
                ORDER BY capacity - used DESC, name COLLATE "C" LIMIT 1)
              RETURNING name INTO v_fleet;
            IF v_fleet IS NULL THEN RAISE EXCEPTION 'SLOT_FULL'; END IF;
            INSERT INTO reservation VALUES (p_id, p_slot, v_fleet, p_zone, p_items, p_totes);
            RETURN 'OK:' || v_fleet;
          EXCEPTION WHEN raise_exception THEN
            RETURN SQLERRM;
          END;
        END $$;
        """;

    // What checkout shows for a day of one hub: for each slot, whether this order would fit, by the
    // same rules as reserve().
    private const string ReadSql = """
        SELECT s.slot,
          s.open AND NOT coalesce(z.closed, false) AND (z.max_orders IS NULL OR z.used + 1 <= z.max_orders)
          AND EXISTS (SELECT 1 FROM fleet_counter f WHERE f.slot = s.slot AND f.used < f.capacity
                      AND (cardinality(f.zones) = 0 OR $4 = ANY (f.zones)) AND f.carries @> $5)
          AND NOT EXISTS (SELECT 1 FROM shared_counter c WHERE c.slot = s.slot
                      AND c.used + CASE c.measure WHEN 'items' THEN $6 WHEN 'totes' THEN $7 ELSE 0 END > c.capacity)
        FROM slot s LEFT JOIN zone_rule z ON z.slot = s.slot AND z.zone = $4
        WHERE s.hub = $1 AND s.start_at >= $2 AND s.start_at < $3
        """;

    private readonly string _binDir;
    private readonly bool _synchronousCommit;
    private string? _dir;
    private int _port;
    private NpgsqlDataSource? _data;
    private bool _started;

    /// <param name="synchronousCommit">false = "postgres-async": commits return before the WAL is
    /// flushed (up to ~0.6 s of accepted bookings lost on a crash, like Redis's everysec), which lifts
    /// the one-fsync-per-commit ceiling on a hot row.</param>
    public PostgresTarget(bool synchronousCommit = true, string? binDir = null)
    {
        _synchronousCommit = synchronousCommit;
        _binDir = binDir ?? FindBinDir()
            ?? throw new InvalidOperationException("PostgreSQL is not installed: run `make bench-deps` (load/bench-deps.sh)");
    }

    public string Name => _synchronousCommit ? "postgres" : "postgres-async";
    public string Endpoint => $"127.0.0.1:{_port}";
    public string Notes => $"PostgreSQL {Path.GetFileName(Path.GetDirectoryName(_binDir))}, one PL/pgSQL call (conditional UPDATEs) per reservation, one SQL query per availability read; {(_synchronousCommit ? "default durability (fsync, synchronous_commit on)" : "synchronous_commit off (fsync on, commits not waiting for it)")}; pool of {PoolSize} connections";

    private static string? FindBinDir() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "pg_ctl")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;

    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>Runs a postgres tool as the postgres user when we are root (postgres refuses root).</summary>
    private Task<string> PgAsync(string tool, IEnumerable<string> args, TimeSpan timeout, CancellationToken ct) =>
        IsRoot
            ? LocalProcess.RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_binDir, tool), .. args], timeout, ct)
            : LocalProcess.RunAsync(Path.Combine(_binDir, tool), args, timeout, ct);

    public async Task PrepareAsync(SlotPlan plan, CancellationToken ct)
    {
        _port = LocalProcess.FreeLoopbackPort();
        _dir = LocalProcess.MakeTempDir("postgres");
        if (IsRoot) await LocalProcess.RunAsync("chown", ["postgres:postgres", _dir], TimeSpan.FromSeconds(10), ct);
        var data = Path.Combine(_dir, "data");
        await PgAsync("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"], TimeSpan.FromSeconds(60), ct);
        await PgAsync("pg_ctl", ["-D", data, "-l", Path.Combine(_dir, "postgres.log"), "-w", "-t", "30", "-o",
            $"-p {_port} -k {_dir} -c listen_addresses=127.0.0.1 -c max_connections={PoolSize + 10} -c synchronous_commit={(_synchronousCommit ? "on" : "off")}", "start"],
            TimeSpan.FromSeconds(40), ct);
        _started = true;
        // postmaster.pid's first line is the postmaster's pid.
        if (int.TryParse(File.ReadLines(Path.Combine(data, "postmaster.pid")).FirstOrDefault(), out var postmaster))
            Processes = [new WatchedProcess("postgres", postmaster, WithChildren: true)];
        _data = NpgsqlDataSource.Create(
            $"Host=127.0.0.1;Port={_port};Username=postgres;Database=postgres;Maximum Pool Size={PoolSize};Minimum Pool Size={PoolSize};" +
            "Timeout=5;Command Timeout=5;Max Auto Prepare=10;No Reset On Close=true");

        await using var conn = await _data.OpenConnectionAsync(ct);
        await using (var create = new NpgsqlCommand(Schema, conn)) await create.ExecuteNonQueryAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        var batch = new NpgsqlBatch(conn, tx);
        foreach (var slot in plan.Slots)
        {
            var c = slot.Config;
            batch.BatchCommands.Add(Command("INSERT INTO slot VALUES ($1, $2, $3, $4)", slot.Id, slot.Key.Hub, slot.Key.Start, c.Open));
            for (var i = 0; i < c.Fleet.Count; i++)
            {
                var f = c.Fleet[i];
                batch.BatchCommands.Add(Command("INSERT INTO fleet_counter (slot, ord, name, capacity, zones, carries) VALUES ($1, $2, $3, $4, $5, $6)",
                    slot.Id, i, f.Name, f.CapacityOrders, f.Zones.ToArray(), f.Carries.ToArray()));
            }
            foreach (var s in c.Shared)
                batch.BatchCommands.Add(Command("INSERT INTO shared_counter (slot, name, measure, capacity) VALUES ($1, $2, $3, $4)",
                    slot.Id, s.Name, s.Measure, s.Capacity));
            foreach (var z in c.ZoneRules)
                batch.BatchCommands.Add(Command("INSERT INTO zone_rule (slot, zone, closed, max_orders) VALUES ($1, $2, $3, $4)",
                    slot.Id, z.Zone, z.Closed, z.HasMaxOrders ? z.MaxOrders : DBNull.Value));
        }
        await batch.ExecuteNonQueryAsync(ct);
        await tx.CommitAsync(ct);
        await using (var analyze = new NpgsqlCommand("ANALYZE", conn)) await analyze.ExecuteNonQueryAsync(ct);
    }

    private static NpgsqlBatchCommand Command(string sql, params object[] values)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var v in values) command.Parameters.Add(new NpgsqlParameter { Value = v });
        return command;
    }

    /// <summary>The postmaster with its children: backends, WAL writer, checkpointer.</summary>
    public IReadOnlyList<WatchedProcess> Processes { get; private set; } = [];

    public async Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        await using var command = _data!.CreateCommand("SELECT reserve($1, $2, $3, $4, $5, $6)");
        command.Parameters.Add(new NpgsqlParameter { Value = op.Slot.Id });
        command.Parameters.Add(new NpgsqlParameter { Value = op.ReservationId });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Zone });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Requires.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Items });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Totes });
        var answer = (string)(await command.ExecuteScalarAsync(ct))!;
        return answer.StartsWith("OK:", StringComparison.Ordinal)
            ? ReserveOutcome.Accept(answer[3..])
            : ReserveOutcome.Reject(answer);
    }

    public async Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct)
    {
        await using var command = _data!.CreateCommand(ReadSql);
        command.Parameters.Add(new NpgsqlParameter { Value = op.Hub });
        command.Parameters.Add(new NpgsqlParameter { Value = op.From });
        command.Parameters.Add(new NpgsqlParameter { Value = op.To });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Zone });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Requires.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Items });
        command.Parameters.Add(new NpgsqlParameter { Value = op.Needs.Totes });
        int slots = 0, canTake = 0;
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            slots++;
            if (reader.GetBoolean(1)) canTake++;
        }
        return new ReadOutcome(slots, canTake);
    }

    public async Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct)
    {
        var counters = new List<CounterReading>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var live = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var conn = await _data!.OpenConnectionAsync(ct);
        async Task Read(string sql, CounterKind kind)
        {
            await using var command = new NpgsqlCommand(sql, conn);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var used = reader.GetInt64(2);
                counters.Add(new CounterReading(reader.GetString(0), kind, reader.GetString(1), used, used));
            }
        }
        await Read("SELECT slot, name, used FROM fleet_counter", CounterKind.Fleet);
        await Read("SELECT slot, name, used FROM shared_counter", CounterKind.Shared);
        await Read("SELECT slot, zone, used FROM zone_rule WHERE max_orders IS NOT NULL", CounterKind.Zone);
        await using (var command = new NpgsqlCommand("SELECT reservation_id, slot FROM reservation", conn))
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                ids.Add(reader.GetString(0));
                live[reader.GetString(0)] = reader.GetString(1);
            }
        }
        // Reservations are never given back here (the peers book at once), so every recorded one is live.
        return new Readback("postgres tables", counters, ids, [], live);
    }

    public async ValueTask DisposeAsync()
    {
        if (_data is not null) await _data.DisposeAsync();
        if (_started && _dir is not null)
        {
            try
            {
                await PgAsync("pg_ctl", ["-D", Path.Combine(_dir, "data"), "-m", "fast", "-w", "stop"], TimeSpan.FromSeconds(30), CancellationToken.None);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                await Console.Error.WriteLineAsync($"postgres peer: stop failed ({e.Message}); data dir {_dir} left in place");
                return;
            }
        }
        if (_dir is not null)
        {
            try { Directory.Delete(_dir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
