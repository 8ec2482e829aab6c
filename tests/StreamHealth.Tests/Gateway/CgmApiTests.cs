using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Streams;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Gateway;

/// <summary>The gateway in front of a running CGM pipeline (catalogue topics, as deployed).</summary>
public sealed class CgmGatewayFixture : IAsyncLifetime
{
    public EmbeddedKafkaFixture Kafka { get; } = new();
    public TestLogs Logs { get; } = new();
    public WebApplicationFactory<Program> App { get; private set; } = null!;
    public NpgsqlDataSource Postgres { get; private set; } = null!;
    public Dictionary<string, string?> Settings { get; private set; } = [];
    private CgmPipeline _pipeline = null!;
    private StreamHealth.Forecast.Service.ForecastService _forecasts = null!;
    private ConnectionMultiplexer _redis = null!;
    /// <summary>The stand-in schema registry (on the fixture's database) the pipeline, the forecaster and the gateway share.</summary>
    public TestRegistry Registry { get; private set; } = null!;
    private readonly string _stateDir = Directory.CreateTempSubdirectory("streamhealth-gateway-cgm-").FullName;

    public async Task InitializeAsync()
    {
        var database = LocalServices.NewDatabaseName("gateway_cgm");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        Postgres = NpgsqlDataSource.Create(connectionString);
        _redis = await ConnectionMultiplexer.ConnectAsync(LocalServices.RedisConfiguration);
        Registry = TestRegistry.Start(connectionString);
        _pipeline = new CgmPipeline(new StreamHostOptions { SchemaRegistry = Registry.Connection, BootstrapServers = Kafka.BootstrapServers, CreateInternalTopic = (topic, partitions) => Kafka.Cluster.CreateTopic(topic, partitions), StateDirectory = _stateDir },
            Postgres, _redis, Logs, new CgmPipelineOptions { EmitIntervalMs = 100, MinForecastRequestIntervalMs = 500 }).Start();
        // The forecast consumer group behind GET /api/v1/cgm/{userId}/forecast, on the committed model.
        _forecasts = new StreamHealth.Forecast.Service.ForecastService(new StreamHealth.Forecast.ForecastOptions { Seed = 7 },
            new StreamHealth.Forecast.Service.ForecastConsumerSettings(Kafka.BootstrapServers), Registry.Connection, Postgres, _redis, Logs).Start();
        Settings = Registry.With(LocalServices.Overrides(database, Kafka.BootstrapServers).ToDictionary(kv => kv.Key, kv => kv.Value));
        App = WithSettings();
    }

    public WebApplicationFactory<Program> WithSettings(params (string Key, string Value)[] extra)
    {
        var settings = new Dictionary<string, string?>(Settings);
        foreach (var (k, v) in extra) settings[k] = v;
        return new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.ConfigureAppConfiguration((_, c) => c.AddInMemoryCollection(settings)));
    }

    public HttpClient Client(string? apiKey = "dev-key-change-me", WebApplicationFactory<Program>? app = null)
    {
        var client = (app ?? App).CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Add("X-Api-Key", apiKey);
        return client;
    }

    public async Task DisposeAsync()
    {
        await App.DisposeAsync();
        _pipeline.Dispose();
        _forecasts.Dispose();
        Registry.Dispose();
        _redis.Dispose();
        await Postgres.DisposeAsync();
        Kafka.Dispose();
        Directory.Delete(_stateDir, recursive: true);
    }
}

public sealed class CgmApiTests(CgmGatewayFixture f) : IClassFixture<CgmGatewayFixture>
{
    private static string Sample(string name) => Path.Combine(Repo.SharedData, "cgm", name);
    /// <summary>A shared synthetic export (dated 1961, before the event-time rule's 1990) with its years moved to 2025.</summary>
    private static byte[] In2025(string name) => Encoding.UTF8.GetBytes(File.ReadAllText(Sample(name)).Replace("-1961 ", "-2025 ").Replace("1961-", "2025-"));

