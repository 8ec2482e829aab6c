using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Validation;
using System.ComponentModel;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Forecast.Service;
using StreamHealth.Gateway.Cgm;

namespace StreamHealth.Gateway.Apis;

/// <summary>Forecast endpoints (GluRPC parity): fan-chart plots of a stored dataset's windows or of an uploaded
/// file's latest window, a user's latest forecast from the forecast consumer group, and cache management. Plots are
/// SVG rendered here (<see cref="FanChart"/>); forecasts for plots come from the gateway's in-process
/// <see cref="ForecastEngine"/> (same model, Monte Carlo dropout, single flight, interactive first).</summary>
public static class ForecastApi
{
    /// <summary>Steps of history a plot shows before the forecast (the whole 8-hour input).</summary>
    public const int PlotHistorySteps = 96;
    /// <summary>Windows of a processed dataset forecast in the background, newest first, so plots of them are instant.</summary>
    public const int PrecomputedWindows = 24;

    public sealed record PlotRequest(
        [property: JsonPropertyName("handle")] string? Handle,
        [property: JsonPropertyName("index")] int? Index);

    public sealed record CacheRequest(
        [property: JsonPropertyName("action")] string? Action,
        [property: JsonPropertyName("handle")] string? Handle);

    public sealed record CacheInfo(
        [property: JsonPropertyName("action")] string Action,
        [property: JsonPropertyName("forecast_cache_entries")] int ForecastCacheEntries,
        [property: JsonPropertyName("datasets")] long Datasets,
        [property: JsonPropertyName("removed")] long Removed);

    public sealed record Band(
        [property: JsonPropertyName("quantile")] double Quantile,
        [property: JsonPropertyName("glucose_mg_dl")] IReadOnlyList<float> GlucoseMgDl);

