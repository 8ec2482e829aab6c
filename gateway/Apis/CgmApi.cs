using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Validation;
using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Serialization;
using Confluent.Kafka;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.WebUtilities;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Gateway.Cgm;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Gateway.Apis;

/// <summary>CGM endpoints (GluRPC parity plus the per-user API): vendor exports in, unified CSV, stored
/// datasets and readings out. Files are auto-detected by content (Dexcom Clarity, LibreView, Medtronic
/// CareLink, Nightscout JSON/CSV, unified CSV) and sent either as the raw body or as the first file of a
/// multipart form; anything over Gateway:Cgm:MaxUploadBytes is answered 413, a file that cannot be read
/// 422 naming the line and the problem. Nothing is written anywhere unless the whole file parsed.</summary>
public static class CgmApi
{
    public const int DefaultReadingsLimit = 10_000;
    public const int MaxReadingsLimit = 100_000;
    public static readonly TimeSpan DefaultReadingsRange = TimeSpan.FromDays(7);

    public sealed record ProcessedDataset(
        [property: JsonPropertyName("handle")] string Handle,
        [property: JsonPropertyName("reused")] bool Reused,
        [property: JsonPropertyName("source_format")] string SourceFormat,
        [property: JsonPropertyName("first_time")] DateTime FirstTime,
        [property: JsonPropertyName("last_time")] DateTime LastTime,
        [property: JsonPropertyName("points")] int Points,
        [property: JsonPropertyName("sequences")] int Sequences,
        [property: JsonPropertyName("imputed")] int Imputed,
        [property: JsonPropertyName("duplicates")] int Duplicates,
        [property: JsonPropertyName("out_of_range")] int OutOfRange,
        [property: JsonPropertyName("dropped")] int Dropped,
        [property: JsonPropertyName("clock_shifts_corrected")] int ClockShiftsCorrected,
        [property: JsonPropertyName("skipped")] IReadOnlyList<Skipped> Skipped,
        [property: JsonPropertyName("unattached_events")] int UnattachedEvents,
        [property: JsonPropertyName("impossible_glucose")] int ImpossibleGlucose);

    /// <summary>Lines of the file that were not converted, for one reason: how many, and the first one.</summary>
    public sealed record Skipped(
        [property: JsonPropertyName("reason")] string Reason,
        [property: JsonPropertyName("rows")] int Rows,
        [property: JsonPropertyName("first_line")] long FirstLine);

