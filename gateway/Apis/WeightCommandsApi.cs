using System.Text.Json;
using System.Text.Json.Serialization;
using StreamHealth.Gateway.Weights;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Gateway.Apis;

/// <summary>POST /api/weight/process and /api/weight/initialize: the original design's request and
/// response, answered synchronously by the stream pipeline through <see cref="WeightRequestReply"/>.</summary>
public static class WeightCommandsApi
{
    public const int MaxBodyBytes = 64 * 1024;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public sealed record MeasurementRequest(
        string? UserId, double? Weight, string? Unit, DateTimeOffset? Timestamp, string? Source, string? MeasurementId);

    public sealed record InitializeRequest(string? UserId, List<MeasurementRequest>? Measurements, string? MeasurementId);

    public sealed record ProcessResponse(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("measurement_id")] string MeasurementId,
        [property: JsonPropertyName("timestamp")] DateTime Timestamp,
        [property: JsonPropertyName("accepted")] bool Accepted,
        [property: JsonPropertyName("confidence")] double Confidence,
        [property: JsonPropertyName("raw_weight")] double? RawWeight,
        [property: JsonPropertyName("filtered_weight")] double? FilteredWeight,
        [property: JsonPropertyName("trend_kg_per_week")] double TrendKgPerWeek,
        [property: JsonPropertyName("prediction_error")] double PredictionError,
        [property: JsonPropertyName("normalized_innovation")] double NormalizedInnovation,
        [property: JsonPropertyName("needs_initialization")] bool NeedsInitialization,
        [property: JsonPropertyName("needs_reinitialization")] bool NeedsReinitialization,
        [property: JsonPropertyName("reasons")] IReadOnlyList<string> Reasons);

    /// <summary>Adds the two command endpoints to the weight route group (auth and rate limits come from the group).</summary>
    public static RouteGroupBuilder MapWeightCommands(this RouteGroupBuilder group)
    {
        group.MapPost("/process", ProcessAsync).WithName("ProcessWeight")
            .WithSummary("Filter one weight measurement through the stream pipeline and return its result")
            .Accepts<MeasurementRequest>("application/json")
            .Produces<ProcessResponse>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes));
        group.MapPost("/initialize", InitializeAsync).WithName("InitializeWeight")
            .WithSummary("(Re)initialise a user's filter from a batch of measurements")
            .Accepts<InitializeRequest>("application/json")
            .Produces<ProcessResponse>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout)
            .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes));
        return group;
    }

    public static IServiceCollection AddWeightCommands(this IServiceCollection services)
    {
        services.AddSingleton<WeightRequestReply>();
        services.AddHostedService(sp => sp.GetRequiredService<WeightRequestReply>());
        services.AddSingleton(sp => new WeightKalmanFilter(WeightTopology.FilterOptions(sp.GetRequiredService<IConfiguration>())));
        return services;
    }

    private static async Task<IResult> ProcessAsync(HttpRequest http, WeightRequestReply pipeline, CancellationToken ct)
    {
        var (request, bad) = await ReadAsync<MeasurementRequest>(http, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var userId = ValidateUser(request!.UserId, errors);
        var measurement = ToMeasurement(request, "", errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        measurement.UserId = userId;
        measurement.MeasurementId = string.IsNullOrEmpty(request.MeasurementId) ? Guid.NewGuid().ToString("N") : request.MeasurementId;
        return await SendAsync(pipeline, measurement, ct);
    }

    private static async Task<IResult> InitializeAsync(HttpRequest http, WeightRequestReply pipeline, WeightKalmanFilter filter, CancellationToken ct)
    {
        var (request, bad) = await ReadAsync<InitializeRequest>(http, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var userId = ValidateUser(request!.UserId, errors);
        if (request.Measurements is not { Count: > 0 } list)
        {
            errors["measurements"] = ["must hold at least one measurement"];
            return TypedResults.ValidationProblem(errors);
        }
        var command = new WeightMeasurement { SchemaVersion = 1, UserId = userId };
        for (var i = 0; i < list.Count; i++) command.InitializationBatch.Add(ToMeasurement(list[i], $"measurements[{i}].", errors));
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        // Same rules as the topology, checked here so the caller gets a 400 rather than a dead letter.
        try
        {
            filter.Initialize(WeightStateCodec.NewState(), command.InitializationBatch.Select(WeightObservation.From).ToArray());
        }
        catch (ArgumentException e)
        {
            errors["measurements"] = [e.Message.Split(" (Parameter")[0]];
            return TypedResults.ValidationProblem(errors);
        }
        command.EventTimeUnixMs = command.InitializationBatch.Max(m => m.EventTimeUnixMs);
        command.MeasurementId = string.IsNullOrEmpty(request.MeasurementId) ? "init-" + Guid.NewGuid().ToString("N") : request.MeasurementId;
        return await SendAsync(pipeline, command, ct);
    }

    private static async Task<IResult> SendAsync(WeightRequestReply pipeline, WeightMeasurement measurement, CancellationToken ct)
    {
        WeightResult? result;
        try
        {
            result = await pipeline.SendAsync(measurement, ct);
        }
        catch (WeightPipelineUnavailableException e)
        {
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Weights pipeline unavailable");
        }
        if (result is null)
            return TypedResults.Problem(
                $"the weights pipeline did not answer within {pipeline.Timeout.TotalSeconds:F0} s; measurement {measurement.MeasurementId} is on {pipeline.RawTopic} and will still be processed",
                statusCode: StatusCodes.Status504GatewayTimeout, title: "Weights pipeline timeout");
        // Same conventions as GET latest/history: UTC "Z" timestamps, null for "no value" rather than NaN or 0.
        return TypedResults.Ok(new ProcessResponse(result.UserId, result.MeasurementId,
            DateTime.UnixEpoch.AddMilliseconds(result.EventTimeUnixMs), result.Accepted, result.Confidence,
            double.IsFinite(result.RawWeightKg) ? result.RawWeightKg : null,
            result.NeedsInitialization || result.FilteredWeightKg <= 0 ? null : result.FilteredWeightKg, result.TrendKgPerWeek, result.PredictionErrorKg, result.NormalizedInnovation,
            result.NeedsInitialization, result.NeedsReinitialization, [.. result.Reasons.Select(WeightPostgresWriter.ReasonName)]));
    }

    private static async Task<(T? Value, IResult? Problem)> ReadAsync<T>(HttpRequest http, CancellationToken ct) where T : class
    {
        if (http.ContentLength > MaxBodyBytes)
            return (null, TypedResults.Problem($"request body is {http.ContentLength} bytes; the limit is {MaxBodyBytes}",
                statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large"));
        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(http.Body, Json, ct);
            return value is null ? (null, Invalid("body", "is empty or null")) : (value, null);
        }
        catch (JsonException e)
        {
            return (null, Invalid(e.Path is { Length: > 1 } path ? path.TrimStart('$', '.') : "body", $"is not valid JSON: {e.Message.Split(" Path:")[0]}"));
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, TypedResults.Problem($"request body exceeds {MaxBodyBytes} bytes", statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large"));
        }
    }

    private static IResult Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [$"{field} {message}"] });

    private static string ValidateUser(string? userId, Dictionary<string, string[]> errors)
    {
        if (string.IsNullOrWhiteSpace(userId)) errors["user_id"] = ["user_id is required"];
        else if (!ApiInput.IsValidUserId(userId))
            errors["user_id"] = [$"user_id '{ApiInput.Shorten(userId)}' must be 1-128 characters of A-Z a-z 0-9 . _ : -"];
        return userId ?? "";
    }

    private static WeightMeasurement ToMeasurement(MeasurementRequest r, string prefix, Dictionary<string, string[]> errors)
    {
        var m = new WeightMeasurement { SchemaVersion = 1 };
        if (r.Weight is not { } w) errors[prefix + "weight"] = [prefix + "weight is required"];
        else if (!double.IsFinite(w) || w <= 0) errors[prefix + "weight"] = [$"{prefix}weight = {w}: must be a positive number"];
        else m.Value = w;
        m.Unit = (r.Unit ?? "kg").ToLowerInvariant() switch
        {
            "kg" => WeightUnit.Kg,
            "lb" or "lbs" => WeightUnit.Lb,
            "st" => WeightUnit.St,
            _ => Error(errors, prefix + "unit", $"{prefix}unit = '{ApiInput.Shorten(r.Unit!)}': must be kg, lb or st", WeightUnit.Unspecified),
        };
        if (r.Timestamp is not { } t) errors[prefix + "timestamp"] = [prefix + "timestamp is required (ISO-8601 with offset)"];
        else if (t > DateTimeOffset.UtcNow.AddDays(1)) errors[prefix + "timestamp"] = [$"{prefix}timestamp = {t:O}: more than a day in the future"];
        else m.EventTimeUnixMs = t.ToUnixTimeMilliseconds();
        m.Source = (r.Source ?? "patient_reported").ToLowerInvariant() switch
        {
            "care_team" => WeightSource.CareTeam,
            "connected_scale" => WeightSource.ConnectedScale,
            "patient_reported" => WeightSource.PatientReported,
            "unknown" or "unspecified" => WeightSource.Unspecified,
            _ => Error(errors, prefix + "source", $"{prefix}source = '{ApiInput.Shorten(r.Source!)}': must be care_team, connected_scale, patient_reported or unknown", WeightSource.Unspecified),
        };
        return m;
    }

    private static T Error<T>(Dictionary<string, string[]> errors, string field, string message, T fallback)
    {
        errors[field] = [message];
        return fallback;
    }

}
