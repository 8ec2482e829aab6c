using System.Globalization;
using System.Text.Json;
using StreamHealth.Forecast.Inference;

namespace StreamHealth.Forecast.Quantiles;

/// <summary>The model's post-hoc calibration and the sensor's physical bounds, from its metadata JSON
/// (<c>calibration</c> and <c>bounds_mg_dl</c>, processors/Forecast/Training/README.md, "Recipe and calibration"): for band b of the request's last input
/// value and horizon step h, the nominal level α is served as the raw MC mixture's τ-quantile, τ interpolated
/// linearly in <c>mapped_levels[b][h]</c> over <c>levels</c>. A model without the block (the tiny test models, 1.1.0)
/// gets the identity map (τ = α) and the default bounds 39–401 mg/dL. Immutable; built once at model load.</summary>
public sealed class ForecastCalibration
{
    public const double DefaultMinMgDl = 39, DefaultMaxMgDl = 401;
    /// <summary>τ must stay this far inside (0, 1): Φ⁻¹ and the mixture's bracket are finite there.</summary>
    public const double MinMappedLevel = 1e-6;
    private static readonly double[] DefaultBandEdges = [70, 180, 250];

    private readonly double[] _mapped;   // [band][step][level], flattened

    /// <summary>Lower-inclusive band edges in mg/dL (bands = edges + 1): band 0 is below the first edge.</summary>
    public IReadOnlyList<double> BandEdgesMgDl { get; }
    /// <summary>The nominal grid α_k, strictly increasing in (0, 1); empty for the identity map.</summary>
    public IReadOnlyList<double> Levels { get; }
    public int Horizon { get; }
    public bool IsIdentity => Levels.Count == 0;
    /// <summary>The metadata's bounds (<c>bounds_mg_dl</c>), or 39/401.</summary>
    public double MinMgDl { get; }
    public double MaxMgDl { get; }
    public string Method { get; }
    public int Bands => BandEdgesMgDl.Count + 1;

    private ForecastCalibration(double[] bandEdges, double[] levels, double[] mapped, int horizon, double min, double max, string method)
    {
        BandEdgesMgDl = bandEdges;
        Levels = levels;
        _mapped = mapped;
        Horizon = horizon;
        MinMgDl = min;
        MaxMgDl = max;
        Method = method;
    }

    public static ForecastCalibration Identity(int horizon, double min = DefaultMinMgDl, double max = DefaultMaxMgDl) =>
        new(DefaultBandEdges, [], [], horizon, min, max, "identity (the model's metadata has no calibration block)");

    /// <summary>Band of a request: by its last input value, lower-inclusive edges (NaN falls in the top band; the
    /// consumer never sees one, requests are validated).</summary>
    public int Band(double lastMgDl)
    {
        var edges = BandEdgesMgDl;
        for (var b = 0; b < edges.Count; b++)
            if (lastMgDl < edges[b]) return b;
        return edges.Count;
    }

    /// <summary>τ for nominal <paramref name="level"/> at (band, step): identity, or the linear interpolation of the
    /// band and step's mapped levels, clamped to the grid's ends.</summary>
    public double MappedLevel(int band, int step, double level)
    {
        if (IsIdentity) return level;
        var levels = Levels;
        var k = levels.Count;
        var row = _mapped.AsSpan((band * Horizon + step) * k, k);
        if (level <= levels[0]) return row[0];
        if (level >= levels[k - 1]) return row[k - 1];
        var i = 1;
        while (levels[i] < level) i++;
        var t = (level - levels[i - 1]) / (levels[i] - levels[i - 1]);
        return row[i - 1] + t * (row[i] - row[i - 1]);
    }

    /// <summary>The calibration of the model at <paramref name="modelPath"/>: read from the same name with .json when
    /// that file exists and has the blocks, else the identity map and default bounds.</summary>
    /// <exception cref="ForecastModelException">A block present but malformed, named by file and field.</exception>
    public static ForecastCalibration Load(string modelPath, int horizon)
    {
        var metadata = Path.ChangeExtension(modelPath, ".json");
        if (!File.Exists(metadata)) return Identity(horizon);
        try
        {
            using var json = JsonDocument.Parse(File.ReadAllBytes(metadata));
            return Parse(json.RootElement, metadata, horizon);
        }
        catch (JsonException e)
        {
            throw new ForecastModelException($"model metadata {metadata} is not valid JSON: {OneLine(e.Message)}", e);
        }
    }