    public sealed record UploadAccepted(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("source_format")] string SourceFormat,
        [property: JsonPropertyName("readings")] int Readings,
        [property: JsonPropertyName("skipped_rows")] int SkippedRows,
        [property: JsonPropertyName("clock_shifts_corrected")] int ClockShiftsCorrected,
        [property: JsonPropertyName("first_time")] DateTime? FirstTime,
        [property: JsonPropertyName("last_time")] DateTime? LastTime,
        [property: JsonPropertyName("topic")] string Topic,
        [property: JsonPropertyName("skipped")] IReadOnlyList<Skipped> Skipped,
        [property: JsonPropertyName("impossible_glucose")] int ImpossibleGlucose);

    public sealed record Reading(
        [property: JsonPropertyName("reading_id")] string ReadingId,
        [property: JsonPropertyName("time")] DateTime Time,
        [property: JsonPropertyName("original_time")] DateTime OriginalTime,
        [property: JsonPropertyName("event_type")] string EventType,
        [property: JsonPropertyName("glucose_mg_dl")] double? GlucoseMgDl,
        [property: JsonPropertyName("quality_flags")] int QualityFlags,
        [property: JsonPropertyName("source_format")] string SourceFormat,
        [property: JsonPropertyName("carbs_g")] double? CarbsG,
        [property: JsonPropertyName("insulin_slow_u")] double? InsulinSlowU,
        [property: JsonPropertyName("insulin_fast_u")] double? InsulinFastU,
        [property: JsonPropertyName("exercise_min")] double? ExerciseMin);

    public sealed record ReadingsPage(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("truncated")] bool Truncated,
        [property: JsonPropertyName("readings")] IReadOnlyList<Reading> Readings);

    public sealed record LatestGlucose(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("time")] DateTime Time,
        [property: JsonPropertyName("glucose_mg_dl")] double GlucoseMgDl,
        [property: JsonPropertyName("rate_mg_dl_per_min")] double? RateMgDlPerMin,
        [property: JsonPropertyName("trend_arrow")] string TrendArrow,
        [property: JsonPropertyName("quality_flags")] int QualityFlags,
        [property: JsonPropertyName("forecast_window_complete")] bool? ForecastWindowComplete,
        [property: JsonPropertyName("source")] string Source);

    public static void MapCgmApi(this IEndpointRouteBuilder app)
    {
        // Public like GluRPC's: converts, stores nothing; rate limited per IP.
        app.MapPost("/convert_to_unified", ConvertAsync)
            .WithTags("CGM")
            .WithName("ConvertToUnified")
            .WithSummary("Any supported CGM export → unified CSV")
            .WithDescription("Detects the format from the content (never the file name; any declared content type, so " +
                             "`curl --data-binary @FILE` works) and returns the unified CSV (sequence_id, original_datetime, quality, " +
                             "event_type, datetime, glucose, carbs, insulin_slow, insulin_fast, exercise), sorted by time. Header " +
                             "X-Source-Format names the format detected; X-Skipped-Rows counts the lines not converted and " +
                             "X-Skipped-Reasons gives each reason with its count and first line; X-Impossible-Glucose counts values " +
                             "no sensor reports (kept, quality flag 1 = out of range).")
            .Accepts<IFormFile>("multipart/form-data", CgmUploads.RawContentTypes)
            .Produces(StatusCodes.Status200OK, contentType: "text/csv")
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .RequireAccess(Access.Public);

        app.MapPost("/process_unified", ProcessAsync)
            .WithTags("CGM")
            .WithName("ProcessUnified")
            .WithSummary("Store a file's resampled 5-minute series; returns its content-hash handle")
            .WithDescription("Identical data gets the same handle; a file covering a subset of an already processed " +
                             "range that ends at the same time gets the existing handle (`reused`: true).")
            .Accepts<IFormFile>("multipart/form-data", CgmUploads.RawContentTypes)
            .Produces<ProcessedDataset>()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .RequireAccess(Access.Caller(Scopes.CgmWrite));

        var cgm = app.MapGroup("/api/v1/cgm")
            .WithTags("CGM")
            .ProducesProblem(StatusCodes.Status429TooManyRequests);

        cgm.MapGet("/{userId}/readings", GetReadingsAsync)
            .WithName("GetCgmReadings")
            .RequireAccess(Access.OwnData("userId", Scopes.CgmRead))
            .WithSummary("A user's stored readings, oldest first (PostgreSQL cgm.readings)")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        cgm.MapGet("/{userId}/latest", GetLatestAsync)
            .WithName("GetLatestGlucose")
            .RequireAccess(Access.OwnData("userId", Scopes.CgmRead))
            .WithSummary("A user's latest aligned glucose and trend arrow")
            .WithDescription("Redis (written by the CGM topology's sink) first; the latest stored sensor reading, " +
                             "without a trend, when Redis has no entry. 404 when neither knows the user.")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        cgm.MapPost("/{userId}/upload", UploadAsync)
            .WithName("UploadCgmFile")
            .RequireAccess(Access.OwnData("userId", Scopes.CgmWrite))
            .WithSummary("A CGM export → the user's readings on cgm.readings")
            .WithDescription("The whole file is parsed first (a bad file sends nothing), then every reading is sent and " +
                             "acknowledged before the 202. Reading ids are deterministic: uploading the same file again " +
                             "stores nothing twice, so a retry after a 503 is safe.")
            .Accepts<IFormFile>("multipart/form-data", CgmUploads.RawContentTypes)
            .Produces<UploadAccepted>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<IResult> ConvertAsync(HttpRequest request, GatewayOptions gateway, CancellationToken ct)
    {
        try
        {
            await using var file = await CgmUploads.ReceiveAsync(request, gateway.Cgm.MaxUploadBytes, ct);
            var read = new CgmReadReport();
            var rows = CgmConverter.ReadAll(file, out var format, read);
            // Buffered (memory, then a temporary file past 32 KiB) because the writer is synchronous.
            var output = new FileBufferingWriteStream();
            using (var writer = new UnifiedCsvWriter(output))
                foreach (var row in rows) writer.Write(row);
            var headers = request.HttpContext.Response.Headers;
            headers["X-Source-Format"] = format.Name();
            headers["X-Skipped-Rows"] = read.SkippedRows.ToString(CultureInfo.InvariantCulture);
            if (read.Skipped.Count > 0)
                headers["X-Skipped-Reasons"] = string.Join("; ", read.Skipped.Select(k =>
                    string.Create(CultureInfo.InvariantCulture, $"{k.Reason}: {k.Rows} (first line {k.FirstLine})")));
            headers["X-Impossible-Glucose"] = read.ImpossibleGlucose.ToString(CultureInfo.InvariantCulture);
            if (read.ImpossibleGlucose > 0)
                headers["X-Impossible-Glucose-First-Line"] = read.FirstImpossibleGlucoseLine.ToString(CultureInfo.InvariantCulture);
            return new BufferedCsvResult(output);
        }
        catch (Exception e) when (Problem(e) is { } problem)
        {
            return problem;
        }
    }

    private static async Task<IResult> ProcessAsync(HttpRequest request, GatewayOptions gateway, NpgsqlDataSource pg, ForecastEngine engine,
        CancellationToken ct)
    {
        try
        {
            var (dataset, report, read) = await CgmUploads.ReceiveSeriesAsync(request, gateway.Cgm.MaxUploadBytes, ct);
            if (dataset.Points == 0)
                return TypedResults.Problem(title: "No glucose readings", statusCode: StatusCodes.Status422UnprocessableEntity,
                    detail: $"The {dataset.SourceFormat} file holds no glucose readings to build a series from.");
            // The dataset belongs to whoever uploaded it: only they (and admin) can plot it.
            var (handle, reused) = await new CgmDatasetStore(pg).SaveAsync(dataset, ct, owner: request.HttpContext.User.OwnerKey());
            // Plots of the recent windows are then instant; an interactive plot request still goes first.
            if (engine.Problem() is null) ForecastApi.Precompute(engine, dataset);
            return TypedResults.Ok(new ProcessedDataset(handle, reused, dataset.SourceFormat,
                DateTime.UnixEpoch.AddMilliseconds(dataset.TimesUnixMs[0]), DateTime.UnixEpoch.AddMilliseconds(dataset.TimesUnixMs[^1]),
                dataset.Points, dataset.Sequences, report.Imputed, report.Duplicates, report.OutOfRange, report.Dropped,
                report.ClockShiftsCorrected, ToSkipped(read), report.Unattached, read.ImpossibleGlucose));
        }
        catch (Exception e) when (Problem(e) is { } problem)
        {
            return problem;
        }
    }

    private static async Task<IResult> UploadAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("The export's UTC offset when its times are local wall-clock times (Dexcom Clarity, LibreView and " +
                     "CareLink exports are), e.g. +10:00 or -05:00; default +00:00. Readings are stored in UTC, and a reading " +
                     "more than Input:MaxAheadSeconds ahead of the gateway's clock is refused (422).")] string? utc_offset,
        HttpRequest request, GatewayOptions gateway, StreamHealthOptions platform, CgmReadingsPublisher publisher, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var offset = ApiInput.ParseUtcOffset(utc_offset, "utc_offset", errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (!publisher.Configured)
            return TypedResults.Problem(title: "Kafka is not configured", statusCode: StatusCodes.Status503ServiceUnavailable,
                detail: "Kafka:BootstrapServers is empty; nothing was sent.");
        try
        {
            CgmReadingProducer.FileReadings parsed;
            await using (var file = await CgmUploads.ReceiveAsync(request, gateway.Cgm.MaxUploadBytes, ct))
                // Local wall clock minus its offset is UTC: +10:00 moves the export's times 10 h back.
                parsed = CgmReadingProducer.ReadFile(file, userId, shiftMs: -(long)offset.TotalMilliseconds, timeRule: platform.Input.TimeRule,
                    nowUnixMs: DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            var readings = parsed.Readings;
            // One span for the upload's records (a file holds thousands); each record carries its context.
            using var publish = Runtime.Observability.StreamTracing.StartPublish(Runtime.Observability.StreamTracing.Gateway, publisher.Topic, readings.Count);
            try
            {
                await CgmReadingProducer.ProduceAsync(publisher.Producer, publisher.Registry, publisher.Topic, readings, ct);
            }
            catch (KafkaException e)
            {
                Runtime.Observability.StreamTracing.Failed(publish, e);
                return TypedResults.Problem(title: "Kafka did not accept the readings", statusCode: StatusCodes.Status503ServiceUnavailable,
                    detail: $"Sending to {publisher.Topic} failed ({e.Error.Reason}). Retry the upload: reading ids are deterministic, " +
                            "so readings already sent are stored once.");
            }
            catch (Exception e) when (Runtime.Streams.ConfluentWire.IsRegistryUnavailable(e))
            {
                // The topic's schema ids are resolved before the first reading is serialised: nothing was sent.
                return TypedResults.Problem(title: "The schema registry is unavailable", statusCode: StatusCodes.Status503ServiceUnavailable,
                    detail: $"The readings for {publisher.Topic} could not be serialised ({e.Message}); nothing was sent. Retry the upload.");
            }
            DateTime? first = readings.Count > 0 ? readings.Min(r => r.event_time_unix_ms) : null;
            DateTime? last = readings.Count > 0 ? readings.Max(r => r.event_time_unix_ms) : null;
            return TypedResults.Accepted($"/api/v1/cgm/{userId}/readings",
                new UploadAccepted(userId, parsed.Format.Name(), readings.Count, parsed.Rows - readings.Count, parsed.ClockShiftsCorrected,
                    first, last, publisher.Topic, ToSkipped(parsed.Report), parsed.Report.ImpossibleGlucose));
        }
        catch (Exception e) when (Problem(e) is { } problem)
        {
            return problem;
        }
    }

    private static async Task<Results<Ok<ReadingsPage>, ValidationProblem>> GetReadingsAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 7 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now")] string? to,
        [Description("Most rows returned, 1-100000; default 10000")] string? limit,
        NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var (fromUtc, toUtc) = ApiInput.ParseRange(from, to, DefaultReadingsRange, DateTime.UtcNow, errors);
        var rowLimit = ApiInput.ParseCount(limit, "limit", DefaultReadingsLimit, MaxReadingsLimit, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        await using var cmd = pg.CreateCommand("""
            SELECT reading_id, reading_time, original_time, event_type, glucose_mg_dl, quality_flags, source_format,
                   carbs_g, insulin_slow_u, insulin_fast_u, exercise_min
            FROM cgm.readings
            WHERE user_id = $1 AND reading_time >= $2 AND reading_time < $3
            ORDER BY reading_time, reading_id
            LIMIT $4
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = fromUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = toUtc });
        cmd.Parameters.Add(new NpgsqlParameter { Value = rowLimit + 1 });   // one more tells whether the range held more
        var readings = new List<Reading>(Math.Min(rowLimit + 1, 1024));
        await using (var reader = await cmd.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
                readings.Add(new Reading(reader.GetString(0), reader.GetDateTime(1), reader.GetDateTime(2), reader.GetString(3),
                    Nullable(reader, 4), reader.GetInt16(5), reader.GetString(6), Nullable(reader, 7), Nullable(reader, 8),
                    Nullable(reader, 9), Nullable(reader, 10)));
        }
        var truncated = readings.Count > rowLimit;
        if (truncated) readings.RemoveAt(readings.Count - 1);
        return TypedResults.Ok(new ReadingsPage(userId, fromUtc, toUtc, rowLimit, truncated, readings));
    }

    private static async Task<Results<Ok<LatestGlucose>, ValidationProblem, ProblemHttpResult>> GetLatestAsync(
        [Description(InputRules.IdRuleText)] string userId,
        IConnectionMultiplexer redis, NpgsqlDataSource pg, StreamHealthOptions platform, ILoggerFactory loggers, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // Nothing outside the event-time rule may be served as latest: not a cache entry, nor a row, stored before the
        // rule was enforced at ingest.
        var rule = platform.Input.TimeRule;
        var nowMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        try
        {
            if (redis.IsConnected && await CgmLatestCache.ReadAsync(redis.GetDatabase(), userId) is { } cached
                && rule.Check("time", cached.EventTimeUnixMs, nowMs) is null)
                return TypedResults.Ok(new LatestGlucose(userId, DateTime.UnixEpoch.AddMilliseconds(cached.EventTimeUnixMs), cached.GlucoseMgDl,
                    double.IsFinite(cached.RateMgDlPerMin) ? cached.RateMgDlPerMin : null, cached.TrendArrow, (int)cached.QualityFlags,
                    cached.ForecastWindowComplete, "redis"));
        }
        catch (Exception e) when (e is RedisException or TimeoutException or KeyNotFoundException or FormatException)
        {
            loggers.CreateLogger(typeof(CgmApi)).LogWarning(e, "Redis read of the latest glucose of {UserId} failed; reading PostgreSQL", userId);
        }
        await using var cmd = pg.CreateCommand("""
            SELECT reading_time, glucose_mg_dl, quality_flags FROM cgm.readings
            WHERE user_id = $1 AND event_type = 'egv' AND glucose_mg_dl IS NOT NULL AND reading_time >= $2 AND reading_time <= $3
            ORDER BY reading_time DESC LIMIT 1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        cmd.Parameters.Add(new NpgsqlParameter { Value = DateTime.UnixEpoch.AddMilliseconds(rule.EarliestUnixMs) });
        cmd.Parameters.Add(new NpgsqlParameter { Value = DateTime.UnixEpoch.AddMilliseconds(nowMs + rule.MaxAheadMs) });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            return TypedResults.Problem(title: "No glucose for this user", statusCode: StatusCodes.Status404NotFound,
                detail: $"User '{userId}' has no glucose reading in Redis or PostgreSQL.");
        return TypedResults.Ok(new LatestGlucose(userId, reader.GetDateTime(0), reader.GetDouble(1), null, "NotComputable",
            reader.GetInt16(2), null, "postgres"));
    }

    private static List<Skipped> ToSkipped(CgmReadReport read) => [.. read.Skipped.Select(k => new Skipped(k.Reason, k.Rows, k.FirstLine))];

    private static double? Nullable(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetDouble(i);

    /// <summary>The problem-details answer for an upload error a client caused; null for anything else.</summary>
    internal static IResult? Problem(Exception e) => e switch
    {
        UploadTooLargeException tooLarge => TypedResults.Problem(title: "Upload too large", statusCode: StatusCodes.Status413PayloadTooLarge,
            detail: tooLarge.Message),
        UnknownCgmFormatException unknown => TypedResults.Problem(title: "Unrecognised CGM export", statusCode: StatusCodes.Status422UnprocessableEntity,
            detail: unknown.Message, extensions: new Dictionary<string, object?> { ["formats_tried"] = unknown.Tried }),
        CgmFormatException bad => TypedResults.Problem(title: "The CGM export cannot be read", statusCode: StatusCodes.Status422UnprocessableEntity,
            detail: bad.Message, extensions: new Dictionary<string, object?>
            {
                ["format"] = bad.Format?.Name(), ["line"] = bad.Line > 0 ? bad.Line : null, ["problem"] = bad.Problem,
            }),
        BadHttpRequestException badRequest => TypedResults.Problem(title: "Bad request", statusCode: badRequest.StatusCode, detail: badRequest.Message),
        _ => null,
    };

    /// <summary>Writes a <see cref="FileBufferingWriteStream"/> as text/csv and disposes it.</summary>
    private sealed class BufferedCsvResult(FileBufferingWriteStream buffer) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            await using (buffer)
            {
                http.Response.ContentType = "text/csv; charset=utf-8";
                await buffer.DrainBufferAsync(http.Response.Body, http.RequestAborted);
            }
        }
    }
}
