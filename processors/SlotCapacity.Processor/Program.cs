using Microsoft.Extensions.Logging;
using SlotCapacity.Kafka;
using SlotCapacity.Processor;

ProcessorOptions options;
try
{
    options = SettingsBinder.BindValid<ProcessorOptions>(SettingsBinder.Environment());
}
catch (StartupException e)
{
    foreach (var problem in e.Message.Split('\n')) await Console.Error.WriteLineAsync($"processor: {problem}");
    return 2;
}
using var loggers = LoggerFactory.Create(logging => logging
    .AddJsonConsole(json =>
    {
        json.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        json.UseUtcTimestamp = true;
    })
    .SetMinimumLevel(LogLevel.Information)
    .AddFilter("Streamiz", options.StreamizLogLevel));
var log = loggers.CreateLogger("SlotCapacity.Processor");

using var stop = new CancellationTokenSource();
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

var failed = false;
try
{
    // A stream that dies exits the process (code 1) so whatever runs it starts it again.
    var settings = options.ToSettings() with
    {
        OnStreamFailed = _ =>
        {
            failed = true;
            stop.Cancel();
        },
    };
    await using var processor = await SlotProcessor.StartAsync(settings, loggers, stop.Token);
    await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
    return failed ? 1 : 0;
}
catch (StartupException e)
{
    log.LogCritical("{Problem}", e.Message);
    await Console.Error.WriteLineAsync(e.Message);
    return 2;
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    return 0;
}