    public sealed record UserForecast(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("request_id")] string RequestId,
        [property: JsonPropertyName("forecast_time")] DateTime ForecastTime,
        [property: JsonPropertyName("step_minutes")] int StepMinutes,
        [property: JsonPropertyName("median_mg_dl")] IReadOnlyList<float> MedianMgDl,
        [property: JsonPropertyName("bands")] IReadOnlyList<Band> Bands,
        [property: JsonPropertyName("model_version")] string ModelVersion,
        [property: JsonPropertyName("mc_samples")] int McSamples,
        [property: JsonPropertyName("source")] string Source);

    public static void MapForecastApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/draw_a_plot", DrawAsync)
            .WithTags("Forecast").WithName("DrawAPlot")
            .WithSummary("Fan chart (SVG) of the forecast of window `index` of a processed dataset")
            .WithDescription("`handle` from POST /process_unified; `index` 0 is the most recent window, −1 a step earlier, … " +
                             "(X-Window-Count says how many there are). History, median forecast, 5–95 % and 25–75 % bands, " +
                             "and the true values after the forecast time where the dataset has them.")
            .Produces(StatusCodes.Status200OK, contentType: "image/svg+xml")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnedResource(Scopes.CgmRead));

        app.MapPost("/quick_plot", QuickPlotAsync)
            .WithTags("Forecast").WithName("QuickPlot")
            .WithSummary("A CGM export → fan chart (SVG) of the forecast from its latest 8 hours, in one call")
            .Accepts<IFormFile>("multipart/form-data", CgmUploads.RawContentTypes)
            .Produces(StatusCodes.Status200OK, contentType: "image/svg+xml")
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Caller(Scopes.CgmRead));

        app.MapPost("/cache_management", CacheAsync)
            .WithTags("Forecast").WithName("CacheManagement")
            .WithSummary("info | flush | delete (a dataset by handle, with its cached forecasts)")
            .Produces<CacheInfo>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.Service(Scopes.Admin));

        app.MapGet("/api/v1/cgm/{userId}/forecast", GetUserForecastAsync)
            .WithTags("Forecast").WithName("GetCgmForecast")
            .WithSummary("A user's latest forecast from the forecast consumer group (Redis, else PostgreSQL cgm.forecasts)")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.CgmRead));
    }

    private static async Task<IResult> DrawAsync(PlotRequest body, ForecastEngine engine, NpgsqlDataSource pg, HttpContext http, CancellationToken ct)
    {
        if (CheckHandle(body.Handle) is { } badHandle) return badHandle;
        var store = new CgmDatasetStore(pg);
        // Another caller's handle is answered exactly as an unknown one: a handle's existence is not disclosed.
        var dataset = await http.AuthorizeOwnersAsync(await store.OwnersAsync(body.Handle!, ct)) is null
            ? await store.LoadAsync(body.Handle!, ct) : null;
        if (dataset is null)
            return TypedResults.Problem(title: "Unknown handle", statusCode: StatusCodes.Status404NotFound,
                detail: $"No processed dataset of yours has handle '{ApiInput.Shorten(body.Handle!)}' (it may have been deleted through /cache_management).");
        var windows = new DatasetWindows(dataset, engine.InputSteps);
        http.Response.Headers["X-Window-Count"] = windows.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var index = body.Index ?? 0;
        if (!windows.IsValid(index))
            return TypedResults.ValidationProblem(new Dictionary<string, string[]>
            {
                ["index"] = [windows.Count == 0
                    ? $"the dataset has no run of {engine.InputSteps} consecutive 5-minute points, so nothing can be forecast"
                    : $"{index} is outside {windows.MinIndex}..0 (0 is the most recent window)"],
            });
        return await PlotAsync(engine, windows, index, $"Forecast of dataset {body.Handle}, window {index}");
    }

    private static async Task<IResult> QuickPlotAsync(HttpRequest request, GatewayOptions gateway, ForecastEngine engine, CancellationToken ct)
    {
        try
        {
            var (dataset, _, _) = await CgmUploads.ReceiveSeriesAsync(request, gateway.Cgm.MaxUploadBytes, ct);
            var windows = new DatasetWindows(dataset, engine.InputSteps);
            if (windows.Count == 0)
                return TypedResults.Problem(title: "Not enough data to forecast", statusCode: StatusCodes.Status422UnprocessableEntity,
                    detail: $"The {dataset.SourceFormat} file has no run of {engine.InputSteps} consecutive 5-minute readings (8 hours without a gap over 15 minutes).");
            return await PlotAsync(engine, windows, 0, $"Forecast from the latest 8 hours of a {dataset.SourceFormat} export");
        }
        catch (Exception e) when (CgmApi.Problem(e) is { } problem)
        {
            return problem;
        }
    }

    private static async Task<IResult> PlotAsync(ForecastEngine engine, DatasetWindows windows, int index, string title)
    {
        try
        {
            var forecast = await engine.ForecastAsync(windows.Input(index), interactive: true);
            var svg = FanChart.Render(windows.Chart(index, forecast, engine.StepMinutes, PlotHistorySteps, title));
            return TypedResults.Text(svg, "image/svg+xml", System.Text.Encoding.UTF8);
        }
        catch (ForecastUnavailableException e)
        {
            return TypedResults.Problem(title: "Forecasting is unavailable", statusCode: StatusCodes.Status503ServiceUnavailable, detail: e.Message);
        }
    }

    /// <summary>After POST /process_unified: forecasts of the dataset's most recent windows, queued behind any interactive work.</summary>
    internal static void Precompute(ForecastEngine engine, CgmDataset dataset)
    {
        var windows = new DatasetWindows(dataset, engine.InputSteps);
        for (var index = 0; index >= Math.Max(windows.MinIndex, 1 - PrecomputedWindows) && windows.Count > 0; index--)
            _ = engine.ForecastAsync(windows.Input(index), interactive: false).ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
    }

    private static async Task<IResult> CacheAsync(CacheRequest body, ForecastEngine engine, NpgsqlDataSource pg, CancellationToken ct)
    {
        switch (body.Action)
        {
            case "info":
                return TypedResults.Ok(new CacheInfo("info", engine.CacheEntries, await CountDatasetsAsync(pg, ct), 0));
            case "flush":
                return TypedResults.Ok(new CacheInfo("flush", 0, await CountDatasetsAsync(pg, ct), engine.Flush()));
            case "delete":
                if (CheckHandle(body.Handle) is { } badHandle) return badHandle;
                var store = new CgmDatasetStore(pg);
                var dataset = await store.LoadAsync(body.Handle!, ct);
                if (dataset is null)
                    return TypedResults.Problem(title: "Unknown handle", statusCode: StatusCodes.Status404NotFound,
                        detail: $"No processed dataset has handle '{ApiInput.Shorten(body.Handle!)}'.");
                var windows = new DatasetWindows(dataset, engine.InputSteps);
                var forgotten = engine.Forget(Enumerable.Range(windows.MinIndex, windows.Count).Select(windows.Input));
                await store.DeleteAsync(body.Handle!, ct);
                return TypedResults.Ok(new CacheInfo("delete", engine.CacheEntries, await CountDatasetsAsync(pg, ct), 1 + forgotten));
            default:
                return TypedResults.ValidationProblem(new Dictionary<string, string[]>
                {
                    ["action"] = [$"'{ApiInput.Shorten(body.Action ?? "")}' is not one of info, flush, delete"],
                });
        }
    }

    /// <summary>Handles are ids (<see cref="Runtime.Validation.InputRules.CheckId"/>; the gateway's are 32 hex digits): anything
    /// else, a NUL included, is a 400 naming <c>handle</c> before PostgreSQL sees it.</summary>
    private static ValidationProblem? CheckHandle(string? handle) =>
        Runtime.Validation.InputRules.CheckId("handle", handle) is { } problem
            ? TypedResults.ValidationProblem(new Dictionary<string, string[]>
            {
                ["handle"] = [string.IsNullOrEmpty(handle) ? "a handle from POST /process_unified is required" : problem],
            })
            : null;

    private static async Task<long> CountDatasetsAsync(NpgsqlDataSource pg, CancellationToken ct)
    {
        await using var cmd = pg.CreateCommand("SELECT count(*) FROM cgm.datasets");
        return (long)(await cmd.ExecuteScalarAsync(ct))!;
    }

    private static async Task<Results<Ok<UserForecast>, ValidationProblem, ProblemHttpResult>> GetUserForecastAsync(
        [Description(InputRules.IdRuleText)] string userId,
        IConnectionMultiplexer redis, NpgsqlDataSource pg, ILoggerFactory loggers, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        try
        {
            if (redis.IsConnected && await ForecastCache.ReadAsync(redis.GetDatabase(), userId) is { } f)
                return TypedResults.Ok(new UserForecast(f.UserId, f.RequestId, DateTime.UnixEpoch.AddMilliseconds(f.EventTimeUnixMs), f.StepMinutes,
                    f.MedianMgDl, [.. f.Bands.Select(b => new Band(b.Quantile, b.GlucoseMgDl))], f.ModelVersion, f.McSamples, "redis"));
        }
        catch (Exception e) when (e is RedisException or TimeoutException or KeyNotFoundException or FormatException)
        {
            loggers.CreateLogger(typeof(ForecastApi)).LogWarning(e, "Redis read of the forecast of {UserId} failed; reading PostgreSQL", userId);
        }
        await using var cmd = pg.CreateCommand("""
            SELECT request_id, forecast_time, step_minutes, horizon_steps, median_mg_dl, quantiles, bands_mg_dl, model_version, mc_samples
            FROM cgm.forecasts WHERE user_id = $1 ORDER BY forecast_time DESC LIMIT 1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            return TypedResults.Problem(title: "No forecast for this user", statusCode: StatusCodes.Status404NotFound,
                detail: $"User '{userId}' has no forecast yet: one is made when the last 8 hours of readings are complete.");
        var horizon = reader.GetInt32(3);
        var quantiles = reader.GetFieldValue<float[]>(5);
        var bands = reader.GetFieldValue<float[]>(6);
        return TypedResults.Ok(new UserForecast(userId, reader.GetString(0), reader.GetDateTime(1), reader.GetInt32(2), reader.GetFieldValue<float[]>(4),
            [.. quantiles.Select((q, k) => new Band(q, bands[(k * horizon)..((k + 1) * horizon)]))], reader.GetString(7), reader.GetInt32(8), "postgres"));
    }
}
