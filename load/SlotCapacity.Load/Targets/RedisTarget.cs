using System.Diagnostics;
using StackExchange.Redis;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// The peer "Redis with a Lua check-and-increment": one hash per slot holds its counters, and one
/// Lua script checks every rule and increments all counters of a reservation atomically (Redis
/// runs scripts one at a time). The harness starts its own redis-server on a loopback port in a
/// temp dir, with the append-only file fsynced every second (Redis's recommended durable setting:
/// up to a second of accepted bookings can be lost on a crash; replication is asynchronous).
/// </summary>
public sealed class RedisTarget : ITarget
{
    // Decides whether an order fits a slot, exactly as a reservation would, without changing it:
    // returns the fleet counter it would take and the shared draws, or nil and the reject reason.
    // Same rules and allocation as the system's domain: the eligible fleet counter with the most
    // room left, ties to the first name.
    private const string FitFunction = """
        local function has(list, item) return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil end
        local function fit(slot, zone, requires, items, totes)
          if redis.call('HGET', slot, 'open') ~= '1' then return nil, 'SLOT_CLOSED' end
          if redis.call('HGET', slot, 'z:' .. zone .. ':closed') == '1' then return nil, 'ZONE_RESTRICTED' end
          local zmax = redis.call('HGET', slot, 'z:' .. zone .. ':max')
          if zmax and tonumber(redis.call('HGET', slot, 'z:' .. zone .. ':used')) + 1 > tonumber(zmax) then return nil, 'ZONE_FULL' end
          local chosen = nil
          local best = 0
          local eligible = false
          for name in string.gmatch(redis.call('HGET', slot, 'fleet'), '[^,]+') do
            local zones = redis.call('HGET', slot, 'f:' .. name .. ':zones')
            local carries = redis.call('HGET', slot, 'f:' .. name .. ':carries')
            local ok = zones == '' or has(zones, zone)
            if ok then
              for req in string.gmatch(requires, '[^,]+') do
                if not has(carries, req) then ok = false end
              end
            end
            if ok then
              eligible = true
              local room = tonumber(redis.call('HGET', slot, 'f:' .. name .. ':cap')) - tonumber(redis.call('HGET', slot, 'f:' .. name .. ':used'))
              if room > 0 and (chosen == nil or room > best or (room == best and name < chosen)) then
                chosen = name
                best = room
              end
            end
          end
          if not eligible then return nil, 'NO_ELIGIBLE_FLEET' end
          if not chosen then return nil, 'SLOT_FULL' end
          local need = {items = items, totes = totes}
          local draws = {}
          for entry in string.gmatch(redis.call('HGET', slot, 'shared'), '[^,]+') do
            local name, measure = string.match(entry, '([^=]+)=(.+)')
            local q = need[measure] or 0
            if tonumber(redis.call('HGET', slot, 's:' .. name .. ':used')) + q > tonumber(redis.call('HGET', slot, 's:' .. name .. ':cap')) then return nil, 'SLOT_FULL' end
            draws[name] = q
          end
          return chosen, draws, zmax
        end
        """;

    // KEYS: slot hash, reservations hash. ARGV: reservation id, zone, requires (comma list), items, totes.
    private const string ReserveScript = FitFunction + "\n" + """
        local prev = redis.call('HGET', KEYS[2], ARGV[1])
        if prev then return {1, prev} end
        local chosen, draws, zmax = fit(KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
        if not chosen then return {0, draws} end
        redis.call('HINCRBY', KEYS[1], 'f:' .. chosen .. ':used', 1)
        for name, q in pairs(draws) do redis.call('HINCRBY', KEYS[1], 's:' .. name .. ':used', q) end
        if zmax then redis.call('HINCRBY', KEYS[1], 'z:' .. ARGV[2] .. ':used', 1) end
        redis.call('HSET', KEYS[2], ARGV[1], chosen)
        return {1, chosen}
        """;

