using System.Diagnostics.Metrics;
using Grpc.Core;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway.Tests;

/// <summary>What <see cref="GatewayCalls"/> (the gRPC interceptor's and the console's) does around a
/// Checkout or Planning call, without a server: the end-to-end tests cover it through gRPC.</summary>
public sealed class GatewayCallsTests : IDisposable
{
    private readonly GatewayMetrics metrics = new();
    private readonly MeterListener listener = new();
    private readonly List<string> answered = [];
    private readonly InFlightGate gate = new(limit: 1);
    private readonly GatewayCalls calls;

    public GatewayCallsTests()
    {
        calls = new GatewayCalls(gate, metrics, new GatewaySettings { BootstrapServers = "127.0.0.1:1", Security = EngineAndGateways.Security, MaxInFlight = 1 });
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == metrics.Meter && instrument.Name == "gateway.calls") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            string? method = null, outcome = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "method") method = (string?)tag.Value;
                if (tag.Key == "outcome") outcome = (string?)tag.Value;
            }
            lock (answered) answered.Add($"{method}/{outcome}");
        });
        listener.Start();
    }

    private List<string> Answered()
    {
        lock (answered) return [.. answered];
    }

    [Fact]
    public void Every_checkout_and_planning_method_has_an_entry()
    {
        var methods = Checkout.Descriptor.Methods.Concat(Planning.Descriptor.Methods).Select(m => $"/{m.Service.FullName}/{m.Name}");
        Assert.Equal(methods.Order(StringComparer.Ordinal), GatewayCalls.ByMethod.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_write_over_the_limit_is_refused_at_once_and_counted_as_shed_while_reads_still_pass()
    {
        var reply = new TaskCompletionSource<ReservationReply>();
        var first = calls.RunAsync(GatewayCalls.Reserve, () => reply.Task);
        Assert.Equal(1, gate.InFlight);

        var ran = false;
        var shed = await Assert.ThrowsAsync<RpcException>(() => calls.RunAsync(GatewayCalls.Confirm, () =>
        {
            ran = true;
            return Task.FromResult(new ReservationReply());
        }));
        Assert.Equal(StatusCode.ResourceExhausted, shed.StatusCode);
        Assert.Equal("more than 1 calls in flight on this gateway; retry shortly", shed.Status.Detail);
        Assert.False(ran);
        Assert.NotNull(await calls.RunAsync(GatewayCalls.Availability, () => Task.FromResult(new AvailabilityReply())));

        reply.SetResult(new ReservationReply { Accepted = true });
        Assert.True((await first).Accepted);
        Assert.Equal(0, gate.InFlight);
        Assert.Contains("confirm/shed", Answered());
    }

    [Fact]
    public async Task Invalid_input_is_answered_INVALID_ARGUMENT_counted_and_leaves_the_gate()
    {
        var invalid = await Assert.ThrowsAsync<RpcException>(() => calls.RunAsync(GatewayCalls.Reserve, () =>
        {
            RequestValidation.Reserve(new ReserveRequest(), out _).ThrowIfAny();
            return Task.FromResult(new ReservationReply());
        }));
        Assert.Equal(StatusCode.InvalidArgument, invalid.StatusCode);
        Assert.StartsWith("reservation_id: is empty", invalid.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, gate.InFlight);
        Assert.Equal(new[] { "reserve/invalid" }, Answered());
    }

    [Fact]
    public async Task A_stopping_gateway_answers_writes_UNAVAILABLE_without_running_them()
    {
        gate.BeginStop();
        var ran = false;
        var stopping = await Assert.ThrowsAsync<RpcException>(() => calls.RunAsync(GatewayCalls.ApplyPlan, () =>
        {
            ran = true;
            return Task.FromResult(new ApplyPlanReply());
        }));
        Assert.Equal(StatusCode.Unavailable, stopping.StatusCode);
        Assert.False(ran);
        Assert.Equal(new[] { "apply_plan/stopping" }, Answered());
    }

    public void Dispose()
    {
        listener.Dispose();
        metrics.Dispose();
    }
}
