using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Grpc.Core;

namespace SlotCapacity.Load.Targets;

/// <summary>
/// Unary gRPC calls over cleartext HTTP/2 connections to one gateway, written for the harness's hot
/// path. Grpc.Net.Client on SocketsHttpHandler costs ~130 µs of CPU per call here, most of it
/// thread hand-offs (a socket write and a thread-pool wake per call, a continuation per frame):
/// this client writes the calls started together in one socket write, reads every frame of a
/// receive in one pass and completes the calls of that receive in one work item.
/// What it supports is what the harness needs from a Kestrel gRPC server: unary calls, a bearer
/// token, the call's deadline (sent as grpc-timeout and enforced here to 100 ms), cancellation,
/// HTTP/2 flow control, SETTINGS, PING, GOAWAY and RST_STREAM, more connections once a connection
/// has as many streams open as the server allows. Header blocks are decoded with HPACK's static
/// and dynamic tables; a Huffman-coded header (Kestrel sends none) fails the connection with a
/// message saying so.
/// </summary>
public sealed class H2cCallInvoker : CallInvoker, IDisposable
{
    private const int MaxConnections = 256;
    private readonly IPEndPoint _endpoint;
    private readonly byte[] _authorityAndToken;
    private readonly List<H2cConnection> _connections = [];
    private readonly Timer _deadlines;
    private bool _disposed;

