using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace SlotCapacity.Contracts;

/// <summary>
/// The canonical identity of a slot: a hub and the UTC start of its two-hour window, written
/// "hub@yyyy-MM-ddTHH:mmZ". It is the Kafka key of every command, event and snapshot, so
/// every process must format it the same way.
/// </summary>
public readonly record struct SlotKey(string Hub, DateTimeOffset Start)
{
    public static readonly TimeSpan WindowLength = TimeSpan.FromHours(2);
    private const string StartFormat = "yyyy-MM-dd'T'HH:mm'Z'";

    public DateTimeOffset End => Start + WindowLength;

    public override string ToString() =>
        Hub + "@" + Start.UtcDateTime.ToString(StartFormat, CultureInfo.InvariantCulture);

    /// <summary>Checks a hub and start; returns null when valid, else what is wrong.</summary>
    public static string? Problem(string? hub, DateTimeOffset start)
    {
        if (string.IsNullOrWhiteSpace(hub)) return "hub is empty";
        if (hub.Length > 64) return "hub is longer than 64 characters";
        if (hub.Contains('@', StringComparison.Ordinal)) return "hub must not contain '@'";
        var utc = start.UtcDateTime;
        if (utc.Minute != 0 || utc.Second != 0 || utc.Millisecond != 0)
            return $"slot start {utc:O} is not on the hour";
        return null;
    }

    public static SlotKey Create(string hub, DateTimeOffset start)
    {
        var problem = Problem(hub, start);
        if (problem is not null) throw new ArgumentException(problem);
        return new SlotKey(hub, start.ToUniversalTime());
    }

    public static bool TryParse(string? text, [NotNullWhen(true)] out SlotKey? key)
    {
        key = null;
        if (string.IsNullOrEmpty(text)) return false;
        var at = text.LastIndexOf('@');
        if (at <= 0 || at == text.Length - 1) return false;
        if (!DateTimeOffset.TryParseExact(text[(at + 1)..], StartFormat, CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var start))
            return false;
        var hub = text[..at];
        if (Problem(hub, start) is not null) return false;
        key = new SlotKey(hub, start);
        return true;
    }
}
