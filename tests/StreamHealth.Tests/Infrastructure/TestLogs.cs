using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>Collects log lines of the code under test so a failing assertion can show them (from Information up, or
/// from <paramref name="minimum"/> for a test about what is logged at all).</summary>
public sealed class TestLogs(LogLevel minimum = LogLevel.Information) : ILoggerProvider, ILoggerFactory
{
    private readonly ConcurrentQueue<string> _lines = new();

    public string Text => string.Join('\n', _lines);

    public string Tail(int lines = 60) => string.Join('\n', _lines.Skip(Math.Max(0, _lines.Count - lines)));

    /// <summary>Writes every line to a temporary file and returns the last few plus the file's path.</summary>
    public string Dump(string name)
    {
        var path = Path.Combine(Path.GetTempPath(), $"streamhealth-{name}-{DateTime.UtcNow:HHmmss}.log");
        File.WriteAllText(path, Text);
        return $"{Tail(30)}\n(full log: {path})";
    }

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines, minimum);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(string category, ConcurrentQueue<string> lines, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) lines.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
    }
}