    /// <param name="address">http://127.0.0.1:port of a gateway (loopback only)</param>
    /// <param name="bearerToken">presented on every call as "authorization: Bearer ..."; null or empty: none</param>
    public H2cCallInvoker(Uri address, string? bearerToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.Scheme != Uri.UriSchemeHttp) throw new ArgumentException($"{address}: this client speaks cleartext HTTP/2 (h2c) only");
        var ip = address.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(address.Host.Trim('[', ']'));
        _endpoint = new IPEndPoint(ip, address.Port);
        _authorityAndToken = Hpack.AuthorityAndToken(address.Authority, bearerToken);
        _deadlines = new Timer(_ => ExpireDeadlines(), null, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(100));
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        ArgumentNullException.ThrowIfNull(method);
        var payload = Payload.Serialize(method.RequestMarshaller, request);
        var deadline = options.Deadline is { } d && d != DateTime.MaxValue ? d.ToUniversalTime() : (DateTime?)null;
        var call = new UnaryCall<TResponse>(method.ResponseMarshaller, deadline);
        if (options.CancellationToken.CanBeCanceled)
            call.Cancellation = options.CancellationToken.Register(static c => ((PendingCall)c!).Cancel(), call);
        try
        {
            // A token cancelled already has failed the call in Register.
            if (!call.Finished) Connection().Start(call, Hpack.RequestHeaders(method.FullName, _authorityAndToken, deadline), payload);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
            call.Fail(new Status(StatusCode.Unavailable, $"cannot reach {_endpoint}: {e.Message}", e));
        }
        return new AsyncUnaryCall<TResponse>(call.Task, Task.FromResult(new Metadata()), call.GetStatus, static () => [], call.Cancel);
    }

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
        AsyncUnaryCall(method, host, options, request).ResponseAsync.GetAwaiter().GetResult();

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request) =>
        throw new NotSupportedException("the harness's HTTP/2 client makes unary calls only");

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw new NotSupportedException("the harness's HTTP/2 client makes unary calls only");

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw new NotSupportedException("the harness's HTTP/2 client makes unary calls only");

    /// <summary>Connections open now (tests and reports).</summary>
    public int OpenConnections { get { lock (_connections) return _connections.Count(c => c.Usable); } }

    /// <summary>A connection with room for one more stream, opened when none has.</summary>
    private H2cConnection Connection()
    {
        lock (_connections)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var finished in _connections.Where(c => c.Finished).ToList())
            {
                _connections.Remove(finished);
                finished.Dispose();
            }
            foreach (var c in _connections)
                if (c.HasRoom) return c;
            if (_connections.Count >= MaxConnections)
                throw new IOException($"{MaxConnections} connections to {_endpoint} are all at the server's stream limit");
            var opened = H2cConnection.Open(_endpoint);
            _connections.Add(opened);
            return opened;
        }
    }

    private void ExpireDeadlines()
    {
        H2cConnection[] open;
        lock (_connections) open = [.. _connections];
        var now = DateTime.UtcNow;
        foreach (var c in open) c.ExpireDeadlines(now);
    }

    public void Dispose()
    {
        H2cConnection[] open;
        lock (_connections)
        {
            if (_disposed) return;
            _disposed = true;
            open = [.. _connections];
            _connections.Clear();
        }
        _deadlines.Dispose();
        foreach (var c in open) c.Close(new Status(StatusCode.Unavailable, "the client was closed"));
    }

    /// <summary>A call waiting for its answer: completed by the connection's reader, its deadline sweep, or its cancellation.</summary>
    internal abstract class PendingCall(DateTime? deadline)
    {
        private int _done;
        private Status _status;
        public DateTime? Deadline { get; } = deadline;
        public CancellationTokenRegistration Cancellation { get; set; }
        public H2cConnection? Connection { get; set; }
        public int StreamId { get; set; }
        /// <summary>The response's DATA (gRPC framing included) and trailers, as they arrive.</summary>
        public MemoryStream? Data { get; set; }
        public int? GrpcStatus { get; set; }
        public string? GrpcMessage { get; set; }
        public int HttpStatus { get; set; }

        public Status GetStatus() => _status;
        public bool Finished => Volatile.Read(ref _done) == 1;

        public bool TryFinish(Status status)
        {
            if (Interlocked.Exchange(ref _done, 1) == 1) return false;
            _status = status;
            Cancellation.Dispose();
            return true;
        }

        /// <summary>Completes the call from what arrived (runs the caller's continuation inline).</summary>
        public abstract void Complete();

        public abstract void Fail(Status status);

        public void Cancel()
        {
            Connection?.Abandon(this);
            Fail(new Status(StatusCode.Cancelled, "cancelled by the caller"));
        }
    }

    private sealed class UnaryCall<TResponse>(Marshaller<TResponse> marshaller, DateTime? deadline) : PendingCall(deadline)
    {
        private readonly TaskCompletionSource<TResponse> _answer = new();
        public Task<TResponse> Task => _answer.Task;

        public override void Fail(Status status)
        {
            if (TryFinish(status)) _answer.TrySetException(new RpcException(status));
        }

        public override void Complete()
        {
            if (HttpStatus != 200)
            {
                Fail(new Status(HttpStatus is 502 or 503 or 504 ? StatusCode.Unavailable : StatusCode.Internal, $"HTTP status {HttpStatus}"));
                return;
            }
            if (GrpcStatus is not { } code)
            {
                Fail(new Status(StatusCode.Internal, "the response ended without grpc-status"));
                return;
            }
            if (code != 0)
            {
                Fail(new Status((StatusCode)code, GrpcMessage ?? ""));
                return;
            }
            var data = Data is null ? [] : Data.GetBuffer().AsSpan(0, (int)Data.Length);
            if (data.Length < 5 || data[0] != 0 || BinaryPrimitives.ReadUInt32BigEndian(data[1..]) != data.Length - 5)
            {
                Fail(new Status(StatusCode.Internal, $"the response is not one uncompressed gRPC message ({data.Length} bytes)"));
                return;
            }
            TResponse response;
            try
            {
                response = Payload.Deserialize(marshaller, data[5..].ToArray());
            }
            catch (Exception e) when (e is Google.Protobuf.InvalidProtocolBufferException or InvalidOperationException)
            {
                Fail(new Status(StatusCode.Internal, $"the response does not parse: {e.Message}", e));
                return;
            }
            if (TryFinish(Status.DefaultSuccess)) _answer.TrySetResult(response);
        }
    }
}

/// <summary>gRPC's (de)serialization contexts over one byte array: what generated code's contextual marshallers need.</summary>
internal static class Payload
{
    public static byte[] Serialize<T>(Marshaller<T> marshaller, T message)
    {
        var context = new Writer();
        marshaller.ContextualSerializer(message, context);
        return context.Bytes ?? throw new InvalidOperationException("the marshaller did not complete the message");
    }

    public static T Deserialize<T>(Marshaller<T> marshaller, byte[] bytes) => marshaller.ContextualDeserializer(new Reader(bytes));