    /// <param name="file">Named in every error.</param>
    public static ForecastCalibration Parse(JsonElement root, string file, int horizon)
    {
        double min = DefaultMinMgDl, max = DefaultMaxMgDl;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("bounds_mg_dl", out var bounds))
        {
            if (bounds.ValueKind != JsonValueKind.Object) throw Bad(file, "bounds_mg_dl", "must be an object {\"min\": …, \"max\": …}");
            min = Number(bounds, "min", file, "bounds_mg_dl.min");
            max = Number(bounds, "max", file, "bounds_mg_dl.max");
            if (!(min >= 0 && min < max && max <= 1_000))
                throw Bad(file, "bounds_mg_dl", $"min {Show(min)}, max {Show(max)}: must satisfy 0 ≤ min < max ≤ 1000 mg/dL");
        }
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("calibration", out var c)) return Identity(horizon, min, max);
        if (c.ValueKind != JsonValueKind.Object) throw Bad(file, "calibration", "must be an object");

        var edges = c.TryGetProperty("band_edges_mg_dl", out var e) ? Numbers(e, file, "calibration.band_edges_mg_dl") : DefaultBandEdges;
        if (edges.Length == 0) throw Bad(file, "calibration.band_edges_mg_dl", "is empty");
        for (var i = 1; i < edges.Length; i++)
            if (!(edges[i] > edges[i - 1])) throw Bad(file, $"calibration.band_edges_mg_dl[{i}]", $"{Show(edges[i])} does not increase (previous {Show(edges[i - 1])})");

        if (!c.TryGetProperty("levels", out var l)) throw Bad(file, "calibration.levels", "is missing");
        var levels = Numbers(l, file, "calibration.levels");
        if (levels.Length < 2) throw Bad(file, "calibration.levels", $"has {levels.Length} level(s); at least 2");
        for (var i = 0; i < levels.Length; i++)
        {
            if (!(levels[i] > 0 && levels[i] < 1)) throw Bad(file, $"calibration.levels[{i}]", $"{Show(levels[i])} is not strictly between 0 and 1");
            if (i > 0 && !(levels[i] > levels[i - 1])) throw Bad(file, $"calibration.levels[{i}]", $"{Show(levels[i])} does not increase (previous {Show(levels[i - 1])})");
        }

        if (!c.TryGetProperty("mapped_levels", out var m)) throw Bad(file, "calibration.mapped_levels", "is missing");
        var bands = edges.Length + 1;
        var shape = $"[{bands} bands][{horizon} steps][{levels.Length} levels]";
        if (m.ValueKind != JsonValueKind.Array || m.GetArrayLength() != bands)
            throw Bad(file, "calibration.mapped_levels", $"has {Length(m)} bands; expected shape {shape}");
        var mapped = new double[bands * horizon * levels.Length];
        var b = 0;
        foreach (var band in m.EnumerateArray())
        {
            if (band.ValueKind != JsonValueKind.Array || band.GetArrayLength() != horizon)
                throw Bad(file, $"calibration.mapped_levels[{b}]", $"has {Length(band)} steps; expected shape {shape}");
            var h = 0;
            foreach (var step in band.EnumerateArray())
            {
                var where = $"calibration.mapped_levels[{b}][{h}]";
                var taus = Numbers(step, file, where);
                if (taus.Length != levels.Length) throw Bad(file, where, $"has {taus.Length} levels; expected shape {shape}");
                for (var k = 0; k < taus.Length; k++)
                {
                    if (!(taus[k] >= MinMappedLevel && taus[k] <= 1 - MinMappedLevel))
                        throw Bad(file, $"{where}[{k}]", $"{Show(taus[k])} is outside [1e-6, 1 − 1e-6]");
                    if (k > 0 && !(taus[k] > taus[k - 1]))
                        throw Bad(file, $"{where}[{k}]", $"{Show(taus[k])} does not increase (previous {Show(taus[k - 1])})");
                }
                taus.CopyTo(mapped, (b * horizon + h) * levels.Length);
                h++;
            }
            b++;
        }
        var method = c.TryGetProperty("method", out var md) && md.ValueKind == JsonValueKind.String ? md.GetString() ?? "" : "";
        return new ForecastCalibration(edges, levels, mapped, horizon, min, max, method);
    }

    /// <summary>The per-request quantile computation for these nominal levels and bounds (null: the metadata's).</summary>
    /// <exception cref="ForecastModelException">A level outside the calibration grid, or bounds that cross.</exception>
    public CalibratedQuantiles For(IReadOnlyList<double> levels, double? minMgDl = null, double? maxMgDl = null, string? file = null)
    {
        var min = minMgDl ?? MinMgDl;
        var max = maxMgDl ?? MaxMgDl;
        if (!(min < max))
            throw new ForecastModelException($"{ForecastOptions.Section}:MinGlucoseMgDl = {Show(min)} and {ForecastOptions.Section}:MaxGlucoseMgDl = {Show(max)} " +
                                             $"(set, or from {file ?? "the model's metadata"} bounds_mg_dl): the minimum must be below the maximum");
        if (!IsIdentity)
            for (var i = 0; i < levels.Count; i++)
                if (levels[i] < Levels[0] || levels[i] > Levels[^1])
                    throw new ForecastModelException($"{ForecastOptions.Section}:Quantiles:{i} = {Show(levels[i])}: outside the calibration grid " +
                                                     $"[{Show(Levels[0])}, {Show(Levels[^1])}] of {file ?? "the model's metadata"} (calibration.levels)");
        return new CalibratedQuantiles(this, levels, min, max);
    }

    private static double Number(JsonElement parent, string name, string file, string field) =>
        parent.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d)
            ? d
            : throw Bad(file, field, parent.TryGetProperty(name, out _) ? "is not a number" : "is missing");

    private static double[] Numbers(JsonElement array, string file, string field)
    {
        if (array.ValueKind != JsonValueKind.Array) throw Bad(file, field, $"is {array.ValueKind.ToString().ToLowerInvariant()}, not an array of numbers");
        var values = new double[array.GetArrayLength()];
        var i = 0;
        foreach (var v in array.EnumerateArray())
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out values[i]) || !double.IsFinite(values[i]))
                throw Bad(file, $"{field}[{i}]", "is not a number");
            i++;
        }
        return values;
    }

    private static string Length(JsonElement e) => e.ValueKind == JsonValueKind.Array ? e.GetArrayLength().ToString(CultureInfo.InvariantCulture) : "no array of";

    private static ForecastModelException Bad(string file, string field, string problem) =>
        new($"model metadata {file}: {field} {problem}");

    internal static string Show(double d) => d.ToString("R", CultureInfo.InvariantCulture);

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}

