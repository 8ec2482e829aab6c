using System.Text.Json.Serialization;
using StreamHealth.Runtime.Streams;

namespace StreamHealth.Weight.Pipeline;

/// <summary>A user's live filter state as the topology holds it now (interactive query, `GET /api/weight/{userId}/state`):
/// unlike /latest it does not wait for the sinks, and it shows what the filter is doing between results (readings
/// buffered for (re)initialisation, a second hypothesis being tracked). Weights in kg, times ISO-8601 UTC.</summary>
public sealed record WeightStateView(
    [property: JsonPropertyName("user_id")] string UserId,
    [property: JsonPropertyName("initialized")] bool Initialized,
    /// <summary>The estimate at <see cref="EstimateTime"/> (null until initialised).</summary>
    [property: JsonPropertyName("weight_kg")] double? WeightKg,
    /// <summary>Standard deviation of the estimate (square root of the weight variance).</summary>
    [property: JsonPropertyName("weight_sd_kg")] double? WeightSdKg,
    [property: JsonPropertyName("trend_kg_per_week")] double? TrendKgPerWeek,
    /// <summary>The last accepted measurement (rejections do not move it).</summary>
    [property: JsonPropertyName("estimate_time")] DateTime? EstimateTime,
    /// <summary>The newest measurement processed; older ones are out of order.</summary>
    [property: JsonPropertyName("last_event_time")] DateTime? LastEventTime,
    [property: JsonPropertyName("update_count")] int UpdateCount,
    [property: JsonPropertyName("readings_awaiting_initialization")] int ReadingsAwaitingInitialization,
    /// <summary>Whether readings that disagree with the track (another person, a real step) are followed as a second hypothesis.</summary>
    [property: JsonPropertyName("second_hypothesis")] bool SecondHypothesis,
    /// <summary>The weights.raw offset of the last record applied to this state (the applied-offset fence).</summary>
    [property: JsonPropertyName("applied_offset")] long AppliedOffset)
{
    internal static WeightStateView Of(string userId, Fenced<WeightUserState> entry)
    {
        var f = entry.Value.Filter;
        static DateTime? Time(long unixMs) => unixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime : null;
        return new WeightStateView(userId, f.Initialized,
            f.Initialized ? f.WeightKg : null,
            f.Initialized ? Math.Sqrt(Math.Max(0, f.CovarianceWeightKg2)) : null,
            f.Initialized ? f.TrendKgPerDay * 7 : null,
            Time(f.EstimateTimeUnixMs), Time(f.EventTimeUnixMs), (int)f.UpdateCount, f.InitBuffer.Count, f.SecondTrack is not null,
            entry.AppliedOffset);
    }
}
