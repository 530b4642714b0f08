using Microsoft.Extensions.Logging;
using SlotCapacity.Contracts;
using SlotCapacity.Kafka;

namespace SlotCapacity.History;

/// <summary>
/// Time travel for planners: a hub's utilisation as it was at any past instant, rebuilt from
/// `slot-events` alone, as the same <see cref="UtilisationReply"/> the Planning API's
/// GetUtilisation answers from the live view.
/// </summary>
public sealed class UtilisationReplay(string bootstrapServers, TopicNames topics, ILogger logger)
{
    /// <summary>
    /// Reads the whole events topic and folds the events of <paramref name="hub"/> (empty: every hub)
    /// that occurred at or before <paramref name="asOf"/>. Throws <see cref="IncompleteHistoryException"/>
    /// when the topic no longer holds its oldest events. Reports progress at least every second.
    /// </summary>
    public async Task<UtilisationReply> RebuildAsync(string hub, DateTimeOffset asOf, IProgress<ReplayProgress>? progress, CancellationToken ct) =>
        (await ReplayAsync(hub, asOf, progress, ct)).Utilisation();

    /// <summary>The rebuilt slots themselves, with what was skipped and why.</summary>
    public Task<ReplayedSlots> ReplayAsync(string hub, DateTimeOffset asOf, IProgress<ReplayProgress>? progress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(hub);
        // The consumer blocks: one dedicated thread rather than a pool thread for the whole read.
        return Task.Factory.StartNew(() => Replay(hub, asOf, progress, ct), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private ReplayedSlots Replay(string hub, DateTimeOffset asOf, IProgress<ReplayProgress>? progress, CancellationToken ct)
    {
        var slots = new ReplayedSlots(hub, asOf);
        SlotEventsReader.ReadAll(bootstrapServers, topics.Events, e =>
        {
            if (slots.Apply(e) is { } problem) logger.LogWarning("replay: event skipped or inconsistent: {Problem}", problem);
        }, problem =>
        {
            slots.SkipMalformed(problem);
            logger.LogWarning("replay: malformed record skipped: {Problem}", problem);
        }, progress, logger, ct);
        logger.LogInformation(
            "replay of {Hub} as of {AsOf:O}: {Applied} events applied, {Later} later ones left out, {Duplicates} duplicates, "
            + "{Skipped} malformed or unusable skipped, {Inconsistent} inconsistent",
            hub.Length == 0 ? "every hub" : hub, asOf, slots.Applied, slots.Later, slots.Duplicates, slots.Skipped, slots.Inconsistent);
        return slots;
    }
}
