using System.Diagnostics;
using Grpc.Core;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.RateLimiting;
using SlotCapacity.Contracts;
using SlotCapacity.Domain;

namespace SlotCapacity.Gateway;

/// <summary>
/// The planning API. Each slot change is one command whose reply is awaited (planning deadline,
/// 5 s by default). A change that gets no reply in time is reported applied=false, reason UNAVAILABLE:
/// it may still be applied later, and re-sending it is safe (a ConfigureSlot replaces the whole
/// configuration). Utilisation is read from the availability view.
/// Changes need role planner and name the caller (the token's subject) in their commands, so the
/// SLOT_CONFIGURED events say who changed capacity; utilisation needs viewer or planner. Every call
/// counts against the caller's planning rate limit. Admission to the in-flight limit, and the count
/// of calls refused (over the limit, stopping, invalid), are <see cref="GatewayCalls"/>' (the gRPC
/// interceptor's, and the console's own call).
/// </summary>
[EnableRateLimiting(SlotPolicies.PlanningRate)]
public sealed class PlanningService(
    GatewaySettings settings,
    CommandDispatcher dispatcher,
    AvailabilityView view,
    AvailabilityFollower follower,
    GatewayMetrics metrics,
    ILogger<PlanningService> logger) : Planning.PlanningBase
{
    [Authorize(Policy = SlotPolicies.Planner)]
    public override Task<SlotChangeResult> ConfigureSlot(ConfigureSlotRequest request, ServerCallContext context) =>
        ConfigureSlot(request, Caller(context), context.CancellationToken);

    [Authorize(Policy = SlotPolicies.Planner)]
    public override Task<SlotChangeResult> SetSlotOpen(SetSlotOpenRequest request, ServerCallContext context) =>
        SetSlotOpen(request, Caller(context), context.CancellationToken);

    [Authorize(Policy = SlotPolicies.Planner)]
    public override Task<ApplyPlanReply> ApplyPlan(ApplyPlanRequest request, ServerCallContext context) =>
        ApplyPlan(request, Caller(context), context.CancellationToken);

    [Authorize(Policy = SlotPolicies.Viewer)]
    public override Task<UtilisationReply> GetUtilisation(UtilisationRequest request, ServerCallContext context) =>
        Task.FromResult(GetUtilisation(request));

    // The same calls in process (the planners' console, whose routes need role planner, runs them
    // through GatewayCalls too): the same validation, limits and metrics; bad input throws the same
    // RpcException (INVALID_ARGUMENT, every problem named). changedBy is the caller's token subject,
    // written into the commands and events.

    public async Task<SlotChangeResult> ConfigureSlot(ConfigureSlotRequest request, string changedBy, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Configure(request, DateTimeOffset.UtcNow, out var slot).ThrowIfAny();
        return await AnsweredChange("configure", started, request.Slot,
            new SlotCommand { Slot = slot.ToString(), Configure = new ConfigureSlot { Config = request.Config, ChangedBy = changedBy } }, ct);
    }

    public async Task<SlotChangeResult> SetSlotOpen(SetSlotOpenRequest request, string changedBy, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.SetOpen(request, out var slot).ThrowIfAny();
        return await AnsweredChange("set_open", started, request.Slot,
            new SlotCommand { Slot = slot.ToString(), SetOpen = new SetSlotOpen { Open = request.Open, ChangedBy = changedBy } }, ct);
    }

    /// <summary>The authenticated caller's token subject (the authorization policy guarantees one).</summary>
    private static string Caller(ServerCallContext context) => context.GetHttpContext().User.Identity?.Name ?? "";

    /// <summary>One slot change as one call: answered and measured.</summary>
    private async Task<SlotChangeResult> AnsweredChange(string call, long started, SlotId slotId, SlotCommand command, CancellationToken ct)
    {
        var result = await Change(slotId, command, ct);
        metrics.Answered(call, result.Applied ? "accepted" : "rejected", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return result;
    }

    /// <summary>Sends every valid slot's ConfigureSlot (a bounded number at once) and reports one result per slot, in request order.
    /// Invalid slots are reported INVALID and not sent; the others are applied regardless.</summary>
    public async Task<ApplyPlanReply> ApplyPlan(ApplyPlanRequest request, string changedBy, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        if (request.Slots.Count == 0) Problem("slots", "is empty").ThrowIfAny();
        if (request.Slots.Count > RequestValidation.MaxPlanSlots)
            Problem("slots", $"has {request.Slots.Count} slots, more than {RequestValidation.MaxPlanSlots}: split the plan").ThrowIfAny();
        var duplicates = request.Slots
            .Where(s => s.Slot?.Start is not null)
            .GroupBy(s => (s.Slot.Hub, s.Slot.Start.Seconds))
            .Where(g => g.Count() > 1)
            .Select(g => $"{g.Key.Hub}@{DateTimeOffset.FromUnixTimeSeconds(g.Key.Seconds):yyyy-MM-dd'T'HH:mm'Z'}")
            .ToList();
        if (duplicates.Count > 0) Problem("slots", "slot appears more than once: " + string.Join(", ", duplicates.Take(5))).ThrowIfAny();
        var results = new SlotChangeResult[request.Slots.Count];
        using var limit = new SemaphoreSlim(settings.PlanConcurrency);
        var sends = new List<Task>(request.Slots.Count);
        for (var i = 0; i < request.Slots.Count; i++)
        {
            var index = i;
            var change = request.Slots[i];
            var problems = RequestValidation.Configure(change, DateTimeOffset.UtcNow, out var slot);
            if (problems.Any)
            {
                results[index] = new SlotChangeResult { Slot = change.Slot, Applied = false, Reason = RejectReason.Invalid, Detail = problems.ToString() };
                continue;
            }
            // Not cancelled with the call: every send must finish before the semaphore goes away
            // (a cancelled call makes each remaining change end at once as UNAVAILABLE).
            await limit.WaitAsync(CancellationToken.None);
            sends.Add(Task.Run(async () =>
            {
                try
                {
                    results[index] = await Change(change.Slot, new SlotCommand { Slot = slot.ToString(), Configure = new ConfigureSlot { Config = change.Config, ChangedBy = changedBy } }, ct);
                }
                finally
                {
                    limit.Release();
                }
            }, CancellationToken.None));
        }
        await Task.WhenAll(sends);
        var reply = new ApplyPlanReply { Results = { results } };
        reply.Applied = results.Count(r => r.Applied);
        reply.Failed = results.Length - reply.Applied;
        metrics.Answered("apply_plan", reply.Failed == 0 ? "accepted" : "partial", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        logger.LogInformation("Plan applied by {Caller}: {Applied} slots applied, {Failed} failed, in {ElapsedMs:0} ms",
            changedBy, reply.Applied, reply.Failed, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return reply;
    }

    public UtilisationReply GetUtilisation(UtilisationRequest request)
    {
        var started = Stopwatch.GetTimestamp();
        RequestValidation.Utilisation(request, out var from, out var to).ThrowIfAny();
        var reply = new UtilisationReply { ViewLagMs = follower.Lag().Ms };
        var slots = view.Slots(request.Hub, from, to);
        reply.Days.AddRange(Utilisation.PerHubAndDay(slots));
        if (request.IncludeSlots) reply.Slots.AddRange(slots);
        metrics.Answered("utilisation", "ok", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return reply;
    }

    private async Task<SlotChangeResult> Change(SlotId slotId, SlotCommand command, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var (deadline, deadlineAt) = CheckoutService.CallDeadline(settings.PlanningDeadline, TimeSpan.Zero, started, DateTime.MaxValue);
        var outcome = await dispatcher.SendAsync(command, deadline, deadlineAt, abandonOnMiss: null, ct);
        if (outcome.Reply is not { } reply)
        {
            if (outcome.Missed == CommandOutcome.Miss.DeadlineMissed) metrics.DeadlineMissed("planning");
            return new SlotChangeResult { Slot = slotId, Applied = false, Reason = RejectReason.Unavailable, Detail = outcome.Why + "; re-sending the change is safe" };
        }
        if (!reply.Accepted) metrics.Rejected(reply.Reason);
        return new SlotChangeResult { Slot = slotId, Applied = reply.Accepted, Reason = reply.Reason, Detail = reply.Detail };
    }

    private static RequestValidation.Problems Problem(string field, string problem)
    {
        var problems = new RequestValidation.Problems();
        problems.Add(field, problem);
        return problems;
    }
}
