using Google.Protobuf;
using SlotCapacity.Contracts;

namespace SlotCapacity.Gateway;

/// <summary>
/// The availability view saved to a local file with the position of every partition it reflects, so a
/// restarted gateway reads only what was written since instead of the whole topic (on the local cluster
/// every record costs a fetch round trip: ~2,400-14,000 records/s). Written to a temporary file and
/// renamed, so a crash leaves the previous checkpoint whole.
/// </summary>
public sealed record ViewCheckpoint(string Topic, IReadOnlyDictionary<int, long> Positions, IReadOnlyList<AvailabilitySnapshot> Snapshots)
{
    private const string Magic = "slot-capacity-view-checkpoint-1";

    public void Save(string path)
    {
        var temporary = path + ".tmp";
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder) Directory.CreateDirectory(folder);
        using (var file = File.Create(temporary))
        using (var output = new CodedOutputStream(file))
        {
            output.WriteString(Magic);
            output.WriteString(Topic);
            output.WriteInt32(Positions.Count);
            foreach (var (partition, position) in Positions)
            {
                output.WriteInt32(partition);
                output.WriteInt64(position);
            }
            output.WriteInt32(Snapshots.Count);
            foreach (var snapshot in Snapshots) output.WriteBytes(snapshot.ToByteString());
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The checkpoint at <paramref name="path"/>; null with <paramref name="problem"/> set when there
    /// is none or it cannot be used (then the view is read from the start of the topic).</summary>
    public static ViewCheckpoint? Load(string path, out string? problem)
    {
        problem = null;
        if (!File.Exists(path))
        {
            problem = "no checkpoint file yet";
            return null;
        }
        try
        {
            using var file = File.OpenRead(path);
            using var input = new CodedInputStream(file);
            if (input.ReadString() != Magic)
            {
                problem = "not a view checkpoint (or another version)";
                return null;
            }
            var topic = input.ReadString();
            var positions = new Dictionary<int, long>();
            for (int i = 0, count = input.ReadInt32(); i < count; i++) positions[input.ReadInt32()] = input.ReadInt64();
            var snapshots = new List<AvailabilitySnapshot>();
            for (int i = 0, count = input.ReadInt32(); i < count; i++) snapshots.Add(AvailabilitySnapshot.Parser.ParseFrom(input.ReadBytes()));
            return new ViewCheckpoint(topic, positions, snapshots);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidProtocolBufferException)
        {
            problem = $"unreadable ({e.Message})";
            return null;
        }
    }
}
