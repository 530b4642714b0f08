using Microsoft.Extensions.Logging.Abstractions;
using SlotCapacity.Kafka;
using Xunit;

namespace SlotCapacity.Processor.Tests;

/// <summary>The rehearsal a processor runs on its own topology before it joins the group.</summary>
public sealed class RehearsalTests
{
    [Fact]
    public void A_starting_processor_rehearses_every_kind_of_command_in_memory_and_leaves_nothing_in_its_state_directory()
    {
        var state = Path.Combine(Path.GetTempPath(), "slot-rehearsal", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(state);
        try
        {
            // An unreachable broker: the rehearsal never talks to Kafka.
            var settings = new ProcessorSettings("127.0.0.1:1", new TopicNames("rehearsal."), state, "rehearsing");
            // Ten commands with a reply partition, and one malformed record that cannot name one.
            Assert.Equal(10, Rehearsal.Run(settings, replyPartitions: 4, NullLoggerFactory.Instance));
            Assert.Empty(Directory.EnumerateFileSystemEntries(state));

            // A rehearsal cut short by a kill leaves its scratch state behind: the next one clears it.
            Directory.CreateDirectory(Path.Combine(state, "rehearsal", "slot-processor", "0-0"));
            Assert.Equal(10, Rehearsal.Run(settings, replyPartitions: 4, NullLoggerFactory.Instance));
            Assert.Empty(Directory.EnumerateFileSystemEntries(state));
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }
}
