using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>A stored weight filter state that cannot be read; the message names the field and value.</summary>
public sealed class WeightStateFormatException(string message, Exception? inner = null) : FormatException(message, inner);

/// <summary>Bytes ↔ <see cref="WeightFilterState"/> for the state store, reading every version ever written.</summary>
/// <remarks>
/// <para><b>Version 5</b> (current, issue 19): the protobuf message <c>streamhealth.WeightFilterState</c> with
/// <c>schema_version = 5</c>: the person's day-to-day fluctuation (<c>body_variance_kg2</c>, learned from their
/// accepted readings, 0 = not yet; <c>body_variance_readings</c>), which the filter adds to the source's own error,
/// and the second track's <c>first_evidence_time_unix_ms</c>, from which its evidence's duration counts.
/// <see cref="Encode"/> always writes it.</para>
/// <para><b>Version 4</b>: version 5 with <c>noise_scale</c> instead: a multiplier of the source's whole-scatter
/// variance (1.2 kg for a home scale by that version's defaults). Upgraded in place: the fluctuation is what that
/// scale gave a home-scale reading less the home scale's own error (0.3 kg), held within the default 0.5-3 kg, and
/// counts as 20 readings learned (version 4 averaged over about 20); <c>noise_scale</c> is cleared. A second track
/// has no first evidence time (0): its duration counts from its next reading, so no migrated suspect re-anchors
/// sooner than before.</para>
/// <para><b>Version 3</b>: the same message without <c>noise_scale</c>: a second hypothesis track
/// (<c>second_track</c>), the person's cadence and a declared event's end. Upgraded in place: the fluctuation starts
/// unlearned (0), as for a new person.</para>
/// <para><b>Version 2</b>: the same message with <c>schema_version = 2</c>, which kept up to three
/// <c>pending_rejections</c> instead of a second track. Upgraded in place: the pending rejections become
/// the second track (level: their median carried along the estimate's trend to the newest; independent
/// days: those at least IndependentSpacingDays apart, with the default 0.75), then are cleared; cadence and
/// declared event start unknown (0).</para>
/// <para><b>Version 1</b>: the JSON the original Python service kept per user (UTF-8, one object):</para>
/// <code>
/// {"last_state": [81.2, -0.05],                          // [weight kg, trend kg/day]; null = never initialised
///  "last_covariance": [[0.41, 0.002], [0.002, 0.0004]],  // P in kg², kg²/day, kg²/day²; symmetric
///  "last_timestamp": "2024-05-01T07:31:00+00:00",         // ISO 8601; without an offset it is UTC
///  "measurement_count": 42}                               // measurements in the estimate
/// </code>
/// <para>It is upgraded to an initialised version-2 state at <c>last_timestamp</c> with that estimate and
/// count. What v1 never kept starts empty: no init buffer, no pending rejections, no fingerprints (so the
/// first re-sent reading after the upgrade is not recognised as a DUPLICATE unless it is also older than
/// last_timestamp, when it is OUT_OF_ORDER), and the baseline is the v1 estimate itself. A JSON state is told
/// from protobuf by its first non-blank byte '{': protobuf would need field 15 with the deprecated group
/// wire type there, which no StreamHealth message uses.</para>
/// </remarks>
public static class WeightStateCodec
{
    public const uint CurrentSchemaVersion = 5;
    public const uint NoiseScaleSchemaVersion = 4;
    public const uint SecondTrackSchemaVersion = 3;
    public const uint PendingRejectionsSchemaVersion = 2;
    public const uint PythonJsonSchemaVersion = 1;

    public static WeightFilterState NewState() => new() { SchemaVersion = CurrentSchemaVersion };

    /// <summary>The current version's bytes (sets <c>schema_version</c> to <see cref="CurrentSchemaVersion"/>).</summary>
    public static byte[] Encode(WeightFilterState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        state.SchemaVersion = CurrentSchemaVersion;
        return state.ToByteArray();
    }

