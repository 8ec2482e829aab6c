using StreamHealth.Gateway.Identity;
using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Gateway.Weights;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;
using StreamHealth.Weight.Pipeline;
using static StreamHealth.Gateway.Apis.JsonBodyInput;

namespace StreamHealth.Gateway.Apis;

/// <summary>POST /api/weight/process and /api/weight/initialize: the original design's request and
/// response, answered synchronously by the stream pipeline through <see cref="WeightRequestReply"/>.</summary>
public static class WeightCommandsApi
{
    public const int MaxBodyBytes = 64 * 1024;
    /// <summary>The request body of /process (for the API description; the handler reads the JSON field by field).</summary>
    public sealed record MeasurementRequest(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("weight")] double Weight,
        [property: JsonPropertyName("unit")] string Unit,
        [property: JsonPropertyName("timestamp")] DateTimeOffset Timestamp,
        [property: JsonPropertyName("source")] string Source,
        [property: JsonPropertyName("measurement_id")] string? MeasurementId,
        [property: JsonPropertyName("declared_event"), Description("optional: `surgery` (e.g. bariatric) declares a step now and fast loss for weeks after, which lifts the sustained-rate bound for 90 days and lets the filter re-anchor at once; `none` (default)")] string? DeclaredEvent = null);

    /// <summary>The request body of /initialize (for the API description).</summary>
    public sealed record InitializeRequest(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("measurements")] List<MeasurementRequest> Measurements,
        [property: JsonPropertyName("measurement_id")] string? MeasurementId);

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
            .WithDescription("Every field but `measurement_id` is required. `measurement_id` (" + InputRules.IdRuleText + "; generated when " +
                             "absent) names one measurement of one user whatever its timestamp: re-sending the same measurement " +
                             "returns its original result, the same id with another user or another timestamp, weight, unit or " +
                             "source is a 409. On 200 the result is already in the latest-weight cache, so the caller's next " +
                             "`GET /{userId}/latest` shows it; only while Redis is unreachable may that read (then from PostgreSQL) " +
                             "lag the 200 by the weights sinks' delay (a few seconds).")
            .WithCommandContract<MeasurementRequest>()
            .RequireAccess(Access.OwnDataInBody("user_id", Scopes.WeightsWrite));
        group.MapPost("/initialize", InitializeAsync).WithName("InitializeWeight")
            .WithSummary("(Re)initialise a user's filter from a batch of measurements")
            .WithDescription("`measurements` holds 1-256 measurements with the fields of `process` (all required). `measurement_id` " +
                             "names the command as in `process`: a retry returns the original result, a conflicting reuse is a 409.")
            .WithCommandContract<InitializeRequest>()
            .RequireAccess(Access.OwnDataInBody("user_id", Scopes.WeightsWrite));
        return group;
    }

    /// <summary>What both commands take and can answer (both go through the same id claim and request/reply).</summary>
    private static RouteHandlerBuilder WithCommandContract<TRequest>(this RouteHandlerBuilder endpoint) where TRequest : notnull => endpoint
        .Accepts<TRequest>("application/json")
        .Produces<ProcessResponse>()
        .ProducesValidationProblem()
        .ProducesProblem(StatusCodes.Status409Conflict)
        .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
        .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
        .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
        .ProducesProblem(StatusCodes.Status504GatewayTimeout)
        .WithMetadata(new Microsoft.AspNetCore.Mvc.RequestSizeLimitAttribute(MaxBodyBytes));

    public static IServiceCollection AddWeightCommands(this IServiceCollection services)
    {
        services.AddSingleton<WeightRequestReply>();
        services.AddHostedService(sp => sp.GetRequiredService<WeightRequestReply>());
        services.AddSingleton(sp => WeightTopology.FilterOptions(sp.GetRequiredService<IConfiguration>()));
        services.AddSingleton(sp => new WeightKalmanFilter(sp.GetRequiredService<WeightFilterOptions>()));
        return services;
    }

    /// <summary>What one command needs besides its body (one parameter object keeps the handlers' signatures short).</summary>
    private sealed record Services(WeightRequestReply Pipeline, StreamHealthOptions Options, WeightFilterOptions Filter,
        NpgsqlDataSource Postgres, IConnectionMultiplexer Redis, ILoggerFactory Loggers);

    private static async Task<IResult> ProcessAsync(HttpRequest http, WeightRequestReply pipeline, StreamHealthOptions options,
        WeightFilterOptions filterOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory loggers, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var services = new Services(pipeline, options, filterOptions, postgres, redis, loggers);
        var userId = RequiredId(body, "user_id", errors);
        var measurementId = OptionalId(body, "measurement_id", errors);
        var measurement = ToMeasurement(body, "", services, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await http.HttpContext.AuthorizeSubjectAsync(userId!) is { } forbidden) return forbidden;
        measurement.UserId = userId!;
        measurement.MeasurementId = measurementId ?? Guid.NewGuid().ToString("N");
        return await SendAsync(services, measurement, ct);
    }

    private static async Task<IResult> InitializeAsync(HttpRequest http, WeightRequestReply pipeline, WeightKalmanFilter filter, StreamHealthOptions options,
        WeightFilterOptions filterOptions, NpgsqlDataSource postgres, IConnectionMultiplexer redis, ILoggerFactory loggers, CancellationToken ct)
    {
        var (body, bad) = await ReadAsync(http, MaxBodyBytes, ct);
        if (bad is not null) return bad;
        var errors = new Dictionary<string, string[]>();
        var services = new Services(pipeline, options, filterOptions, postgres, redis, loggers);
        var userId = RequiredId(body, "user_id", errors);
        var measurementId = OptionalId(body, "measurement_id", errors);
        if (!body.TryGetProperty("measurements", out var list) || list.ValueKind == JsonValueKind.Null)
            errors["measurements"] = ["measurements is required: an array of 1 or more measurements"];
        else if (list.ValueKind != JsonValueKind.Array)
            errors["measurements"] = [$"measurements must be an array of measurements, not {Kind(list)}"];
        else if (list.GetArrayLength() == 0)
            errors["measurements"] = ["measurements must hold at least one measurement"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);
        if (await http.HttpContext.AuthorizeSubjectAsync(userId!) is { } forbidden) return forbidden;
        var command = new WeightMeasurement { SchemaVersion = 1, UserId = userId! };
        var i = 0;
        foreach (var element in list.EnumerateArray())
        {
            var prefix = $"measurements[{i++}].";
            if (element.ValueKind != JsonValueKind.Object) errors[prefix.TrimEnd('.')] = [$"{prefix.TrimEnd('.')} must be an object, not {Kind(element)}"];
            else command.InitializationBatch.Add(ToMeasurement(element, prefix, services, errors));
        }
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
        command.MeasurementId = measurementId ?? "init-" + Guid.NewGuid().ToString("N");
        return await SendAsync(services, command, ct);
    }

    private static async Task<IResult> SendAsync(Services services, WeightMeasurement measurement, CancellationToken ct)
    {
        var pipeline = services.Pipeline;
        try
        {
            await pipeline.EnsureReadyAsync(ct);   // claim nothing for a request that cannot be sent
        }
        catch (WeightPipelineUnavailableException e)
        {
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Weights pipeline unavailable");
        }
        if (await EventIdClaims.ClaimAsync(services.Postgres, WeightPostgresWriter.EventIdWorkload, "measurement_id", measurement.MeasurementId,
                measurement.UserId, MeasurementFingerprint.Text(MeasurementFingerprint.Of(measurement)), "measurement",
                "user, timestamp, weight, unit and source", "Weights pipeline unavailable",
                services.Loggers.CreateLogger(typeof(WeightCommandsApi)), ct) is { } claimProblem)
            return claimProblem;

        WeightResult? result;
        try
        {
            result = await pipeline.SendAsync(measurement, ct);
        }
        catch (WeightPipelineUnavailableException e)
        {
            return TypedResults.Problem(e.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Weights pipeline unavailable");
        }
        catch (WeightRejectedException e)
        {
            // The gateway checks the same rules first, so this is rare: a rule only the user's state can judge.
            return TypedResults.Problem($"the weights pipeline refused the measurement: {e.Message}",
                statusCode: StatusCodes.Status422UnprocessableEntity, title: "Measurement refused by the weights pipeline");
        }
        if (result is null)
            return TypedResults.Problem(
                $"the weights pipeline did not answer within {pipeline.Timeout.TotalSeconds:F0} s; measurement {measurement.MeasurementId} is on {pipeline.RawTopic} and will still be processed",
                statusCode: StatusCodes.Status504GatewayTimeout, title: "Weights pipeline timeout");
        await WriteThroughAsync(services, result);
        // Same conventions as GET latest/history: UTC "Z" timestamps, null for "no value" rather than NaN or 0.
        return TypedResults.Ok(new ProcessResponse(result.UserId, result.MeasurementId,
            DateTime.UnixEpoch.AddMilliseconds(result.EventTimeUnixMs), result.Accepted, result.Confidence,
            double.IsFinite(result.RawWeightKg) ? result.RawWeightKg : null,
            result.NeedsInitialization || result.FilteredWeightKg <= 0 ? null : result.FilteredWeightKg, result.TrendKgPerWeek, result.PredictionErrorKg, result.NormalizedInnovation,
            result.NeedsInitialization, result.NeedsReinitialization, [.. result.Reasons.Select(WeightPostgresWriter.ReasonName)]));
    }

    /// <summary>Read-your-writes for the caller's next `latest`: the sinks would write the same result within about a
    /// second, this writes it first, with the same compare-and-set on event time (so it never overwrites a newer one).
    /// A failure here only means the sink's write is the one that lands: logged, not an error for a processed request.</summary>
    private static async Task WriteThroughAsync(Services services, WeightResult result)
    {
        if (!WeightLatestCache.HasEstimate(result)) return;
        try
        {
            if (services.Redis.IsConnected) await WeightLatestCache.WriteAsync(services.Redis.GetDatabase(), result);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            services.Loggers.CreateLogger(typeof(WeightCommandsApi)).LogWarning(e,
                "latest-weight write-through for {UserId} failed; the Redis sink will write it", result.UserId);
        }
    }

    private static WeightMeasurement ToMeasurement(JsonElement body, string prefix, Services services, Dictionary<string, string[]> errors)
    {
        var m = new WeightMeasurement { SchemaVersion = 1 };
        var unitText = String(body, prefix + "unit", required: true, errors);
        if (unitText is not null)
            m.Unit = unitText.ToLowerInvariant() switch
            {
                "kg" => WeightUnit.Kg,
                "lb" or "lbs" => WeightUnit.Lb,
                "st" => WeightUnit.St,
                _ => Error(errors, prefix + "unit", $"{prefix}unit = {InputRules.Quote(unitText)}: must be kg, lb or st", WeightUnit.Unspecified),
            };

        var weightField = prefix + "weight";
        if (!body.TryGetProperty("weight", out var weight) || weight.ValueKind == JsonValueKind.Null)
            errors[weightField] = [$"{weightField} is required"];
        else if (weight.ValueKind != JsonValueKind.Number)
            errors[weightField] = [$"{weightField} must be a number, not {Kind(weight)}"];
        else if (!weight.TryGetDouble(out var value))
            errors[weightField] = [$"{weightField} = {InputRules.Quote(weight.GetRawText())}: must be a finite number"];
        else if (m.Unit != WeightUnit.Unspecified)
        {
            // The filter's plausibility bounds, in the caller's unit: anything outside is a typo or a wrong unit, not a weight.
            var min = Math.Ceiling(WeightUnits.FromKilograms(services.Filter.MinPlausibleKg, m.Unit) * 100) / 100;
            var max = Math.Floor(WeightUnits.FromKilograms(services.Filter.MaxPlausibleKg, m.Unit) * 100) / 100;
            if (InputRules.CheckRange(weightField, value, min, max, unitText!.ToLowerInvariant()) is { } problem) errors[weightField] = [problem];
            else m.Value = value;
        }

        var timeField = prefix + "timestamp";
        var timeText = String(body, timeField, required: true, errors);
        if (timeText is not null)
        {
            if (!body.GetProperty("timestamp").TryGetDateTimeOffset(out var time) || !HasOffset(timeText))
                errors[timeField] = [$"{timeField} = {InputRules.Quote(timeText)}: must be an ISO-8601 date-time with an offset, such as 2026-01-31T07:30:00Z"];
            else if (services.Options.Input.TimeRule.Check(timeField, time, DateTimeOffset.UtcNow) is { } problem)
                errors[timeField] = [problem];
            else m.EventTimeUnixMs = time.ToUnixTimeMilliseconds();
        }

        var sourceText = String(body, prefix + "source", required: true, errors);
        if (sourceText is not null)
            m.Source = sourceText.ToLowerInvariant() switch
            {
                "care_team" => WeightSource.CareTeam,
                "connected_scale" => WeightSource.ConnectedScale,
                "patient_reported" => WeightSource.PatientReported,
                "unknown" or "unspecified" => WeightSource.Unspecified,
                _ => Error(errors, prefix + "source", $"{prefix}source = {InputRules.Quote(sourceText)}: must be care_team, connected_scale, patient_reported or unknown", WeightSource.Unspecified),
            };

        var eventText = String(body, prefix + "declared_event", required: false, errors);
        if (eventText is not null)
            m.DeclaredEvent = eventText.ToLowerInvariant() switch
            {
                "surgery" => WeightEvent.Surgery,
                "none" => WeightEvent.Unspecified,
                _ => Error(errors, prefix + "declared_event", $"{prefix}declared_event = {InputRules.Quote(eventText)}: must be surgery or none", WeightEvent.Unspecified),
            };
        return m;
    }

    private static T Error<T>(Dictionary<string, string[]> errors, string field, string message, T fallback)
    {
        errors[field] = [message];
        return fallback;
    }

}
