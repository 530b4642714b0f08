namespace SlotCapacity.Kafka;

/// <summary>A topic the system needs, with the partition count it must have.</summary>
public sealed record TopicSpec(string Name, int Partitions, bool Compacted = false);

/// <summary>
/// Every topic name in one place. A prefix (TOPIC_PREFIX) gives a test run or a tenant its own
/// set of topics and its own processor application id on a shared cluster.
/// </summary>
public sealed record TopicNames(string Prefix = "")
{
    public const int DefaultSlotPartitions = 12;
    public const int DefaultReplyPartitions = 12;
    public const string SlotStateStore = "slot-state";
    public const string PrefixVariable = "TOPIC_PREFIX";

    public string Commands => Prefix + "slot-commands";
    public string Replies => Prefix + "slot-replies";
    public string Events => Prefix + "slot-events";
    public string Availability => Prefix + "slot-availability";
    public string ProcessorApplicationId => Prefix + "slot-processor";
    public string StateChangelog => $"{ProcessorApplicationId}-{SlotStateStore}-changelog";

    /// <summary>
    /// Commands, events, availability and the state changelog are keyed by slot and must share one
    /// partition count (Streamiz co-partitions a task's input with its changelog). Replies are
    /// partitioned by gateway, independently.
    /// </summary>
    public IReadOnlyList<TopicSpec> Specs(int slotPartitions = DefaultSlotPartitions, int replyPartitions = DefaultReplyPartitions) =>
    [
        new(Commands, slotPartitions),
        new(Replies, replyPartitions),
        new(Events, slotPartitions),
        new(Availability, slotPartitions, Compacted: true),
        new(StateChangelog, slotPartitions, Compacted: true),
    ];
}