    /// <summary>Reads version 1 (JSON), 2, 3, 4 or 5 (protobuf); the result is always a version-5 state.</summary>
    /// <exception cref="WeightStateFormatException">Naming what is wrong.</exception>
    public static WeightFilterState Decode(ReadOnlySpan<byte> bytes)
    {
        var start = 0;
        if (bytes.StartsWith("\uFEFF"u8)) start = 3;
        while (start < bytes.Length && bytes[start] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') start++;
        if (start == bytes.Length)
            throw new WeightStateFormatException("weight filter state is empty");
        return bytes[start] == (byte)'{' ? UpgradeFromPythonJson(bytes) : ReadCurrent(bytes);
    }

    private static WeightFilterState ReadCurrent(ReadOnlySpan<byte> bytes)
    {
        WeightFilterState state;
        try
        {
            state = WeightFilterState.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new WeightStateFormatException($"weight filter state ({bytes.Length} bytes) is neither version-2/3/4/5 protobuf nor version-1 JSON: {e.Message}", e);
        }
        switch (state.SchemaVersion)
        {
            case CurrentSchemaVersion or NoiseScaleSchemaVersion or SecondTrackSchemaVersion:
                if (state.PendingRejections.Count > 0)
                    throw new WeightStateFormatException($"weight filter state: version {state.SchemaVersion} with {state.PendingRejections.Count} pending_rejections; only version 2 kept them");
                if (state.SchemaVersion != NoiseScaleSchemaVersion && state.NoiseScale != 0)
                    throw new WeightStateFormatException($"weight filter state: version {state.SchemaVersion} with noise_scale = {F(state.NoiseScale)}; only version 4 kept it");
                if (state.SchemaVersion != CurrentSchemaVersion && (state.BodyVarianceKg2 != 0 || state.BodyVarianceReadings != 0))
                    throw new WeightStateFormatException($"weight filter state: version {state.SchemaVersion} with body_variance_kg2 = {F(state.BodyVarianceKg2)}; only version 5 keeps it");
                if (!double.IsFinite(state.NoiseScale) || state.NoiseScale < 0)
                    throw new WeightStateFormatException($"weight filter state: noise_scale = {F(state.NoiseScale)}; must be 0 (not learned) or positive");
                if (!double.IsFinite(state.BodyVarianceKg2) || state.BodyVarianceKg2 < 0)
                    throw new WeightStateFormatException($"weight filter state: body_variance_kg2 = {F(state.BodyVarianceKg2)}; must be 0 (not learned) or positive");
                if (state.SchemaVersion == NoiseScaleSchemaVersion) UpgradeFromNoiseScale(state);
                state.SchemaVersion = CurrentSchemaVersion;
                break;
            case PendingRejectionsSchemaVersion: UpgradeFromPendingRejections(state); break;
            case 0: throw new WeightStateFormatException($"weight filter state: schema_version is missing (0); expected {CurrentSchemaVersion}");
            case PythonJsonSchemaVersion: throw new WeightStateFormatException("weight filter state: schema_version = 1 in protobuf, but version 1 was only ever JSON");
            default: throw new WeightStateFormatException($"weight filter state: schema_version = {state.SchemaVersion} was written by a newer StreamHealth; this build reads versions 1-{CurrentSchemaVersion}");
        }
        if (state.RecentFingerprints.Count > MeasurementFingerprint.RingSize)
            throw new WeightStateFormatException($"weight filter state: recent_fingerprints holds {state.RecentFingerprints.Count}; at most {MeasurementFingerprint.RingSize}");
        if (state.FingerprintCursor >= MeasurementFingerprint.RingSize)
            throw new WeightStateFormatException($"weight filter state: fingerprint_cursor = {state.FingerprintCursor}; must be below {MeasurementFingerprint.RingSize}");
        if (state.Initialized)
            CheckEstimate(state.WeightKg, state.TrendKgPerDay, state.CovarianceWeightKg2, state.CovarianceTrendKg2PerDay2, "weight filter state");
        if (state.SecondTrack is { } track)
            CheckEstimate(track.WeightKg, track.TrendKgPerDay, track.CovarianceWeightKg2, track.CovarianceTrendKg2PerDay2, "weight filter state: second_track");
        if (!double.IsFinite(state.CadenceDays) || state.CadenceDays < 0)
            throw new WeightStateFormatException($"weight filter state: cadence_days = {F(state.CadenceDays)}: must be a finite number, 0 or more");
        return state;
    }

    /// <summary>Version 4 → 5 in place (see the class remarks).</summary>
    private static void UpgradeFromNoiseScale(WeightFilterState state)
    {
        if (state.NoiseScale > 0)
        {
            // Version 4's defaults: home scale 1.2 kg whole scatter; version 5's: its own error 0.3 kg, fluctuation 0.5-3 kg.
            state.BodyVarianceKg2 = Math.Clamp(state.NoiseScale * 1.2 * 1.2 - 0.3 * 0.3, 0.5 * 0.5, 3.0 * 3.0);
            state.BodyVarianceReadings = 20;
        }
        state.NoiseScale = 0;
    }

    /// <summary>Version 2 → 3 in place (see the class remarks).</summary>
    private static void UpgradeFromPendingRejections(WeightFilterState state)
    {
        var pending = state.PendingRejections;
        if (state.Initialized && pending.Count > 0)
        {
            const long independentSpacingMs = 64_800_000;   // WeightFilterOptions.IndependentSpacingDays default, 0.75 day
            var newest = pending[^1].TimeUnixMs;
            Span<double> levels = stackalloc double[pending.Count];
            var independentDays = 0u;
            var lastCounted = long.MinValue;
            for (var i = 0; i < pending.Count; i++)
            {
                levels[i] = pending[i].WeightKg - state.TrendKgPerDay * ((pending[i].TimeUnixMs - newest) / 86_400_000.0);
                if (lastCounted == long.MinValue || pending[i].TimeUnixMs - lastCounted >= independentSpacingMs)
                {
                    independentDays++;
                    lastCounted = pending[i].TimeUnixMs;
                }
            }
            // Rejections on both sides of the estimate were never one track (version 2 would not re-anchor on them).
            var above = 0;
            foreach (var level in levels) if (level > state.WeightKg) above++;
            if (above == 0 || above == pending.Count)
            {
                var sdKg = 2.0;   // the noisiest source's default: the migration does not know the options
                state.SecondTrack = new WeightTrack
                {
                    WeightKg = RobustBaseline.MedianInPlace(levels),
                    TrendKgPerDay = state.TrendKgPerDay,
                    CovarianceWeightKg2 = sdKg * sdKg / pending.Count,
                    CovarianceTrendKg2PerDay2 = state.CovarianceTrendKg2PerDay2,
                    EstimateTimeUnixMs = newest,
                    IndependentDays = independentDays,
                    LastEvidenceTimeUnixMs = lastCounted,
                    ReadingCount = (uint)pending.Count,
                };
            }
        }
        pending.Clear();
        state.SchemaVersion = CurrentSchemaVersion;
    }

    private static WeightFilterState UpgradeFromPythonJson(ReadOnlySpan<byte> bytes)
    {
        const string what = "version-1 (JSON) weight state";
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes.ToArray());
        }
        catch (JsonException e)
        {
            throw new WeightStateFormatException($"{what} is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new WeightStateFormatException($"{what}: expected a JSON object, got {root.ValueKind}");

            var state = NewState();
            if (!root.TryGetProperty("last_timestamp", out var timestamp) || timestamp.ValueKind == JsonValueKind.Null)
            {
                // A user the Python service saw but never initialised: nothing worth carrying over.
                if (root.TryGetProperty("last_state", out var orphan) && orphan.ValueKind != JsonValueKind.Null)
                    throw new WeightStateFormatException($"{what}: last_state is set but last_timestamp is missing");
                return state;
            }
            var timeUnixMs = ParseTimestamp(timestamp, what);
            state.EventTimeUnixMs = timeUnixMs;

            if (!root.TryGetProperty("last_state", out var lastState) || lastState.ValueKind == JsonValueKind.Null)
                return state;

            var weightKg = Number(lastState, 0, 2, "last_state", what);
            var trendKgPerDay = Number(lastState, 1, 2, "last_state", what);
            if (!root.TryGetProperty("last_covariance", out var covariance) || covariance.ValueKind != JsonValueKind.Array || covariance.GetArrayLength() != 2)
                throw new WeightStateFormatException($"{what}: last_covariance must be [[p00, p01], [p10, p11]]");
            var p00 = Number(covariance[0], 0, 2, "last_covariance[0]", what);
            var p01 = Number(covariance[0], 1, 2, "last_covariance[0]", what);
            var p10 = Number(covariance[1], 0, 2, "last_covariance[1]", what);
            var p11 = Number(covariance[1], 1, 2, "last_covariance[1]", what);
            // numpy round trips leave asymmetry in the last digits; more than that is a broken matrix.
            if (Math.Abs(p01 - p10) > 1e-9 * Math.Max(1, Math.Max(Math.Abs(p01), Math.Abs(p10))))
                throw new WeightStateFormatException($"{what}: last_covariance is not symmetric (p01 = {F(p01)}, p10 = {F(p10)})");
            CheckEstimate(weightKg, trendKgPerDay, p00, p11, what);
            if (p01 * p01 > p00 * p11 * (1 + 1e-9))
                throw new WeightStateFormatException($"{what}: last_covariance is not positive semi-definite (p01² = {F(p01 * p01)} > p00·p11 = {F(p00 * p11)})");

            var count = 0u;
            if (root.TryGetProperty("measurement_count", out var measurementCount) && measurementCount.ValueKind != JsonValueKind.Null
                && !measurementCount.TryGetUInt32(out count))
                throw new WeightStateFormatException($"{what}: measurement_count = {measurementCount.GetRawText()}: must be a whole number, 0 or more");

            state.Initialized = true;
            state.WeightKg = weightKg;
            state.TrendKgPerDay = trendKgPerDay;
            state.CovarianceWeightKg2 = p00;
            state.CovarianceWeightTrendKg2PerDay = 0.5 * (p01 + p10);
            state.CovarianceTrendKg2PerDay2 = p11;
            state.EstimateTimeUnixMs = timeUnixMs;
            state.UpdateCount = count;
            state.BaselineWeightKg = weightKg;
            state.BaselineTimeUnixMs = timeUnixMs;
            return state;
        }
    }

