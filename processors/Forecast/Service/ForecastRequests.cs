using System.Globalization;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using CgmForecastRequest = StreamHealth.Schemas.Avro.Cgm.CgmForecastRequest;

namespace StreamHealth.Forecast.Service;

/// <summary>A forecast request the forecaster will not run; dead-lettered with this message as the reason.</summary>
public sealed class ForecastRequestException(string message) : Exception(message);

/// <summary>The one rule for a forecast request (cgm.forecast-requests) before it reaches the model.</summary>
public static class ForecastRequests
{
    /// <summary>Sensors report 40-400 mg/dL; above 1000 the value is garbage or in another unit (as for cgm.readings).</summary>
    public const float MaxGlucoseMgDl = 1_000;

    /// <summary>Null when the request can be forecast, else the reason, naming the field and value. The event time is
    /// judged against <paramref name="receivedAtUnixMs"/>: the record's timestamp, or the wall clock if that is earlier
    /// (a replay gives the same answer; a producer stamping the future is capped).</summary>
    public static string? Validate(string keyUserId, CgmForecastRequest request, ForecastOptions options, long receivedAtUnixMs)
    {
        if (string.IsNullOrEmpty(keyUserId)) return "record key has no user_id";
        if (InputRules.CheckId("user_id", keyUserId) is { } badUser) return badUser;
        if (string.IsNullOrEmpty(request.user_id)) return "user_id is required";
        if (request.user_id != keyUserId) return $"user_id {InputRules.Quote(request.user_id)} does not match the record key '{keyUserId}'";
        if (string.IsNullOrEmpty(request.request_id)) return "request_id is required (forecasts carry it and sinks deduplicate on it)";
        if (InputRules.CheckId("request_id", request.request_id) is { } badId) return badId;
        if (options.TimeRule.Check("event_time_unix_ms", AvroTime.ToUnixMs(request.event_time_unix_ms), receivedAtUnixMs) is { } badTime) return badTime;
        if (request.step_minutes != options.StepMinutes)
            return $"step_minutes = {request.step_minutes}: the model reads {options.StepMinutes}-minute steps";
        var values = request.glucose_mg_dl ?? [];
        if (values.Count != options.InputSteps)
            return $"glucose_mg_dl has {values.Count} values; the model reads exactly {options.InputSteps} " +
                   $"({options.InputSteps * options.StepMinutes / 60.0:0.##} h of {options.StepMinutes}-minute steps, oldest first)";
        for (var i = 0; i < values.Count; i++)
        {
            var v = values[i];
            if (!float.IsFinite(v)) return $"glucose_mg_dl[{i}] = {F(v)}: every value must be a finite number (gaps are interpolated before a request is made)";
            if (v is <= 0 or > MaxGlucoseMgDl) return $"glucose_mg_dl[{i}] = {F(v)}: must be above 0 and at most {MaxGlucoseMgDl} mg/dL";
        }
        return null;
    }

    private static string F(float v) => v.ToString("R", CultureInfo.InvariantCulture);
}
