using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace SlotCapacity.Kafka;

/// <summary>
/// How every command-line tool of the system runs its System.CommandLine root: help for each verb and
/// option comes from their descriptions, and a bad command line is refused before anything runs, with
/// one line per problem naming the option, and exit code 2.
/// </summary>
public static class CommandLines
{
    public const int BadUsage = 2;

    /// <summary>Parses <paramref name="args"/> and runs the chosen command's action; its exceptions propagate
    /// to the caller, which turns the expected ones into one-line messages. Errors start with <paramref name="tool"/>
    /// (default: the executable's name).</summary>
    public static async Task<int> InvokeAsync(RootCommand root, string[] args, TextWriter? output = null, TextWriter? error = null,
        string? tool = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(root);
        var stderr = error ?? Console.Error;
        var name = tool ?? root.Name;
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var problem in parsed.Errors) await stderr.WriteLineAsync($"{name}: {problem.Message}");
            await stderr.WriteLineAsync($"{name}: see {string.Join(' ', [name, .. Verbs(parsed), "--help"])}");
            return BadUsage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration
        {
            Output = output ?? Console.Out,
            Error = stderr,
            EnableDefaultExceptionHandler = false,
            // Each long-running program stops gracefully on SIGTERM/SIGINT itself (the gateway drains
            // its calls, the processor closes its tasks, the warehouse commits what it wrote).
            // System.CommandLine's own handler would force the exit after 2 s, and a second signal
            // made it throw from the signal thread (the warehouse aborted on `make run`'s stop).
            ProcessTerminationTimeout = null,
        }, ct);
    }

    /// <summary>Reads an option's text; false when it is not valid.</summary>
    public delegate bool TryRead<T>(string text, out T value);

    /// <summary>An option read by <paramref name="read"/>; a bad value is a parse error
    /// "--name 'value' is not <paramref name="expected"/>".</summary>
    public static Option<T> Parsed<T>(string name, string description, TryRead<T> read, string expected)
    {
        ArgumentNullException.ThrowIfNull(read);
        return new Option<T>(name)
        {
            Description = description,
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
                if (read(text, out var value)) return value;
                result.AddError($"{name} '{text}' is not {expected}");
                return default!;
            },
        };
    }

    /// <summary>A whole-number option from <paramref name="min"/> to <paramref name="max"/>, <paramref name="fallback"/> when not given
    /// (shown in the help); anything else is a parse error naming the option and the range.</summary>
    public static Option<T> WholeNumber<T>(string name, string description, T min, T max, T? fallback = null) where T : struct, IBinaryInteger<T>
    {
        var option = Parsed(name, description, (string text, out T value) =>
            T.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value) && value >= min && value <= max,
            $"a whole number from {min} to {max}");
        if (fallback is { } value) option.DefaultValueFactory = _ => value;
        return option;
    }

    private static IEnumerable<string> Verbs(ParseResult parsed)
    {
        var path = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r is CommandResult { Parent: not null } command; r = command.Parent)
            path.Insert(0, command.Command.Name);
        return path;
    }
}
