using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Google.Protobuf;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>Every command compose/local/up.sh prints and every curl command README.md shows, run as printed
/// (host and port pointed at a gateway this test started, FILE at a sample export) and expected to succeed:
/// a printed command that answers 4xx is a broken promise to whoever copies it.</summary>
public sealed partial class PrintedCommandsTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    [Fact]
    public async Task Every_command_up_sh_prints_and_every_curl_in_the_readme_succeeds()
    {
        await SeedWhatTheSamplesWouldAsync();
        var commands = UpShCommands().Concat(ReadmeCurlCommands()).ToList();
        Assert.Contains(commands, c => c.Contains("convert_to_unified", StringComparison.Ordinal));
        Assert.Contains(commands, c => c.Contains("streamhealth dump", StringComparison.Ordinal));
        Assert.True(commands.Count >= 7, "commands found:\n" + string.Join('\n', commands));
        var failures = new List<string>();
        foreach (var command in commands)
        {
            var isCurl = command.TrimStart().StartsWith("curl ", StringComparison.Ordinal);
            // curl -s exits 0 on a 4xx: ask curl for the status as the last line and judge by it.
            // A printed dump reads through the stack's registry, as it would on the local stack.
            var (code, stdout, stderr) = Repo.Run("bash", ["-c", isCurl ? command + " -w '\\n%{http_code}'" : command],
                isCurl ? null : new Dictionary<string, string> { ["STREAMHEALTH_SchemaRegistry__Url"] = f.Registry.Url }, timeoutMs: 60_000);
            var lines = stdout.TrimEnd().Split('\n');
            var ok = code == 0 && (!isCurl || lines[^1] is ['2', _, _]);
            // dump prints JSON lines, every record decoded (an undecodable one would carry "keyError"/"valueError").
            if (!isCurl) ok &= lines.Length > 0 && lines[0].StartsWith('{') && !stdout.Contains("Error\":", StringComparison.Ordinal);
            if (!ok) failures.Add($"{command}\n  exit {code}; last output: {OpenApiContract.Shorten(stdout.Trim())} {OpenApiContract.Shorten(stderr.Trim())}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>The data `streamhealth up`'s sample producers would have sent by the time a person copies a
    /// command: the Dexcom sample user's readings, the synthetic cohort's first person, health metrics.</summary>
    private async Task SeedWhatTheSamplesWouldAsync()
    {
        using var client = f.Client();
        var upload = await client.PostAsync("/api/v1/cgm/cgm-sample-dexcom/upload",
            new ByteArrayContent(GatewayStackFixture.RecentUnifiedCsv()) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } });
        Assert.Equal(202, (int)upload.StatusCode);
        var now = DateTime.UtcNow;
        for (var i = 3; i >= 1; i--)
            Assert.True((await client.PostAsJsonAsync("/api/weight/process", GatewayStackFixture.Measurement("synthetic-00000", 80 + i / 10.0, now.AddHours(-i)))).IsSuccessStatusCode);
        // As the sample producer does: Avro in the Confluent wire format, through the stack's registry.
        var keys = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Common.UserKey>();
        var metrics = f.Registry.Connection.SerDes<StreamHealth.Schemas.Avro.Insights.HealthMetric>();
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = f.Stack.BootstrapServers }).Build())
            for (var i = 0; i < 5; i++)
                await producer.ProduceAsync(Topics.InsightsMetrics, new Message<byte[], byte[]>
                {
                    Key = keys.Serialize(new StreamHealth.Schemas.Avro.Common.UserKey { user_id = "demo-alice" },
                        new SerializationContext(MessageComponentType.Key, Topics.InsightsMetrics)),
                    Value = metrics.Serialize(new StreamHealth.Schemas.Avro.Insights.HealthMetric
                    {
                        event_time_unix_ms = DateTime.UtcNow, metric_id = $"printed-{i}", user_id = "demo-alice", metric = "steps", value = 100 + i,
                        unit = "steps",
                    }, new SerializationContext(MessageComponentType.Value, Topics.InsightsMetrics)),
                });
        WaitFor(() => client.GetAsync("/api/weight/synthetic-00000/latest").Result.IsSuccessStatusCode
                      && client.GetAsync("/api/v1/cgm/cgm-sample-dexcom/latest").Result.IsSuccessStatusCode,
            TimeSpan.FromSeconds(60), () => "the seeded weight and CGM data never became readable");
    }

    /// <summary>up.sh's closing message, rendered by bash with this test's ports, then each command in it: the
    /// printed curl lines and the replay command as they are, each printed URL fetched (with the API key the
    /// message says /api/ needs).</summary>
    private IEnumerable<string> UpShCommands()
    {
        var script = File.ReadAllText(Path.Combine(Repo.Root, "compose", "local", "up.sh"));
        var heredoc = HereDoc().Match(script);
        Assert.True(heredoc.Success, "up.sh no longer prints its message with cat <<INFO");
        var uri = new Uri(f.BaseUrl);
        var render = $"GATEWAY_PORT={uri.Port} ROOT='{Repo.Root}' STREAMHEALTH_Kafka__BootstrapServers='{f.Stack.BootstrapServers}' " +
                     $"STREAMHEALTH_Postgres__Port=1 STREAMHEALTH_Redis__Port=1 started=$(date +%s)\ncat <<INFO\n{heredoc.Groups[1].Value}\nINFO\n";
        var (code, text, err) = Repo.Run("bash", ["-c", render]);
        Assert.True(code == 0, err);
        text = text.Replace("\\\n", " ");   // the replay command continues over two lines
        foreach (var line in text.Split('\n'))
        {
            var trimmed = Regex.Replace(line.Trim(), @"^(dashboard|health|openapi|cgm|kafka|postgres|replay)\s+", "");
            trimmed = Regex.Replace(trimmed, @"\s{3,}\(.*\)$", "");   // the explanation in parentheses after a command
            if (trimmed.StartsWith("curl ", StringComparison.Ordinal))
                yield return trimmed.Replace("@FILE", "@" + Path.Combine(Repo.SharedData, "cgm", "Clarity_Export_synthetic.csv"));
            else if (trimmed.StartsWith("http://", StringComparison.Ordinal))
                yield return trimmed.Contains("/api/", StringComparison.Ordinal)
                    ? $"curl -s -H 'X-Api-Key: {GatewayStackFixture.ApiKey}' {trimmed.Split(' ')[0]}" : $"curl -s {trimmed.Split(' ')[0]}";
            else if (trimmed.Contains("streamhealth dump", StringComparison.Ordinal))
                yield return trimmed;
        }
    }

    /// <summary>Every curl command README.md shows (inline code or a code block), pointed at this test's gateway.</summary>
    private IEnumerable<string> ReadmeCurlCommands()
    {
        var readme = File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        foreach (Match m in ReadmeCurl().Matches(readme))
            yield return m.Groups[1].Value.Replace("http://127.0.0.1:8080", f.BaseUrl)
                .Replace("@FILE", "@" + Path.Combine(Repo.SharedData, "cgm", "Clarity_Export_synthetic.csv"));
    }

    [GeneratedRegex(@"cat <<INFO\n(.*?)\nINFO\n", RegexOptions.Singleline)]
    private static partial Regex HereDoc();

    [GeneratedRegex(@"(?:`|^)(curl [^`\n]+)(?:`|$)", RegexOptions.Multiline)]
    private static partial Regex ReadmeCurl();
}
