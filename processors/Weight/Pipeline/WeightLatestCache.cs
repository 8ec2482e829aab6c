using System.Globalization;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Pipeline;

/// <summary>A user's latest filtered weight, as the gateway serves it.</summary>
public sealed record WeightLatest(
    string UserId, string MeasurementId, long EventTimeUnixMs, double FilteredWeightKg, double TrendKgPerWeek,
    double Confidence, double RawWeightKg, bool Accepted, bool NeedsInitialization);

/// <summary>The Redis side of the weights pipeline: hash <c>streamhealth:weight:latest:{userId}</c> with
/// the fields of <see cref="WeightLatest"/> in snake_case, expiring 30 days after the last write.
/// Written through by the weights Redis sink with a compare-and-set on event time, so a replayed or
/// out-of-order result never overwrites a newer one; read by the gateway before PostgreSQL.</summary>
public static class WeightLatestCache
{
    public const string KeyPrefix = "streamhealth:weight:latest:";
    public static readonly TimeSpan Ttl = TimeSpan.FromDays(30);

    public static RedisKey Key(string userId) => KeyPrefix + userId;

    /// <summary>Whether a result is a "latest weight": an accepted measurement with an initialised estimate.
    /// The PostgreSQL fallback applies the same rule, so both sources agree on which row is latest.</summary>
    public static bool HasEstimate(WeightResult r) => r.Accepted && r.FilteredWeightKg > 0 && !r.NeedsInitialization;

    /// <summary>Queues the compare-and-set for <paramref name="result"/> on <paramref name="redis"/> (a batch or the database).</summary>
    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, WeightResult result) =>
        RedisLatestHash.WriteAsync(redis, Key(result.UserId), result.EventTimeUnixMs, Ttl,
        [
            "user_id", result.UserId,
            "measurement_id", result.MeasurementId,
            RedisLatestHash.EventTimeField, result.EventTimeUnixMs,
            "filtered_weight_kg", F(result.FilteredWeightKg),
            "trend_kg_per_week", F(result.TrendKgPerWeek),
            "confidence", F(result.Confidence),
            "raw_weight_kg", F(result.RawWeightKg),
            "accepted", result.Accepted ? 1 : 0,
            "needs_initialization", result.NeedsInitialization ? 1 : 0,
        ]);

    public static async Task<WeightLatest?> ReadAsync(IDatabaseAsync redis, string userId)
    {
        var fields = await redis.HashGetAllAsync(Key(userId));
        if (fields.Length == 0) return null;
        var d = fields.ToDictionary(f => (string)f.Name!, f => (string)f.Value!);
        return new WeightLatest(d["user_id"], d["measurement_id"], long.Parse(d["event_time_unix_ms"], CultureInfo.InvariantCulture),
            P(d["filtered_weight_kg"]), P(d["trend_kg_per_week"]), P(d["confidence"]), P(d["raw_weight_kg"]),
            d["accepted"] == "1", d["needs_initialization"] == "1");
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    private static double P(string s) => double.Parse(s, CultureInfo.InvariantCulture);
}