    private sealed class Writer : SerializationContext
    {
        private System.Buffers.ArrayBufferWriter<byte>? _buffer;
        public byte[]? Bytes { get; private set; }
        public override void Complete(byte[] payload) => Bytes = payload;
        public override void SetPayloadLength(int payloadLength) => _buffer = new System.Buffers.ArrayBufferWriter<byte>(Math.Max(1, payloadLength));
        public override System.Buffers.IBufferWriter<byte> GetBufferWriter() => _buffer ??= new System.Buffers.ArrayBufferWriter<byte>();
        public override void Complete() => Bytes = _buffer is null ? [] : _buffer.WrittenSpan.ToArray();
    }

    private sealed class Reader(byte[] bytes) : DeserializationContext
    {
        public override int PayloadLength => bytes.Length;
        public override byte[] PayloadAsNewBuffer() => (byte[])bytes.Clone();
        public override System.Buffers.ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(bytes);
    }
}

/// <summary>One HTTP/2 connection: a writer that coalesces frames, a reader loop, the streams in flight.</summary>
internal sealed class H2cConnection : IDisposable
{
    private const int FrameHeader = 9;
    private const byte Data = 0, Headers = 1, RstStream = 3, Settings = 4, PushPromise = 5, Ping = 6, GoAway = 7, WindowUpdate = 8, Continuation = 9;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20;
    // Our receive windows: as large as HTTP/2 allows, topped up once half is used.
    private const int ReceiveWindow = int.MaxValue;
    // HTTP/2's default (and smallest) SETTINGS_MAX_FRAME_SIZE: a request goes in one DATA frame.
    private const int MaxFrame = 16_384;
    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    private readonly Socket _socket;
    private readonly object _lock = new();
    private readonly Dictionary<int, H2cCallInvoker.PendingCall> _streams = [];
    private readonly Hpack.Decoder _decoder = new();
    private MemoryStream _pending = new();
    private MemoryStream _spare = new();
    private bool _flushQueued;
    private readonly Queue<(int Stream, byte[] Frame)> _blockedData = new();
    private int _nextStreamId = 1;
    private long _sendWindow = 65_535;
    private int _peerInitialStreamWindow = 65_535;
    private int _maxStreams = 100;
    // Set by the first GOAWAY (a graceful one says 2^31-1 first): no new stream goes on this connection.
    private bool _goingAway;
    private long _received;
    private Status? _closed;

    private H2cConnection(Socket socket) => _socket = socket;

    public bool Usable { get { lock (_lock) return _closed is null && !_goingAway; } }
    public bool Finished { get { lock (_lock) return _closed is not null || (_goingAway && _streams.Count == 0); } }
    // Three quarters of the server's limit: a stream this side gave up (RST_STREAM) may still count there for a moment.
    public bool HasRoom { get { lock (_lock) return _closed is null && !_goingAway && _streams.Count < _maxStreams * 3 / 4; } }

    public static H2cConnection Open(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(endpoint);
        var connection = new H2cConnection(socket);
        var hello = new MemoryStream();
        hello.Write(Preface);
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE max; then open the connection window as far.
        WriteFrameHeader(hello, 12, Settings, 0, 0);
        WriteSetting(hello, 0x2, 0);
        WriteSetting(hello, 0x4, ReceiveWindow);
        WriteFrameHeader(hello, 4, WindowUpdate, 0, 0);
        WriteUInt32(hello, ReceiveWindow - 65_535);
        socket.Send(hello.GetBuffer().AsSpan(0, (int)hello.Length));
        _ = connection.ReadLoopAsync();
        return connection;
    }

    public void Start(H2cCallInvoker.PendingCall call, byte[] headerBlock, byte[] payload)
    {
        lock (_lock)
        {
            if (_closed is { } closed) throw new IOException($"connection closed: {closed.Detail}");
            if (_goingAway) throw new IOException("the server is going away (GOAWAY)");
            if (payload.Length + 5 > Math.Min(_peerInitialStreamWindow, MaxFrame))
                throw new IOException($"a request of {payload.Length} bytes does not fit one DATA frame within the server's stream window ({_peerInitialStreamWindow})");
            var id = _nextStreamId;
            _nextStreamId += 2;
            call.Connection = this;
            call.StreamId = id;
            _streams[id] = call;
            WriteFrameHeader(_pending, headerBlock.Length, Headers, EndHeaders, id);
            _pending.Write(headerBlock);
            var frame = new byte[FrameHeader + 5 + payload.Length];
            var body = new MemoryStream(frame);
            WriteFrameHeader(body, 5 + payload.Length, Data, EndStream, id);
            body.WriteByte(0);
            WriteUInt32(body, (uint)payload.Length);
            body.Write(payload);
            if (_blockedData.Count == 0 && _sendWindow >= payload.Length + 5)
            {
                _sendWindow -= payload.Length + 5;
                _pending.Write(frame);
            }
            else
            {
                _blockedData.Enqueue((id, frame));
            }
            QueueFlush();
        }
    }

