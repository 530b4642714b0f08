using System.Net.Sockets;
using Grpc.Core;

namespace SlotCapacity.Load;

/// <summary>The end of a call after its retries: the answer, or the error of the last attempt.</summary>
public readonly record struct Attempted<T>(T? Answer, Exception? Error, int Attempts, string? RetriedBecause)
{
    public bool Retried => RetriedBecause is not null;

    /// <summary>No definite answer: the last attempt failed in transport (the outcome is unknown).</summary>
    public bool Lost => Error is not null && ClientPolicy.IsTransient(Error);
}

/// <summary>
/// What checkout's client does when a call fails in transport: send the same request again (same
/// reservation id: the engine answers a repeated Reserve from its state) to the next gateway, a
/// bounded number of times with a short backoff. gRPC's built-in retry policy would retry on the
/// same channel, so on the same gateway, and would not tell the harness how many attempts a call
/// took; failing over here does both.
/// </summary>
public sealed record ClientPolicy(int MaxAttempts = 3, double BackoffMs = 20)
{
    public static readonly ClientPolicy Default = new();

    /// <summary>
    /// Failures after which nothing is known or nothing was done, so the same request may go again:
    /// connection refused or reset, gRPC UNAVAILABLE (gateway stopping) or RESOURCE_EXHAUSTED (shed,
    /// nothing written), the client's deadline, a peer's connection errors.
    /// </summary>
    public static bool IsTransient(Exception e) => e switch
    {
        RpcException rpc => rpc.StatusCode is StatusCode.Unavailable or StatusCode.ResourceExhausted or StatusCode.DeadlineExceeded
            || (rpc.StatusCode is StatusCode.Internal or StatusCode.Unknown && rpc.Status.DebugException is HttpRequestException or IOException),
        HttpRequestException or IOException or SocketException or TimeoutException => true,
        StackExchange.Redis.RedisConnectionException => true,
        Npgsql.NpgsqlException pg => pg.IsTransient,
        _ => false,
    };

    /// <param name="call">one attempt, given its number (0 first)</param>
    /// <param name="retryAnswer">an answer that asks to be sent again (e.g. a Confirm answered UNAVAILABLE, retryable)</param>
    public async Task<Attempted<T>> CallAsync<T>(Func<int, Task<T>> call, Func<T, bool>? retryAnswer, CancellationToken ct)
    {
        string? firstFailure = null;
        for (var attempt = 0; ; attempt++)
        {
            var last = attempt + 1 >= MaxAttempts;
            try
            {
                var answer = await call(attempt).ConfigureAwait(false);
                if (last || retryAnswer is null || !retryAnswer(answer)) return new Attempted<T>(answer, null, attempt + 1, firstFailure);
                firstFailure ??= "answered UNAVAILABLE";
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                if (last || !IsTransient(e)) return new Attempted<T>(default, e, attempt + 1, firstFailure);
                firstFailure ??= OpenLoopRunner.ErrorName(e);
            }
            await Task.Delay(TimeSpan.FromMilliseconds(BackoffMs * (attempt + 1)), ct).ConfigureAwait(false);
        }
    }
}
