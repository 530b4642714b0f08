using System.Globalization;
using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;

namespace SlotCapacity.Processor;

/// <summary>
/// A file that exists, holding this process's id, while the processor's stream is running: every
/// task it was assigned created and restored, between rebalances. A rolling restart waits for it
/// before stopping the next processor (a container health check, the fault suite); without it, the
/// next one was stopped while the first was still starting and every partition went dark. A
/// SIGKILLed processor cannot remove it: readers compare the id with the process they expect.
/// </summary>
internal sealed class ReadyFile
{
    private readonly string _path;
    private readonly ILogger _log;
    private readonly Lock _lock = new();

    /// <summary>Removes a file left by an earlier process; a path that cannot be written stops the start, naming it.</summary>
    public ReadyFile(string path, ILogger log)
    {
        _path = Path.GetFullPath(path);
        _log = log;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
            Write(running: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StartupException($"PROCESSOR_READY_FILE '{path}' cannot be written: {e.Message}", e);
        }
    }

    /// <summary>
    /// Written (whole, through a rename) when the stream runs; removed when it rebalances, stops or fails.
    /// Called from Streamiz's threads: a failure is logged, never thrown into the stream.
    /// </summary>
    public void Set(bool running)
    {
        try
        {
            Write(running);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.LogWarning("Processor ready file {ReadyFile} could not be {Change}: {Problem}", _path, running ? "written" : "removed", e.Message);
        }
    }

    private void Write(bool running)
    {
        lock (_lock)
        {
            if (!running)
            {
                File.Delete(_path);
                return;
            }
            var written = _path + ".tmp";
            File.WriteAllText(written, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
            File.Move(written, _path, overwrite: true);
        }
    }
}