    // What checkout shows for a day of one hub: for each slot, whether this order would fit.
    // KEYS: the slot hashes. ARGV: zone, requires, items, totes.
    private const string ReadScript = FitFunction + "\n" + """
        local out = {}
        for i, slot in ipairs(KEYS) do
          local chosen = fit(slot, ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
          out[i] = chosen and 1 or 0
        end
        return out
        """;

    private readonly string _redisServer;
    private string? _dir;
    private Process? _process;
    public const int Connections = 4;

    private readonly List<ConnectionMultiplexer> _connections = [];
    private IDatabase[] _dbs = [];
    private IDatabase? _db;
    private byte[] _reserveSha = [];
    private byte[] _readSha = [];
    private long _next;
    private int _port;
    private Dictionary<(string Hub, DateTimeOffset Day), RedisKey[]> _slotsByHubDay = [];

    public RedisTarget(string? redisServer = null)
    {
        _redisServer = redisServer ?? LocalProcess.FindOnPath("redis-server")
            ?? throw new InvalidOperationException("redis-server is not installed: run `make bench-deps` (load/bench-deps.sh)");
    }

    public string Name => "redis";
    public string Endpoint => $"127.0.0.1:{_port}";
    public string Notes => "redis-server, one Lua script per reservation; appendonly yes, appendfsync everysec; 4 multiplexed connections, EVALSHA";

    public async Task PrepareAsync(SlotPlan plan, CancellationToken ct)
    {
        _port = LocalProcess.FreeLoopbackPort();
        _dir = LocalProcess.MakeTempDir("redis");
        var psi = new ProcessStartInfo(_redisServer) { UseShellExecute = false, RedirectStandardOutput = false };
        foreach (var a in new[]
                 {
                     "--port", _port.ToString(), "--bind", "127.0.0.1", "--dir", _dir, "--save", "",
                     "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
                     "--logfile", Path.Combine(_dir, "redis.log"),
                 })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start redis-server");
        await LocalProcess.WaitForPortAsync(_port, TimeSpan.FromSeconds(15), () => LocalProcess.Tail(Path.Combine(_dir, "redis.log")), ct);
        // Several connections, as a pooled service would have: one multiplexer's single reader
        // would otherwise bound the rate before Redis does.
        for (var i = 0; i < Connections; i++)
            _connections.Add(await ConnectionMultiplexer.ConnectAsync(
                $"127.0.0.1:{_port},abortConnect=false,asyncTimeout=5000,syncTimeout=5000,connectTimeout=5000"));
        _dbs = _connections.Select(c => c.GetDatabase()).ToArray();
        _db = _dbs[0];

        var batch = _db.CreateBatch();
        var writes = new List<Task>();
        foreach (var slot in plan.Slots)
        {
            var c = slot.Config;
            var fields = new List<HashEntry>
            {
                new("open", c.Open ? "1" : "0"),
                new("fleet", string.Join(',', c.Fleet.Select(f => f.Name))),
                new("shared", string.Join(',', c.Shared.Select(s => $"{s.Name}={s.Measure}"))),
            };
            foreach (var f in c.Fleet)
            {
                fields.Add(new($"f:{f.Name}:cap", f.CapacityOrders));
                fields.Add(new($"f:{f.Name}:used", 0));
                fields.Add(new($"f:{f.Name}:zones", string.Join(',', f.Zones)));
                fields.Add(new($"f:{f.Name}:carries", string.Join(',', f.Carries)));
            }
            foreach (var s in c.Shared)
            {
                fields.Add(new($"s:{s.Name}:cap", s.Capacity));
                fields.Add(new($"s:{s.Name}:used", 0));
            }
            foreach (var z in c.ZoneRules)
            {
                if (z.Closed) fields.Add(new($"z:{z.Zone}:closed", "1"));
                if (z.HasMaxOrders)
                {
                    fields.Add(new($"z:{z.Zone}:max", z.MaxOrders));
                    fields.Add(new($"z:{z.Zone}:used", 0));
                }
            }
            writes.Add(batch.HashSetAsync(SlotKey(slot.Id), [.. fields]));
        }
        batch.Execute();
        await Task.WhenAll(writes);
        _slotsByHubDay = plan.Slots
            .GroupBy(s => (s.Key.Hub, Day: new DateTimeOffset(s.Key.Start.UtcDateTime.Date, TimeSpan.Zero)))
            .ToDictionary(g => g.Key, g => g.Select(s => SlotKey(s.Id)).ToArray());
        // Loaded once; the run calls EVALSHA with the digest.
        var server = _connections[0].GetServer(_connections[0].GetEndPoints()[0]);
        _reserveSha = await server.ScriptLoadAsync(ReserveScript);
        _readSha = await server.ScriptLoadAsync(ReadScript);
    }