    /// <summary>Gives up a stream (deadline, cancellation): tells the server, forgets the stream.</summary>
    public void Abandon(H2cCallInvoker.PendingCall call)
    {
        lock (_lock)
        {
            if (!_streams.Remove(call.StreamId) || _closed is not null) return;
            // Its DATA, if still waiting for send window, must not follow the reset.
            if (_blockedData.Any(b => b.Stream == call.StreamId))
            {
                var waiting = _blockedData.Where(b => b.Stream != call.StreamId).ToList();
                _blockedData.Clear();
                foreach (var b in waiting) _blockedData.Enqueue(b);
            }
            WriteFrameHeader(_pending, 4, RstStream, 0, call.StreamId);
            WriteUInt32(_pending, 0x8); // CANCEL
            QueueFlush();
        }
    }

    public void ExpireDeadlines(DateTime now)
    {
        List<H2cCallInvoker.PendingCall>? late = null;
        lock (_lock)
        {
            foreach (var call in _streams.Values)
                if (call.Deadline is { } d && d <= now) (late ??= []).Add(call);
        }
        if (late is null) return;
        foreach (var call in late)
        {
            var status = new Status(StatusCode.DeadlineExceeded, "the call's deadline passed");
            Abandon(call);
            call.Fail(status);
        }
    }

    public void Dispose() => Close(new Status(StatusCode.Unavailable, "the connection was closed"));

    public void Close(Status why)
    {
        H2cCallInvoker.PendingCall[] open;
        lock (_lock)
        {
            if (_closed is not null) return;
            _closed = why;
            open = [.. _streams.Values];
            _streams.Clear();
            _blockedData.Clear();
        }
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
        _socket.Dispose();
        foreach (var call in open) call.Fail(why);
    }

    private void QueueFlush()
    {
        if (_flushQueued || _pending.Length == 0) return;
        _flushQueued = true;
        ThreadPool.UnsafeQueueUserWorkItem(static c => c.Flush(), this, preferLocal: false);
    }

