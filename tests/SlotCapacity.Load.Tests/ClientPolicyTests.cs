using System.Collections.Concurrent;
using Grpc.Core;
using SlotCapacity.Kafka;
using SlotCapacity.Load;
using SlotCapacity.Load.Targets;

namespace SlotCapacity.Load.Tests;

public class ClientPolicyTests
{
    private static readonly SlotPlan Plan = SlotPlan.Hot("retry", DateTimeOffset.UtcNow.AddDays(3), expectedReserves: 1_000);

    private static async Task<(PhaseResult Phase, OpenLoopRunner Runner)> RunReserves(ITarget target, int count)
    {
        var runner = new OpenLoopRunner(target, new Workload(Plan, 5, "retry"), new ConcurrentQueue<AcceptedReservation>(), TextWriter.Null);
        var phase = await runner.RunPhaseAsync("1x", 1, count, 0, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);
        return (phase, runner);
    }

    [Fact]
    public async Task A_call_that_fails_once_in_transport_is_sent_again_with_the_same_reservation_and_counted_retried_not_lost()
    {
        // Every third reserve meets a gateway going away on its first attempt.
        var target = new FlakyTarget((sequence, attempt) => sequence % 3 == 0 && attempt == 0 ? FlakyTarget.Unavailable() : null);

        var (phase, runner) = await RunReserves(target, 60);

        Assert.Equal(60, phase.Reserve.Count);
        Assert.Equal(20, phase.Reserve.Retried);
        Assert.Equal(0, phase.Reserve.Lost);
        Assert.Equal(0, phase.Reserve.Failures);
        Assert.Equal(60, phase.Reserve.Accepted);
        // The retry is the same operation (same sequence, so the same reservation id), attempt 1.
        var attempts = target.Attempts.ToArray();
        Assert.Equal(80, attempts.Length);
        Assert.All(attempts.Where(a => a.Attempt == 1), a => Assert.Equal(0, a.Sequence % 3));
        Assert.All(runner.Fates.Values, f => Assert.Equal(CallerFate.Live, f));
    }

    [Fact]
    public async Task A_call_that_never_gets_through_is_lost_after_its_attempts_and_the_caller_knows_nothing_of_it()
    {
        var target = new FlakyTarget((sequence, _) => sequence == 1 ? FlakyTarget.Unavailable() : null);

        var (phase, runner) = await RunReserves(target, 10);

        Assert.Equal(1, phase.Reserve.Lost);
        Assert.Equal(1, phase.Reserve.Retried);
        Assert.Equal(1, phase.Reserve.Errors["grpc Unavailable"]);
        Assert.Equal(ClientPolicy.Default.MaxAttempts, target.Attempts.Count(a => a.Sequence == 1));
        Assert.Equal(CallerFate.NoAnswer, runner.Fates.Single(f => f.Value != CallerFate.Live).Value);
    }

    [Fact]
    public async Task A_definite_error_is_not_retried()
    {
        var target = new FlakyTarget((sequence, _) => sequence == 1 ? new RpcException(new Status(StatusCode.InvalidArgument, "bad")) : null);

        var (phase, _) = await RunReserves(target, 10);

        Assert.Equal(0, phase.Reserve.Retried);
        Assert.Equal(0, phase.Reserve.Lost);
        Assert.Equal(1, phase.Reserve.Errors["grpc InvalidArgument"]);
        Assert.Single(target.Attempts, a => a.Sequence == 1);
    }

    [Fact]
    public async Task The_system_target_fails_over_to_the_other_gateway_when_one_refuses_connections()
    {
        var (app, addresses) = await EchoServer.StartAsync([0], CancellationToken.None);
        await using (app)
        {
            // The first "gateway" is a loopback port nothing listens on.
            var dead = new Uri($"http://127.0.0.1:{LocalProcess.FreeLoopbackPort()}");
            await using var target = new SystemTarget([dead, addresses[0]], null, new TopicNames(""));
            var runner = new OpenLoopRunner(target, new Workload(Plan, 5, "failover"), new ConcurrentQueue<AcceptedReservation>(), TextWriter.Null);

            var phase = await runner.RunPhaseAsync("1x", 1, 20, 20, TimeSpan.FromSeconds(1), measured: true, CancellationToken.None);

            Assert.Equal(20, phase.Reserve.Accepted);
            Assert.Equal(0, phase.Reserve.Lost + phase.Read.Lost);
            Assert.Equal(0, phase.Reserve.Failures + phase.Read.Failures);
            // Round robin sends half of each kind to the dead one first; each of those is answered on its retry.
            Assert.Equal(10, phase.Reserve.Retried);
            Assert.Equal(10, phase.Read.Retried);
        }
    }
}