    private static long ParseTimestamp(JsonElement timestamp, string what)
    {
        var text = timestamp.ValueKind == JsonValueKind.String ? timestamp.GetString()! : timestamp.GetRawText();
        // Python's isoformat(): "2024-05-01T07:31:00", optional fractions and offset; naive means UTC there.
        if (timestamp.ValueKind != JsonValueKind.String
            || !DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
            throw new WeightStateFormatException($"{what}: last_timestamp = {text}: not an ISO 8601 time such as 2024-05-01T07:31:00+00:00");
        return time.ToUnixTimeMilliseconds();
    }

    private static double Number(JsonElement array, int index, int length, string field, string what)
    {
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() != length)
            throw new WeightStateFormatException($"{what}: {field} must be an array of {length} numbers, got {array.GetRawText()}");
        var element = array[index];
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetDouble(out var value) || !double.IsFinite(value))
            throw new WeightStateFormatException($"{what}: {field}[{index}] = {element.GetRawText()}: not a finite number");
        return value;
    }

    private static void CheckEstimate(double weightKg, double trendKgPerDay, double varWeight, double varTrend, string what)
    {
        if (!double.IsFinite(weightKg) || weightKg <= 0)
            throw new WeightStateFormatException($"{what}: weight = {F(weightKg)} kg: must be a finite positive number");
        if (!double.IsFinite(trendKgPerDay))
            throw new WeightStateFormatException($"{what}: trend = {F(trendKgPerDay)} kg/day: not a finite number");
        if (!double.IsFinite(varWeight) || varWeight < 0 || !double.IsFinite(varTrend) || varTrend < 0)
            throw new WeightStateFormatException($"{what}: covariance diagonal ({F(varWeight)}, {F(varTrend)}) must be finite and 0 or more");
    }

    private static string F(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