/// <summary>One request's calibrated forecast, the single implementation the forecast consumer, the gateway and
/// <c>forecast evaluate</c> share: band from the last input value, τ per (band, step, level) and Φ⁻¹(τ) looked up
/// (precomputed here, at load), the raw MC mixture's τ-quantile (<see cref="MixtureQuantiles"/>), clamped to the
/// bounds. The median is the calibrated 0.5 quantile. Allocation-free per request; immutable, so thread-safe.</summary>
public sealed class CalibratedQuantiles
{
    private readonly double[] _taus;     // [band][step][0 = median, 1.. = levels], flattened
    private readonly double[] _zs;       // Φ⁻¹ of each τ
    private readonly int _perStep;

    public ForecastCalibration Calibration { get; }
    public IReadOnlyList<double> Levels { get; }
    public double MinMgDl { get; }
    public double MaxMgDl { get; }
    public int Horizon => Calibration.Horizon;

    internal CalibratedQuantiles(ForecastCalibration calibration, IReadOnlyList<double> levels, double min, double max)
    {
        Calibration = calibration;
        Levels = [.. levels];
        MinMgDl = min;
        MaxMgDl = max;
        _perStep = levels.Count + 1;
        var horizon = calibration.Horizon;
        _taus = new double[calibration.Bands * horizon * _perStep];
        _zs = new double[_taus.Length];
        for (var b = 0; b < calibration.Bands; b++)
            for (var h = 0; h < horizon; h++)
                for (var k = 0; k < _perStep; k++)
                {
                    var i = (b * horizon + h) * _perStep + k;
                    _taus[i] = calibration.MappedLevel(b, h, k == 0 ? 0.5 : levels[k - 1]);
                    _zs[i] = Gaussian.Quantile(_taus[i]);
                }
    }

    /// <summary>τ served for nominal level k (−1: the median) at (band, step).</summary>
    public double MappedLevel(int band, int step, int level) => _taus[(band * Horizon + step) * _perStep + level + 1];

    /// <summary>Median and bands of one request. <paramref name="lastInputMgDl"/> is its window's last value (picks the
    /// band); <paramref name="means"/>/<paramref name="sds"/> its samples × horizon Gaussians sample-major. Writes the
    /// median per step to <paramref name="median"/> and level k's quantile to <paramref name="bands"/>[k × horizon + step].
    /// False (writing nothing useful) when a mean or σ is not finite.</summary>
    public bool Summarize(float lastInputMgDl, ReadOnlySpan<float> means, ReadOnlySpan<float> sds, int samples,
        Span<float> median, Span<float> bands)
    {
        var horizon = Horizon;
        if (means.Length < samples * horizon || sds.Length < samples * horizon) throw new ArgumentException("fewer Gaussians than samples × horizon");
        if (median.Length < horizon || bands.Length < Levels.Count * horizon) throw new ArgumentException("output spans shorter than the horizon");
        // ForecastOptions allows at most 1000 samples: 16 KB of stack at most.
        Span<double> m = samples <= 1_024 ? stackalloc double[samples] : new double[samples];
        Span<double> s = samples <= 1_024 ? stackalloc double[samples] : new double[samples];
        var band = Calibration.Band(lastInputMgDl);
        var levels = Levels.Count;
        for (var step = 0; step < horizon; step++)
        {
            for (var i = 0; i < samples; i++)
            {
                var mu = means[i * horizon + step];
                var sd = sds[i * horizon + step];
                if (!float.IsFinite(mu) || !float.IsFinite(sd) || sd < 0) return false;
                m[i] = mu;
                s[i] = sd;
            }
            var at = (band * horizon + step) * _perStep;
            median[step] = Clamp(MixtureQuantiles.Quantile(m, s, _taus[at], _zs[at]));
            for (var k = 0; k < levels; k++)
                bands[k * horizon + step] = Clamp(MixtureQuantiles.Quantile(m, s, _taus[at + 1 + k], _zs[at + 1 + k]));
        }
        return true;
    }

    private float Clamp(double mgDl) => (float)Math.Clamp(mgDl, MinMgDl, MaxMgDl);
}