    /// <summary>
    /// Sends everything written since the last flush in one write: the calls of one dispatcher batch
    /// go together. One flush runs at a time (it stays queued until its write is done), so frames
    /// leave in the order they were written, as HTTP/2 requires of stream ids.
    /// </summary>
    private void Flush()
    {
        while (true)
        {
            MemoryStream toSend;
            lock (_lock)
            {
                if (_closed is not null || _pending.Length == 0)
                {
                    _flushQueued = false;
                    return;
                }
                toSend = _pending;
                _pending = _spare;
                _spare = toSend;
            }
            try
            {
                _socket.Send(toSend.GetBuffer().AsSpan(0, (int)toSend.Length));
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Close(new Status(StatusCode.Unavailable, $"connection lost while sending: {e.Message}", e));
            }
            finally
            {
                toSend.SetLength(0);
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[256 * 1024];
        var filled = 0;
        try
        {
            while (true)
            {
                if (filled == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
                var read = await _socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None).ConfigureAwait(false);
                if (read == 0) throw new IOException("the server closed the connection");
                filled += read;
                var done = new List<H2cCallInvoker.PendingCall>();
                var used = ReadFrames(buffer.AsSpan(0, filled), done);
                Buffer.BlockCopy(buffer, used, buffer, 0, filled - used);
                filled -= used;
                if (done.Count > 0)
                    ThreadPool.UnsafeQueueUserWorkItem(static calls => { foreach (var c in calls) c.Complete(); }, done, preferLocal: false);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or InvalidDataException or ArgumentOutOfRangeException or FormatException)
        {
            Close(new Status(StatusCode.Unavailable, $"connection lost: {e.Message}", e));
        }
    }

    /// <summary>Handles every complete frame in <paramref name="bytes"/>; returns how many bytes they took.</summary>
    private int ReadFrames(ReadOnlySpan<byte> bytes, List<H2cCallInvoker.PendingCall> done)
    {
        var at = 0;
        while (bytes.Length - at >= FrameHeader)
        {
            var length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
            if (bytes.Length - at < FrameHeader + length) break;
            var type = bytes[at + 3];
            var flags = bytes[at + 4];
            var stream = (int)(BinaryPrimitives.ReadUInt32BigEndian(bytes[(at + 5)..]) & 0x7fffffff);
            OnFrame(type, flags, stream, bytes.Slice(at + FrameHeader, length), done);
            at += FrameHeader + length;
        }
        return at;
    }

    private MemoryStream? _headerBlock;
    private int _headerStream;
    private byte _headerFlags;

    private void OnFrame(byte type, byte flags, int stream, ReadOnlySpan<byte> payload, List<H2cCallInvoker.PendingCall> done)
    {
        switch (type)
        {
            case Data:
            {
                _received += payload.Length;
                var body = Unpadded(flags, payload);
                lock (_lock)
                {
                    if (_streams.TryGetValue(stream, out var call)) (call.Data ??= new MemoryStream()).Write(body);
                    if (_received > ReceiveWindow / 2)
                    {
                        WriteFrameHeader(_pending, 4, WindowUpdate, 0, 0);
                        WriteUInt32(_pending, (uint)_received);
                        _received = 0;
                        QueueFlush();
                    }
                }
                if ((flags & EndStream) != 0) Finish(stream, done);
                break;
            }
            case Headers:
            {
                var block = Unpadded(flags, payload);
                if ((flags & Priority) != 0) block = block[5..];
                _headerBlock = new MemoryStream();
                _headerBlock.Write(block);
                _headerStream = stream;
                _headerFlags = flags;
                if ((flags & EndHeaders) != 0) OnHeaderBlock(done);
                break;
            }
            case Continuation:
                if (_headerBlock is null || stream != _headerStream) throw new InvalidDataException("CONTINUATION without the HEADERS it continues");
                _headerBlock.Write(payload);
                if ((flags & EndHeaders) != 0) OnHeaderBlock(done);
                break;
            case RstStream:
            {
                var code = BinaryPrimitives.ReadUInt32BigEndian(payload);
                H2cCallInvoker.PendingCall? call;
                lock (_lock) _streams.Remove(stream, out call);
                // REFUSED_STREAM: the server did not process it, so it may be sent again.
                call?.Fail(new Status(code == 0x7 ? StatusCode.Unavailable : StatusCode.Internal, $"the server reset the stream (HTTP/2 error {code})"));
                break;
            }
            case Settings:
                if ((flags & Ack) != 0) break;
                lock (_lock)
                {
                    for (var i = 0; i + 6 <= payload.Length; i += 6)
                    {
                        var id = BinaryPrimitives.ReadUInt16BigEndian(payload[i..]);
                        var value = BinaryPrimitives.ReadUInt32BigEndian(payload[(i + 2)..]);
                        if (id == 0x3) _maxStreams = (int)Math.Min(value, int.MaxValue);
                        else if (id == 0x4) _peerInitialStreamWindow = (int)Math.Min(value, int.MaxValue);
                    }
                    WriteFrameHeader(_pending, 0, Settings, Ack, 0);
                    QueueFlush();
                }
                break;
            case Ping:
                if ((flags & Ack) != 0) break;
                lock (_lock)
                {
                    WriteFrameHeader(_pending, 8, Ping, Ack, 0);
                    _pending.Write(payload);
                    QueueFlush();
                }
                break;
            case GoAway:
            {
                var last = (int)(BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7fffffff);
                List<H2cCallInvoker.PendingCall> refused;
                lock (_lock)
                {
                    _goingAway = true;
                    refused = [.. _streams.Where(s => s.Key > last).Select(s => s.Value)];
                    foreach (var call in refused) _streams.Remove(call.StreamId);
                }
                // Streams above the last one the server took were not processed: safe to send again.
                foreach (var call in refused) call.Fail(new Status(StatusCode.Unavailable, "the server is going away (GOAWAY) and did not take this call"));
                break;
            }
            case WindowUpdate:
                if (stream != 0) break;
                lock (_lock)
                {
                    _sendWindow += BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7fffffff;
                    while (_blockedData.Count > 0 && _sendWindow >= _blockedData.Peek().Frame.Length - FrameHeader)
                    {
                        var (_, frame) = _blockedData.Dequeue();
                        _sendWindow -= frame.Length - FrameHeader;
                        _pending.Write(frame);
                    }
                    QueueFlush();
                }
                break;
            case PushPromise:
                throw new InvalidDataException("PUSH_PROMISE although push is disabled");
        }
    }

    private void OnHeaderBlock(List<H2cCallInvoker.PendingCall> done)
    {
        var block = _headerBlock!.GetBuffer().AsSpan(0, (int)_headerBlock.Length);
        H2cCallInvoker.PendingCall? call;
        lock (_lock) _streams.TryGetValue(_headerStream, out call);
        // The block is decoded even for a stream given up: the dynamic table must see every block.
        _decoder.Decode(block, (name, value) =>
        {
            if (call is null) return;
            switch (name)
            {
                case ":status": call.HttpStatus = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "grpc-status": call.GrpcStatus = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "grpc-message": call.GrpcMessage = Uri.UnescapeDataString(value); break;
            }
        });
        _headerBlock = null;
        if ((_headerFlags & EndStream) != 0) Finish(_headerStream, done);
    }

    private void Finish(int stream, List<H2cCallInvoker.PendingCall> done)
    {
        lock (_lock)
        {
            if (_streams.Remove(stream, out var call)) done.Add(call);
        }
    }

    private static ReadOnlySpan<byte> Unpadded(byte flags, ReadOnlySpan<byte> payload)
    {
        if ((flags & Padded) == 0) return payload;
        var pad = payload[0];
        return payload[1..^pad];
    }

    private static void WriteFrameHeader(MemoryStream to, int length, byte type, byte flags, int stream)
    {
        Span<byte> header = stackalloc byte[FrameHeader];
        header[0] = (byte)(length >> 16);
        header[1] = (byte)(length >> 8);
        header[2] = (byte)length;
        header[3] = type;
        header[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(header[5..], (uint)stream);
        to.Write(header);
    }

    private static void WriteSetting(MemoryStream to, ushort id, int value)
    {
        Span<byte> setting = stackalloc byte[6];
        BinaryPrimitives.WriteUInt16BigEndian(setting, id);
        BinaryPrimitives.WriteUInt32BigEndian(setting[2..], (uint)value);
        to.Write(setting);
    }

    private static void WriteUInt32(MemoryStream to, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        to.Write(bytes);
    }
}

/// <summary>HPACK (RFC 7541) as far as the harness's client needs it: literal request headers, and a decoder with both tables.</summary>
internal static class Hpack
{
    /// <summary>The ":authority" and "authorization" fields, the same on every call of one invoker.</summary>
    public static byte[] AuthorityAndToken(string authority, string? bearerToken)
    {
        var block = new MemoryStream();
        WriteLiteral(block, 1, authority);
        if (!string.IsNullOrEmpty(bearerToken)) WriteLiteral(block, 23, "Bearer " + bearerToken);
        return block.ToArray();
    }

    /// <summary>A unary gRPC request's header block: POST, http, the method's path, content-type, te, the deadline.</summary>
    public static byte[] RequestHeaders(string path, byte[] authorityAndToken, DateTime? deadline)
    {
        var block = new MemoryStream(128 + authorityAndToken.Length);
        block.WriteByte(0x80 | 3); // :method POST
        block.WriteByte(0x80 | 6); // :scheme http
        WriteLiteral(block, 4, path);
        block.Write(authorityAndToken);
        WriteLiteral(block, 31, "application/grpc");
        WriteLiteral(block, "te", "trailers");
        if (deadline is { } d)
        {
            var ms = Math.Max(1, (long)Math.Ceiling((d - DateTime.UtcNow).TotalMilliseconds));
            WriteLiteral(block, "grpc-timeout", $"{Math.Min(ms, 99_999_999)}m");
        }
        return block.ToArray();
    }

    /// <summary>Literal header field without indexing, name from the static table.</summary>
    private static void WriteLiteral(MemoryStream to, int nameIndex, string value)
    {
        WriteInteger(to, 0x00, 4, nameIndex);
        WriteString(to, value);
    }

    /// <summary>Literal header field without indexing, new name.</summary>
    private static void WriteLiteral(MemoryStream to, string name, string value)
    {
        to.WriteByte(0x00);
        WriteString(to, name);
        WriteString(to, value);
    }

    private static void WriteString(MemoryStream to, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        WriteInteger(to, 0x00, 7, bytes.Length);
        to.Write(bytes);
    }

    private static void WriteInteger(MemoryStream to, byte firstBits, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            to.WriteByte((byte)(firstBits | value));
            return;
        }
        to.WriteByte((byte)(firstBits | max));
        value -= max;
        while (value >= 128)
        {
            to.WriteByte((byte)((value & 0x7f) | 0x80));
            value >>= 7;
        }
        to.WriteByte((byte)value);
    }

    /// <summary>Decodes header blocks of one connection (its dynamic table lives as long as the connection).</summary>
    public sealed class Decoder
    {
        private readonly LinkedList<(string Name, string Value)> _dynamic = new();
        private int _size;
        private int _maxSize = 4096;

        public void Decode(ReadOnlySpan<byte> block, Action<string, string> field)
        {
            var at = 0;
            while (at < block.Length)
            {
                var b = block[at];
                if ((b & 0x80) != 0)
                {
                    var (name, value) = Entry(ReadInteger(block, ref at, 7));
                    field(name, value);
                }
                else if ((b & 0xc0) == 0x40)
                {
                    var index = ReadInteger(block, ref at, 6);
                    var name = index == 0 ? ReadString(block, ref at) : Entry(index).Name;
                    var value = ReadString(block, ref at);
                    Add(name, value);
                    field(name, value);
                }
                else if ((b & 0xe0) == 0x20)
                {
                    _maxSize = ReadInteger(block, ref at, 5);
                    Evict(0);
                }
                else
                {
                    // Without indexing (0000) or never indexed (0001): 4-bit prefix either way.
                    var index = ReadInteger(block, ref at, 4);
                    var name = index == 0 ? ReadString(block, ref at) : Entry(index).Name;
                    field(name, ReadString(block, ref at));
                }
            }
        }

        private (string Name, string Value) Entry(int index)
        {
            if (index >= 1 && index <= StaticTable.Length) return StaticTable[index - 1];
            var i = index - StaticTable.Length - 1;
            if (index < 1 || i >= _dynamic.Count) throw new InvalidDataException($"HPACK index {index} is in neither table");
            return _dynamic.ElementAt(i);
        }

        private void Add(string name, string value)
        {
            var size = 32 + name.Length + value.Length;
            Evict(size);
            if (size > _maxSize) return;
            _dynamic.AddFirst((name, value));
            _size += size;
        }

        private void Evict(int room)
        {
            while (_dynamic.Count > 0 && _size + room > _maxSize)
            {
                var last = _dynamic.Last!.Value;
                _size -= 32 + last.Name.Length + last.Value.Length;
                _dynamic.RemoveLast();
            }
        }

        private static int ReadInteger(ReadOnlySpan<byte> block, ref int at, int prefixBits)
        {
            var max = (1 << prefixBits) - 1;
            var value = block[at++] & max;
            if (value < max) return value;
            var shift = 0;
            byte b;
            do
            {
                if (at >= block.Length) throw new InvalidDataException("HPACK integer runs past the header block");
                b = block[at++];
                value += (b & 0x7f) << shift;
                shift += 7;
            } while ((b & 0x80) != 0 && shift < 28);
            return value;
        }

        private static string ReadString(ReadOnlySpan<byte> block, ref int at)
        {
            if (at >= block.Length) throw new InvalidDataException("HPACK string runs past the header block");
            var huffman = (block[at] & 0x80) != 0;
            var length = ReadInteger(block, ref at, 7);
            if (at + length > block.Length) throw new InvalidDataException("HPACK string runs past the header block");
            if (huffman) throw new InvalidDataException("a Huffman-coded header arrived; the harness's HTTP/2 client reads only raw ones (as Kestrel sends)");
            var text = Encoding.ASCII.GetString(block.Slice(at, length));
            at += length;
            return text;
        }
    }

    private static readonly (string Name, string Value)[] StaticTable =
    [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
        ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""), ("date", ""),
        ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""),
        ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""),
        ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""),
        ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""),
        ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ];
}
