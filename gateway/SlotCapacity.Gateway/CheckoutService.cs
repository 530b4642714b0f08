using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.AspNetCore.Authorization;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// The checkout API. Writes answer within the deadline: a reply from the engine, or a reject with
/// reason UNAVAILABLE and retryable=true (gRPC status OK: it is an answer about this reservation, and
/// a gRPC error status would invite transparent client retries with the same, now abandoned,
/// reservation id). Input errors are INVALID_ARGUMENT, overload RESOURCE_EXHAUSTED, a stopping
/// instance UNAVAILABLE (nothing written: safe to retry on another instance); admission, and the
/// count of those refusals, are <see cref="GatewayCalls"/>' (the gRPC interceptor's).
/// Callers need role checkout (anything else is refused UNAUTHENTICATED or PERMISSION_DENIED before this runs).
/// </summary>
[Authorize(Policy = SlotPolicies.Checkout)]
public sealed class CheckoutService(
    GatewaySettings settings,
    CommandDispatcher dispatcher,
    AvailabilityView view,
    AvailabilityFollower follower,
    GatewayMetrics metrics,
    ILogger<CheckoutService> logger) : Checkout.CheckoutBase
{
    public override Task<ReservationReply> Reserve(ReserveRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Reserve(request, out var slot).ThrowIfAny();
        var body = new Reserve
        {
            ReservationId = request.ReservationId,
            OrderId = request.OrderId,
            Zone = request.Zone,
            Needs = request.Needs ?? new OrderNeeds(),
            HoldExpiresUnixMs = request.HoldSeconds > 0
                ? DateTimeOffset.UtcNow.AddSeconds(request.HoldSeconds).ToUnixTimeMilliseconds()
                : 0,
        };
        return Write("reserve", started, new SlotCommand { Slot = slot.ToString(), Reserve = body }, request.ReservationId, abandonOnMiss: true, context);
    }

    public override Task<ReservationReply> Confirm(ConfirmRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Confirm(request, out var slot).ThrowIfAny();
        var command = new SlotCommand { Slot = slot.ToString(), Confirm = new Confirm { ReservationId = request.ReservationId } };
        return Write("confirm", started, command, request.ReservationId, abandonOnMiss: false, context);
    }

    public override Task<ReservationReply> Release(ReleaseRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Release(request, out var slot).ThrowIfAny();
        var command = new SlotCommand { Slot = slot.ToString(), Release = new Release { ReservationId = request.ReservationId, Reason = request.Reason } };
        return Write("release", started, command, request.ReservationId, abandonOnMiss: false, context);
    }

    public override Task<AvailabilityReply> QueryAvailability(AvailabilityRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Availability(request, out var from, out var to).ThrowIfAny();
        var now = DateTimeOffset.UtcNow;
        var (lagRecords, lagMs) = follower.Lag();
        var reply = new AvailabilityReply { ViewLagRecords = lagRecords, ViewLagMs = lagMs };
        foreach (var entry in view.InHub(request.Hub, from, to))
        {
            var snapshot = entry.Snapshot;
            var fit = SlotFit.Evaluate(snapshot, entry.Config, request.Zone, request.Needs, now);
            reply.Slots.Add(new SlotAvailability
            {
                Slot = entry.SlotId,
                Open = snapshot.Open,
                CanTake = fit.CanTake,
                Reason = fit.Reason,
                FillRatio = fit.FillRatio,
                RemainingOrders = fit.RemainingOrders,
                Cutoff = entry.Cutoff,
                OverCommitted = snapshot.OverCommitted,
            });
        }
        metrics.Answered("availability", "ok", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return Task.FromResult(reply);
    }

    private async Task<ReservationReply> Write(string method, long started, SlotCommand command, string reservationId, bool abandonOnMiss, ServerCallContext context)
    {
        var (deadline, deadlineAt) = CallDeadline(settings.Deadline, settings.ClientDeadlineMargin, started, context.Deadline);
        var outcome = await dispatcher.SendAsync(command, deadline, deadlineAt, abandonOnMiss ? reservationId : null, context.CancellationToken);
        var reply = outcome.Reply is { } r ? FromEngine(r) : Unavailable(reservationId, outcome.Why, outcome.Abandoned);
        if (abandonOnMiss && reply.Accepted) AbandonIfNotDelivered(context, command.Slot, reservationId, command.CommandId);
        var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (outcome.Missed == CommandOutcome.Miss.DeadlineMissed) metrics.DeadlineMissed(method);
        if (!reply.Accepted) metrics.Rejected(reply.Reason);
        metrics.Answered(method, outcome.Missed == CommandOutcome.Miss.CallerGone ? "caller_gone" : reply.Accepted ? "accepted" : "rejected", elapsed);
        // Guarded: the arguments would be boxed on every call even with Debug off.
        if (logger.IsEnabled(LogLevel.Debug))
            logger.LogDebug("{Method} {ReservationId} on {Slot}: accepted {Accepted} reason {Reason} in {ElapsedMs:0.0} ms",
                method, reservationId, command.Slot, reply.Accepted, reply.Reason, elapsed);
        return reply;
    }

    /// <summary>
    /// An accept counts only if it reaches the caller. When the response ends otherwise (the caller
    /// reset the call, or gRPC answered DEADLINE_EXCEEDED because the caller's deadline fired while the
    /// accept was on its way) the reservation is abandoned like a miss. What this cannot see: a response
    /// fully sent that the client then discards because its own timer fired first (see the margin).
    /// </summary>
    private void AbandonIfNotDelivered(ServerCallContext context, string slot, string reservationId, string commandId)
    {
        var http = context.GetHttpContext();
        http.Response.OnCompleted(() =>
        {
            if (http.RequestAborted.IsCancellationRequested || context.Status.StatusCode != StatusCode.OK)
                dispatcher.Abandon(slot, reservationId, AbandonCause.NotDelivered, commandId);
            return Task.CompletedTask;
        });
    }

    /// <summary>The configured deadline from call start, or the client's own deadline less
    /// <paramref name="clientMargin"/> if sooner: a reply later than that would likely reach a caller
    /// that already gave up.</summary>
    internal static (long Deadline, DateTimeOffset DeadlineAt) CallDeadline(TimeSpan budget, TimeSpan clientMargin, long started, DateTime clientDeadline)
    {
        var left = budget - Stopwatch.GetElapsedTime(started);
        if (clientDeadline != DateTime.MaxValue)
        {
            var clientLeft = clientDeadline.ToUniversalTime() - DateTime.UtcNow - clientMargin;
            if (clientLeft < left) left = clientLeft;
        }
        if (left < TimeSpan.Zero) left = TimeSpan.Zero;
        return (Stopwatch.GetTimestamp() + (long)(left.TotalSeconds * Stopwatch.Frequency), DateTimeOffset.UtcNow + left);
    }

    internal static ReservationReply FromEngine(SlotReply reply) => new()
    {
        ReservationId = reply.ReservationId,
        Accepted = reply.Accepted,
        Reason = reply.Reason,
        Detail = reply.Detail,
        Retryable = reply.Reason == RejectReason.Unavailable,
        FleetCounter = reply.FleetCounter,
        Status = reply.Status,
        HoldExpiresAt = reply.HoldExpiresUnixMs > 0 ? Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(reply.HoldExpiresUnixMs)) : null,
    };

    private static ReservationReply Unavailable(string reservationId, string why, bool abandoned) => new()
    {
        ReservationId = reservationId,
        Accepted = false,
        Reason = RejectReason.Unavailable,
        Retryable = true,
        Status = abandoned ? ReservationStatus.Abandoned : ReservationStatus.Unspecified,
        Detail = abandoned
            ? why + "; the reservation is abandoned: retry with a new reservation_id"
            : why + "; retrying with the same reservation_id is safe",
    };
}
