namespace SlotCapacity.Gateway;

/// <summary>
/// The correlation (and command) id a gateway gives each command it writes:
/// <c>{incarnation}.{kind}.{unique}</c>. The incarnation is random per process, so a reply to an earlier
/// incarnation's call (a crashed or restarted gateway) is told apart from a reply this process forgot;
/// the kind says whether the command was a Reserve, so such a reply can be judged: an accepted one means
/// capacity is held for a caller that never saw the answer.
/// </summary>
public readonly record struct CorrelationId(string Incarnation, bool Reserve, string Unique)
{
    private const char Separator = '.';

    public static CorrelationId New(string incarnation, bool reserve) => new(incarnation, reserve, Guid.NewGuid().ToString("N"));

    public bool IsFrom(string incarnation) => string.Equals(Incarnation, incarnation, StringComparison.Ordinal);

    public override string ToString() => $"{Incarnation}{Separator}{(Reserve ? "reserve" : "other")}{Separator}{Unique}";

    /// <summary>False for ids in another shape (e.g. written by an older gateway version).</summary>
    public static bool TryParse(string text, out CorrelationId id)
    {
        id = default;
        var parts = text.Split(Separator);
        if (parts.Length != 3 || parts[0].Length == 0 || parts[2].Length == 0 || parts[1] is not ("reserve" or "other")) return false;
        id = new CorrelationId(parts[0], parts[1] == "reserve", parts[2]);
        return true;
    }
}