    private IDatabase NextDb() => _dbs[(int)((ulong)Interlocked.Increment(ref _next) % (ulong)_dbs.Length)];

    private static RedisKey SlotKey(string slot) => $"slot:{slot}";
    private static RedisKey ReservationsKey(string slot) => $"res:{slot}";

    public IReadOnlyList<WatchedProcess> Processes =>
        _process is null ? [] : [new WatchedProcess("redis-server", _process.Id, WithChildren: true)];

    public async Task<ReserveOutcome> ReserveAsync(ReserveOperation op, int attempt, CancellationToken ct)
    {
        var result = (RedisResult[])(await NextDb().ScriptEvaluateAsync(_reserveSha,
            [SlotKey(op.Slot.Id), ReservationsKey(op.Slot.Id)],
            [op.ReservationId, op.Zone, string.Join(',', op.Needs.Requires), op.Needs.Items, op.Needs.Totes]))!;
        return (int)result[0] == 1 ? ReserveOutcome.Accept((string)result[1]!) : ReserveOutcome.Reject((string)result[1]!);
    }

    public async Task<ReadOutcome> ReadAsync(ReadOperation op, int attempt, CancellationToken ct)
    {
        if (!_slotsByHubDay.TryGetValue((op.Hub, op.From), out var keys)) return new ReadOutcome(0, 0);
        var fits = (long[])(await NextDb().ScriptEvaluateAsync(_readSha, keys,
            [op.Zone, string.Join(',', op.Needs.Requires), op.Needs.Items, op.Needs.Totes]))!;
        return new ReadOutcome(fits.Length, fits.Count(f => f == 1));
    }

    public async Task<Readback> ReadBackAsync(SlotPlan plan, IReadOnlyCollection<AcceptedReservation> accepted, CancellationToken ct)
    {
        var counters = new List<CounterReading>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var live = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var slot in plan.Slots)
        {
            var hash = (await _db!.HashGetAllAsync(SlotKey(slot.Id))).ToDictionary(e => (string)e.Name!, e => e.Value);
            foreach (var f in slot.Config.Fleet) Add(CounterKind.Fleet, f.Name, $"f:{f.Name}:used");
            foreach (var s in slot.Config.Shared) Add(CounterKind.Shared, s.Name, $"s:{s.Name}:used");
            foreach (var z in slot.Config.ZoneRules.Where(z => z.HasMaxOrders)) Add(CounterKind.Zone, z.Zone, $"z:{z.Zone}:used");
            foreach (var id in await _db.HashKeysAsync(ReservationsKey(slot.Id)))
            {
                ids.Add(id!);
                live[id!] = slot.Id;
            }

            void Add(CounterKind kind, string name, string field)
            {
                var used = hash.TryGetValue(field, out var v) ? (long)v : 0;
                counters.Add(new CounterReading(slot.Id, kind, name, used, used));
            }
        }
        // Reservations are never given back here (the peers book at once), so every recorded one is live.
        return new Readback("redis hashes", counters, ids, [], live);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        if (_dir is not null)
        {
            try { Directory.Delete(_dir, recursive: true); }
            catch (IOException) { }
        }
    }
}
