using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// What every Checkout and Planning call goes through, over gRPC (<see cref="GatewayCallInterceptor"/>)
/// or in process from the planners' console: a write is let in by the <see cref="InFlightGate"/> or
/// refused at once (RESOURCE_EXHAUSTED over the limit, UNAVAILABLE while stopping; nothing is written
/// either way), and a call refused INVALID_ARGUMENT (<see cref="RequestValidation.Problems.ThrowIfAny"/>)
/// is counted. These refusals are measured here as the call's answer; the services measure the
/// answers only they can classify (accepted, rejected, caller gone).
/// </summary>
public sealed class GatewayCalls(InFlightGate gate, GatewayMetrics metrics, GatewaySettings settings)
{
    /// <summary>A call's name in the metrics, and whether it writes a command (then it counts as in
    /// flight: reads are answered from memory in microseconds).</summary>
    public sealed record Call(string Name, bool Writes);

    public static readonly Call Reserve = new("reserve", Writes: true);
    public static readonly Call Confirm = new("confirm", Writes: true);
    public static readonly Call Release = new("release", Writes: true);
    public static readonly Call Availability = new("availability", Writes: false);
    public static readonly Call Configure = new("configure", Writes: true);
    public static readonly Call SetOpen = new("set_open", Writes: true);
    public static readonly Call ApplyPlan = new("apply_plan", Writes: true);
    public static readonly Call Utilisation = new("utilisation", Writes: false);

    /// <summary>The calls by gRPC method path, e.g. "/slotcapacity.v1.Checkout/Reserve".</summary>
    internal static readonly IReadOnlyDictionary<string, Call> ByMethod = new Dictionary<string, Call>(StringComparer.Ordinal)
    {
        [$"/{Checkout.Descriptor.FullName}/Reserve"] = Reserve,
        [$"/{Checkout.Descriptor.FullName}/Confirm"] = Confirm,
        [$"/{Checkout.Descriptor.FullName}/Release"] = Release,
        [$"/{Checkout.Descriptor.FullName}/QueryAvailability"] = Availability,
        [$"/{Planning.Descriptor.FullName}/ConfigureSlot"] = Configure,
        [$"/{Planning.Descriptor.FullName}/SetSlotOpen"] = SetOpen,
        [$"/{Planning.Descriptor.FullName}/ApplyPlan"] = ApplyPlan,
        [$"/{Planning.Descriptor.FullName}/GetUtilisation"] = Utilisation,
    };

    public async Task<T> RunAsync<T>(Call call, Func<Task<T>> handler)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(handler);
        var started = Stopwatch.GetTimestamp();
        if (call.Writes) Admit(call.Name, started);
        try
        {
            return await handler().ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            metrics.Answered(call.Name, "invalid", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            metrics.Rejected("INVALID_ARGUMENT");
            throw;
        }
        finally
        {
            if (call.Writes) gate.Exit();
        }
    }

    private void Admit(string name, long started)
    {
        switch (gate.TryEnter())
        {
            case InFlightGate.Entry.Shed:
                metrics.Shed(name);
                metrics.Answered(name, "shed", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                throw new RpcException(new Status(StatusCode.ResourceExhausted, $"more than {settings.MaxInFlight} calls in flight on this gateway; retry shortly"));
            case InFlightGate.Entry.Stopping:
                metrics.Answered(name, "stopping", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                throw new RpcException(new Status(StatusCode.Unavailable, "gateway is stopping; nothing was written, retry on another instance"));
        }
    }
}

/// <summary>Runs each Checkout and Planning call through <see cref="GatewayCalls"/>. A method without
/// an entry in <see cref="GatewayCalls.ByMethod"/> fails loudly: a new write must not skip the gate.</summary>
public sealed class GatewayCallInterceptor(GatewayCalls calls) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        if (!GatewayCalls.ByMethod.TryGetValue(context.Method, out var call))
            throw new InvalidOperationException($"gRPC method {context.Method} has no entry in GatewayCalls.ByMethod: add one (a write must pass the in-flight gate)");
        return calls.RunAsync(call, () => continuation(request, context));
    }
}