    private static string U(string name) => $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)];

    private static ByteArrayContent Raw(byte[] bytes, string type = "text/csv") =>
        new(bytes) { Headers = { ContentType = new MediaTypeHeaderValue(type) } };

    private static MultipartFormDataContent Multipart(string path)
    {
        var form = new MultipartFormDataContent();
        form.Add(Raw(File.ReadAllBytes(path)), "file", "renamed-export.txt");   // the name says nothing about the format
        return form;
    }

    private static async Task<JsonElement> Problem(HttpResponseMessage response, HttpStatusCode expected)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"{response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(body).RootElement;
    }

    [Theory]
    [InlineData("Clarity_Export_synthetic.csv", "dexcom_clarity", false)]
    [InlineData("FreeStyle_Libre_3_synthetic.csv", "libreview", true)]
    public async Task Convert_to_unified_is_public_and_returns_the_expected_unified_csv(string file, string format, bool multipart)
    {
        using var client = f.Client(apiKey: null);
        HttpContent content = multipart ? Multipart(Sample(file)) : Raw(File.ReadAllBytes(Sample(file)));
        var response = await client.PostAsync("/convert_to_unified", content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/csv", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(format, response.Headers.GetValues("X-Source-Format").Single());
        var expected = File.ReadAllLines(Sample(Path.GetFileNameWithoutExtension(file) + "_unified.csv"));
        var actual = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public async Task Unreadable_files_get_422_problems_naming_the_formats_tried_or_the_line_and_nothing_else()
    {
        using var client = f.Client(apiKey: null);
        var unknown = await Problem(await client.PostAsync("/convert_to_unified", Raw("hello,world\n1,2\n"u8.ToArray())), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("dexcom_clarity", unknown.GetProperty("detail").GetString());
        Assert.Contains("libreview", unknown.GetProperty("detail").GetString());

        var lines = File.ReadAllLines(Sample("Clarity_Export_synthetic.csv"));
        lines[40] = lines[40].Replace(",EGV,,,,android G6,", ",EGV,,,,android G6,abc");
        var bad = await Problem(await client.PostAsync("/convert_to_unified", Raw(Encoding.UTF8.GetBytes(string.Join('\n', lines)))),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal(41, bad.GetProperty("line").GetInt64());
        Assert.Contains("line 41", bad.GetProperty("detail").GetString());

        await Problem(await client.PostAsync("/convert_to_unified", Raw([])), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task A_file_of_several_people_is_a_422_naming_how_many_and_is_never_mixed_into_one_user()
    {
        using var client = f.Client(apiKey: null);
        var bytes = File.ReadAllBytes(Sample("dubosson2018_t1d_9_subjects.csv"));
        var convert = await Problem(await client.PostAsync("/convert_to_unified", Raw(bytes)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("the file holds the readings of 9 people (ids \"001\", \"002\"", convert.GetProperty("detail").GetString());
        using var keyed = f.Client();
        var plot = await Problem(await keyed.PostAsync("/quick_plot", Raw(bytes)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("9 people", plot.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Uploads_over_the_size_limit_get_413_before_anything_is_parsed_or_sent()
    {
        await using var small = f.WithSettings(("Gateway:Cgm:MaxUploadBytes", "100000"));
        using var client = f.Client(app: small);
        var bytes = File.ReadAllBytes(Sample("Clarity_Export_synthetic.csv"));   // 260 KB
        var problem = await Problem(await client.PostAsync("/convert_to_unified", Raw(bytes)), HttpStatusCode.RequestEntityTooLarge);
        Assert.Contains("100000", problem.GetProperty("detail").GetString());
        await Problem(await client.PostAsync("/convert_to_unified", Multipart(Sample("Clarity_Export_synthetic.csv"))), HttpStatusCode.RequestEntityTooLarge);
        var user = U("big");
        await Problem(await client.PostAsync($"/api/v1/cgm/{user}/upload", Raw(bytes)), HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task Process_unified_gives_identical_data_the_same_handle_and_reuses_it_for_a_later_starting_subset()
    {
        using var anonymous = f.Client(apiKey: null);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsync("/process_unified", Raw(File.ReadAllBytes(Sample("Clarity_Export_synthetic.csv"))))).StatusCode);

        using var client = f.Client();
        async Task<JsonElement> Process(byte[] body)
        {
            var response = await client.PostAsync("/process_unified", Raw(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            return JsonDocument.Parse(text).RootElement;
        }
        var full = File.ReadAllBytes(Sample("Clarity_Export_synthetic.csv"));
        var first = await Process(full);
        var handle = first.GetProperty("handle").GetString();
        Assert.Matches("^[0-9a-f]{32}$", handle);
        Assert.Equal("dexcom_clarity", first.GetProperty("source_format").GetString());
        Assert.True(first.GetProperty("points").GetInt32() > 3_900);

        var again = await Process(full);
        Assert.Equal(handle, again.GetProperty("handle").GetString());

        // The same export without its first day: a subset of the range, ending at the same time.
        var lines = File.ReadAllLines(Sample("Clarity_Export_synthetic.csv"));
        var tail = lines.Take(11).Concat(lines.Skip(11 + 300));
        var subset = await Process(Encoding.UTF8.GetBytes(string.Join('\n', tail)));
        Assert.Equal(handle, subset.GetProperty("handle").GetString());
        Assert.True(subset.GetProperty("reused").GetBoolean());

        // A different ending is different data.
        var head = await Process(Encoding.UTF8.GetBytes(string.Join('\n', lines.Take(lines.Length - 300))));
        Assert.NotEqual(handle, head.GetProperty("handle").GetString());
        Assert.False(head.GetProperty("reused").GetBoolean());
    }

    [Fact]
    public async Task An_upload_while_the_schema_registry_is_down_is_a_503_that_sent_nothing_and_the_retry_is_accepted()
    {
        // A gateway that has resolved no schema id yet and whose registry does not answer; Kafka and PostgreSQL do.
        await using var noRegistry = f.WithSettings(("SchemaRegistry:Url", "http://127.0.0.1:1"));
        using var down = f.Client(app: noRegistry);
        var user = U("noreg");
        var bytes = In2025("FreeStyle_Libre_3_synthetic.csv");
        var response = await down.PostAsync($"/api/v1/cgm/{user}/upload", Raw(bytes));
        var problem = await Problem(response, HttpStatusCode.ServiceUnavailable);
        Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
        Assert.Contains("nothing was sent", problem.GetProperty("detail").GetString());

        using var client = f.Client();
        var url = $"/api/v1/cgm/{user}/readings?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&limit=100000";
        Thread.Sleep(2_000);
        Assert.Equal(0, JsonDocument.Parse(await client.GetStringAsync(url)).RootElement.GetProperty("readings").GetArrayLength());
        var retry = await client.PostAsync($"/api/v1/cgm/{user}/upload", Raw(bytes));
        Assert.True(retry.StatusCode == HttpStatusCode.Accepted, await retry.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Upload_sends_a_files_readings_through_the_pipeline_and_they_are_served_by_readings_and_latest()
    {
        using var client = f.Client();
        var user = U("libre");
        var form = new MultipartFormDataContent();
        form.Add(Raw(In2025("FreeStyle_Libre_3_synthetic.csv")), "file", "renamed-export.txt");
        var response = await client.PostAsync($"/api/v1/cgm/{user}/upload", form);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        var accepted = JsonDocument.Parse(text).RootElement;
        Assert.Equal("libreview", accepted.GetProperty("source_format").GetString());
        Assert.Equal(4621, accepted.GetProperty("readings").GetInt32());

        var url = $"/api/v1/cgm/{user}/readings?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&limit=100000";
        JsonElement page = default;
        WaitFor(() =>
        {
            page = JsonDocument.Parse(client.GetStringAsync(url).GetAwaiter().GetResult()).RootElement;
            return page.GetProperty("readings").GetArrayLength() >= 4621;
        }, TimeSpan.FromSeconds(90), () => $"{page.GetProperty("readings").GetArrayLength()}/4621 readings\n{f.Logs.Tail()}");
        var readings = page.GetProperty("readings");
        Assert.Equal(4621, readings.GetArrayLength());
        Assert.Equal(98, readings[0].GetProperty("glucose_mg_dl").GetDouble());
        Assert.Equal("egv", readings[0].GetProperty("event_type").GetString());

        JsonElement latest = default;
        WaitFor(() =>
        {
            var r = client.GetAsync($"/api/v1/cgm/{user}/latest").GetAwaiter().GetResult();
            if (r.StatusCode != HttpStatusCode.OK) return false;
            latest = JsonDocument.Parse(r.Content.ReadAsStringAsync().GetAwaiter().GetResult()).RootElement;
            return latest.GetProperty("source").GetString() == "redis";
        }, TimeSpan.FromSeconds(30), () => "no latest glucose from Redis");
        Assert.False(string.IsNullOrEmpty(latest.GetProperty("trend_arrow").GetString()));

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/cgm/{U("nobody")}/latest")).StatusCode);

        // The file holds more than 8 hours: the topology asks for a forecast, the consumer group answers it.
        JsonElement forecast = default;
        WaitFor(() =>
        {
            var r = client.GetAsync($"/api/v1/cgm/{user}/forecast").GetAwaiter().GetResult();
            if (r.StatusCode != HttpStatusCode.OK) return false;
            forecast = JsonDocument.Parse(r.Content.ReadAsStringAsync().GetAwaiter().GetResult()).RootElement;
            return true;
        }, TimeSpan.FromSeconds(60), () => $"no forecast for {user}\n{f.Logs.Tail()}");
        Assert.Equal(12, forecast.GetProperty("median_mg_dl").GetArrayLength());
        Assert.Equal(10, forecast.GetProperty("mc_samples").GetInt32());
        var bands = forecast.GetProperty("bands").EnumerateArray().ToList();
        Assert.Equal([0.05, 0.25, 0.75, 0.95], bands.Select(b => Math.Round(b.GetProperty("quantile").GetDouble(), 2)));
        for (var k = 0; k < 12; k++)
        {
            var median = forecast.GetProperty("median_mg_dl")[k].GetDouble();
            Assert.InRange(median, bands[1].GetProperty("glucose_mg_dl")[k].GetDouble(), bands[2].GetProperty("glucose_mg_dl")[k].GetDouble());
            Assert.True(bands[0].GetProperty("glucose_mg_dl")[k].GetDouble() < bands[3].GetProperty("glucose_mg_dl")[k].GetDouble());
        }
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/cgm/{U("nobody")}/forecast")).StatusCode);
    }

    [Fact]
    public async Task Draw_a_plot_renders_a_fan_chart_of_any_window_of_a_processed_dataset()
    {
        using var client = f.Client();
        var processed = JsonDocument.Parse(await (await client.PostAsync("/process_unified",
            Raw(File.ReadAllBytes(Sample("FreeStyle_Libre_3_synthetic.csv"))))).Content.ReadAsStringAsync()).RootElement;
        var handle = processed.GetProperty("handle").GetString()!;

        var latest = await client.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 });
        Assert.Equal(HttpStatusCode.OK, latest.StatusCode);
        Assert.Equal("image/svg+xml", latest.Content.Headers.ContentType?.MediaType);
        var windows = int.Parse(latest.Headers.GetValues("X-Window-Count").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(windows > 100, $"{windows} windows");
        var svg = System.Xml.Linq.XDocument.Parse(await latest.Content.ReadAsStringAsync());
        System.Xml.Linq.XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Contains(svg.Descendants(ns + "polyline"), p => (string?)p.Attribute("class") == "median");
        Assert.Empty(svg.Descendants(ns + "circle"));   // the latest window has no known future

        // An earlier window shows the true values after its forecast time.
        var earlier = System.Xml.Linq.XDocument.Parse(await (await client.PostAsJsonAsync("/draw_a_plot", new { handle, index = -30 })).Content.ReadAsStringAsync());
        Assert.Equal(12, earlier.Descendants(ns + "circle").Count());

        var outOfRange = await Problem(await client.PostAsJsonAsync("/draw_a_plot", new { handle, index = -windows }), HttpStatusCode.BadRequest);
        Assert.True(outOfRange.GetProperty("errors").TryGetProperty("index", out _));
        await Problem(await client.PostAsJsonAsync("/draw_a_plot", new { handle = "0123456789abcdef0123456789abcdef", index = 0 }), HttpStatusCode.NotFound);

        // Cache management: the plots above are cached; flush empties it; delete removes the dataset.
        var info = JsonDocument.Parse(await (await client.PostAsJsonAsync("/cache_management", new { action = "info" })).Content.ReadAsStringAsync()).RootElement;
        Assert.True(info.GetProperty("forecast_cache_entries").GetInt32() >= 2);
        var flushed = JsonDocument.Parse(await (await client.PostAsJsonAsync("/cache_management", new { action = "flush" })).Content.ReadAsStringAsync()).RootElement;
        Assert.True(flushed.GetProperty("removed").GetInt64() >= 2);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync("/cache_management", new { action = "delete", handle })).StatusCode);
        await Problem(await client.PostAsJsonAsync("/draw_a_plot", new { handle, index = 0 }), HttpStatusCode.NotFound);
        var bad = await Problem(await client.PostAsJsonAsync("/cache_management", new { action = "explode" }), HttpStatusCode.BadRequest);
        Assert.True(bad.GetProperty("errors").TryGetProperty("action", out _));
    }

    [Fact]
    public async Task Quick_plot_turns_a_real_export_into_a_fan_chart_in_one_call_and_refuses_files_too_short_to_forecast()
    {
        using var client = f.Client();
        var response = await client.PostAsync("/quick_plot", Multipart(Sample("Clarity_Export_synthetic.csv")));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var svg = System.Xml.Linq.XDocument.Parse(text);
        System.Xml.Linq.XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Equal(2, svg.Descendants(ns + "path").Count(p => (string?)p.Attribute("class") == "band"));

        var lines = File.ReadAllLines(Sample("Clarity_Export_synthetic.csv"));
        var fourHours = string.Join('\n', lines.Take(11 + 48));
        var shortFile = await Problem(await client.PostAsync("/quick_plot", Raw(System.Text.Encoding.UTF8.GetBytes(fourHours))), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("8 hours", shortFile.GetProperty("detail").GetString());
        await Problem(await client.PostAsync("/quick_plot", Raw("not,a,cgm,file\n"u8.ToArray())), HttpStatusCode.UnprocessableEntity);

        var health = JsonDocument.Parse(await client.GetStringAsync("/health")).RootElement.GetProperty("forecast");
        Assert.True(health.GetProperty("ready").GetBoolean());
        Assert.StartsWith("glucose-forecaster", health.GetProperty("modelVersion").GetString());
    }

    [Fact]
    public async Task A_bad_upload_sends_nothing_and_bad_parameters_name_the_field()
    {
        using var client = f.Client();
        var user = U("badup");
        var lines = File.ReadAllLines(Sample("Clarity_Export_synthetic.csv"));
        lines[^5] = lines[^5].Replace("android G6,", "android G6,-x");   // near the end: everything before it parsed
        var problem = await Problem(await client.PostAsync($"/api/v1/cgm/{user}/upload", Raw(Encoding.UTF8.GetBytes(string.Join('\n', lines)))),
            HttpStatusCode.UnprocessableEntity);
        Assert.Equal(lines.Length - 4, problem.GetProperty("line").GetInt64());
        Thread.Sleep(2_000);
        var page = JsonDocument.Parse(await client.GetStringAsync($"/api/v1/cgm/{user}/readings?from=1961-01-01T00:00:00Z&to=1962-01-01T00:00:00Z")).RootElement;
        Assert.Equal(0, page.GetProperty("readings").GetArrayLength());

        var invalid = await Problem(await client.PostAsync("/api/v1/cgm/bad user!/upload", Raw("x"u8.ToArray())), HttpStatusCode.BadRequest);
        Assert.True(invalid.GetProperty("errors").TryGetProperty("userId", out _));
        var range = await Problem(await client.GetAsync($"/api/v1/cgm/{user}/readings?from=yesterday"), HttpStatusCode.BadRequest);
        Assert.True(range.GetProperty("errors").TryGetProperty("from", out _));
    }

    private static string NowClarity(params (DateTime Time, string Glucose)[] rows)
    {
        var lines = new List<string> { "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID" };
        for (var i = 0; i < rows.Length; i++)
            lines.Add($"{i + 1},{rows[i].Time:yyyy-MM-ddTHH:mm:ss},EGV,,,,android G6,{rows[i].Glucose},,,,,{1000 + i},ABC");
        return string.Join('\n', lines) + "\n";
    }

    /// <summary>Issue 11, defect 4: a file with one reading a year ahead is refused whole (422 naming the line and the
    /// time) and sends nothing.</summary>
    [Fact]
    public async Task An_upload_with_a_reading_a_year_ahead_is_422_naming_the_line_and_the_time_and_sends_nothing()
    {
        using var client = f.Client();
        var user = U("future");
        var now = DateTime.UtcNow;
        var body = NowClarity((now.AddMinutes(-15), "110"), (now.AddMinutes(-10), "112"), (now.AddDays(365), "180"), (now.AddMinutes(-5), "115"));
        var problem = await Problem(await client.PostAsync($"/api/v1/cgm/{user}/upload", Raw(Encoding.UTF8.GetBytes(body))), HttpStatusCode.UnprocessableEntity);
        Assert.Equal(4, problem.GetProperty("line").GetInt64());
        Assert.Contains(now.AddDays(365).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), problem.GetProperty("detail").GetString());
        Assert.Contains("ahead", problem.GetProperty("detail").GetString());
        Thread.Sleep(2_000);
        var page = JsonDocument.Parse(await client.GetStringAsync($"/api/v1/cgm/{user}/readings?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")).RootElement;
        Assert.Equal(0, page.GetProperty("readings").GetArrayLength());
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/cgm/{user}/latest")).StatusCode);
    }

    /// <summary>Issue 11, defect 4, wall-clock exports: a Clarity export made east of UTC has local times that lie hours
    /// "ahead" of the gateway's UTC clock. Without its offset it is refused with a hint naming utc_offset; with it, the
    /// readings are stored at their UTC instants. A malformed offset is a 400 naming the parameter.</summary>
    [Fact]
    public async Task A_wall_clock_export_east_of_utc_needs_its_utc_offset_and_is_stored_in_utc()
    {
        using var client = f.Client();
        var user = U("tokyo");
        var localNow = DateTime.UtcNow.AddHours(9);
        var body = Encoding.UTF8.GetBytes(NowClarity((localNow.AddMinutes(-15), "110"), (localNow.AddMinutes(-10), "112"), (localNow.AddMinutes(-5), "115")));

        var refused = await Problem(await client.PostAsync($"/api/v1/cgm/{user}/upload", Raw(body)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("utc_offset", refused.GetProperty("detail").GetString());

        var bad = await Problem(await client.PostAsync($"/api/v1/cgm/{user}/upload?utc_offset=%2B25:00", Raw(body)), HttpStatusCode.BadRequest);
        Assert.True(bad.GetProperty("errors").TryGetProperty("utc_offset", out _), bad.ToString());

        var accepted = await client.PostAsync($"/api/v1/cgm/{user}/upload?utc_offset=%2B09:00", Raw(body));
        Assert.True(accepted.StatusCode == HttpStatusCode.Accepted, await accepted.Content.ReadAsStringAsync());
        JsonElement page = default;
        WaitFor(() =>
        {
            page = JsonDocument.Parse(client.GetStringAsync($"/api/v1/cgm/{user}/readings").GetAwaiter().GetResult()).RootElement;
            return page.GetProperty("readings").GetArrayLength() >= 3;
        }, TimeSpan.FromSeconds(60), () => $"{page.GetProperty("readings").GetArrayLength()}/3 readings\n{f.Logs.Tail()}");
        var newest = page.GetProperty("readings")[2].GetProperty("time").GetDateTime().ToUniversalTime();
        // The newest local reading was 5 min before local now, so 5 min before UTC now (to the second the export keeps).
        Assert.InRange((DateTime.UtcNow - newest).TotalMinutes, 4.9, 7);
    }

    /// <summary>Issue 11, defect 6: a NUL in a dataset handle is a 400 naming handle, never a 500 from PostgreSQL.</summary>
    [Fact]
    public async Task A_nul_in_a_handle_is_400_naming_handle()
    {
        using var client = f.Client();
        foreach (var (path, body) in new (string, object)[]
                 {
                     ("/draw_a_plot", new { handle = "abc\u0000def", index = 0 }),
                     ("/cache_management", new { action = "delete", handle = "abc\u0000def" }),
                     ("/draw_a_plot", new { handle = new string('a', 300), index = 0 }),
                 })
        {
            var problem = await Problem(await client.PostAsync(path, new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json")),
                HttpStatusCode.BadRequest);
            Assert.True(problem.GetProperty("errors").TryGetProperty("handle", out _), problem.ToString());
        }
    }

    /// <summary>Issue 11, defect 8: the command up.sh prints (curl --data-binary, which declares a form content type)
    /// converts; a file mixing two exports reports the lines it skipped; an impossible value is flagged.</summary>
    [Fact]
    public async Task Convert_accepts_curl_form_content_type_reports_skipped_rows_and_flags_impossible_values()
    {
        using var client = f.Client(apiKey: null);
        var clarity = File.ReadAllBytes(Sample("Clarity_Export_synthetic.csv"));
        var curl = await client.PostAsync("/convert_to_unified", Raw(clarity, "application/x-www-form-urlencoded"));
        Assert.True(curl.StatusCode == HttpStatusCode.OK, await curl.Content.ReadAsStringAsync());
        Assert.Equal("dexcom_clarity", curl.Headers.GetValues("X-Source-Format").Single());

        var libre = File.ReadAllLines(Sample("FreeStyle_Libre_3_synthetic.csv")).Skip(2).Take(30).ToList();
        var clarityLines = File.ReadAllLines(Sample("Clarity_Export_synthetic.csv"));
        var mixed = string.Join('\n', clarityLines.Concat(libre));
        var response = await client.PostAsync("/convert_to_unified", Raw(Encoding.UTF8.GetBytes(mixed)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(int.Parse(response.Headers.GetValues("X-Skipped-Rows").Single(), System.Globalization.CultureInfo.InvariantCulture) >= 30);
        Assert.Contains($"unknown event type (another format, or a newer export): 30 (first line {clarityLines.Length + 1})",
            response.Headers.GetValues("X-Skipped-Reasons").Single());

        var body = NowClarity((new DateTime(2020, 1, 1, 0, 0, 0), "110"), (new DateTime(2020, 1, 1, 0, 5, 0), "99999"));
        var flagged = await client.PostAsync("/convert_to_unified", Raw(Encoding.UTF8.GetBytes(body)));
        Assert.Equal(HttpStatusCode.OK, flagged.StatusCode);
        Assert.Equal("1", flagged.Headers.GetValues("X-Impossible-Glucose").Single());
        Assert.Equal("3", flagged.Headers.GetValues("X-Impossible-Glucose-First-Line").Single());
        var csv = (await flagged.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var header = csv[0].Split(',');
        var row = csv.Single(l => l.Contains("99999")).Split(',');
        Assert.Equal("1", row[Array.IndexOf(header, "quality")]);

        var processed = await f.Client().PostAsync("/process_unified", Raw(Encoding.UTF8.GetBytes(mixed), "application/x-www-form-urlencoded"));
        var json = JsonDocument.Parse(await processed.Content.ReadAsStringAsync()).RootElement;
        Assert.True(processed.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Contains(json.GetProperty("skipped").EnumerateArray(), k => k.GetProperty("rows").GetInt32() == 30
            && k.GetProperty("first_line").GetInt64() == clarityLines.Length + 1);
    }
}
