namespace SlotCapacity.Kafka;

/// <summary>
/// A configuration or environment problem found at startup. Its message is one line that says
/// what is wrong and how to fix it; hosts print it and exit non-zero instead of a stack trace.
/// </summary>
public sealed class StartupException : Exception
{
    public StartupException() { }
    public StartupException(string message) : base(message) { }
    public StartupException(string message, Exception inner) : base(message, inner) { }

    /// <summary>True when the same step may succeed later (a broker still starting); false when
    /// something must be changed first (a wrong partition count, a missing setting).</summary>
    public bool Retryable { get; init; }
}
