using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using StreamHealth.Runtime.Observability;

namespace StreamHealth.Tests.Observability;

/// <summary>The console log format (<see cref="LogFormat"/>): JSON lines that carry the current span's ids when asked for,
/// the human format otherwise. The line is rendered by the formatter the logging setup registers, with the scope provider its
/// logger factory hands to providers (the console provider writes the same through a background queue to stdout).</summary>
public sealed class LogFormatTests
{
    [Fact]
    public void A_json_line_written_inside_a_span_carries_its_trace_and_span_ids()
    {
        var scopes = new ScopeProviderCapture();
        using var services = new ServiceCollection()
            .AddLogging(b =>
            {
                Assert.True(b.AddJsonConsoleIfAsked(Configuration(("Logging:Format", "json"))));
                b.Services.AddSingleton<ILoggerProvider>(scopes);
            })
            .BuildServiceProvider();
        services.GetRequiredService<ILoggerFactory>();   // builds the factory, which hands its scope provider to the providers
        var formatterName = services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName;
        Assert.Equal(ConsoleFormatterNames.Json, formatterName);
        var formatter = services.GetServices<ConsoleFormatter>().Single(f => f.Name == formatterName);

        using var span = new Activity("process weights").Start();
        var line = new StringWriter();
        formatter.Write(new LogEntry<string>(LogLevel.Warning, "StreamHealth.Streams", new EventId(7), "record dead-lettered", null, (s, _) => s),
            scopes.Provider, line);

        var json = JsonDocument.Parse(line.ToString()).RootElement;
        Assert.Equal("record dead-lettered", json.GetProperty("Message").GetString());
        Assert.Equal("Warning", json.GetProperty("LogLevel").GetString());
        var ids = json.GetProperty("Scopes").EnumerateArray().Single(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty("TraceId", out _));
        Assert.Equal(span.TraceId.ToHexString(), ids.GetProperty("TraceId").GetString());
        Assert.Equal(span.SpanId.ToHexString(), ids.GetProperty("SpanId").GetString());
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("simple", false)]
    [InlineData("JSON", true)]
    public void Json_is_chosen_only_when_asked_for_by_logging_format_or_the_environment_variables_key(string? format, bool json)
    {
        Assert.Equal(json, LogFormat.WantsJson(Configuration(("Logging:Format", format))));
        // STREAMHEALTH_LOG_FORMAT, as StreamHealthOptions.AddSources maps the prefixed environment variable.
        Assert.Equal(json, LogFormat.WantsJson(Configuration(("LOG_FORMAT", format))));
    }

    [Fact]
    public void Without_json_the_logging_setup_is_left_as_the_caller_made_it()
    {
        using var services = new ServiceCollection()
            .AddLogging(b =>
            {
                b.AddSimpleConsole();
                Assert.False(b.AddJsonConsoleIfAsked(Configuration(("Logging:Format", null))));
            })
            .BuildServiceProvider();
        Assert.Equal(ConsoleFormatterNames.Simple, services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
    }

    private static IConfiguration Configuration(params (string Key, string? Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();

    /// <summary>A provider that only keeps the scope provider the logger factory gives every provider that takes one.</summary>
    private sealed class ScopeProviderCapture : ILoggerProvider, ISupportExternalScope
    {
        public IExternalScopeProvider Provider { get; private set; } = null!;
        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => Provider = scopeProvider;
        public ILogger CreateLogger(string categoryName) => NullLogger.Instance;
        public void Dispose() { }
    }
}
