using System.Text.Json;
using StreamHealth.Forecast.Inference;

namespace StreamHealth.Forecast.Evaluation;

/// <summary>The reference forecasts of the model's metadata <c>baselines</c> block: GlucoBench's linear regression
/// (x·W + b, W [96][12], fitted on the training people) and the last value carried forward, each with its residual
/// standard deviation per step, from which <c>forecast evaluate</c> makes Gaussian quantiles. Absent parts are null.</summary>
public sealed class ForecastBaselines
{
    public double[]? LinearWeights { get; private init; }     // [input step][horizon step], flattened
    public double[]? LinearBias { get; private init; }
    public double[]? LinearResidualSd { get; private init; }
    public double[]? LastValueResidualSd { get; private init; }
    public bool HasLinearRegression => LinearWeights is not null;

    public static readonly ForecastBaselines None = new();

    /// <summary>From the metadata beside <paramref name="modelPath"/> (same name, .json); <see cref="None"/> without one.</summary>
    /// <exception cref="ForecastModelException">A block present but of the wrong shape, named by file and field.</exception>
    public static ForecastBaselines Load(string modelPath, int inputSteps, int horizon)
    {
        var file = Path.ChangeExtension(modelPath, ".json");
        if (!File.Exists(file)) return None;
        using var json = JsonDocument.Parse(File.ReadAllBytes(file));
        return Parse(json.RootElement, file, inputSteps, horizon);
    }

    public static ForecastBaselines Parse(JsonElement root, string file, int inputSteps, int horizon)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("baselines", out var b) || b.ValueKind != JsonValueKind.Object) return None;
        double[]? weights = null, bias = null, lrSd = null, lvSd = null;
        if (b.TryGetProperty("linear_regression", out var lr))
        {
            var rows = Field(lr, "weights", file, "baselines.linear_regression");
            if (rows.ValueKind != JsonValueKind.Array || rows.GetArrayLength() != inputSteps)
                throw Bad(file, "baselines.linear_regression.weights", $"must have {inputSteps} rows of {horizon} numbers");
            weights = new double[inputSteps * horizon];
            var i = 0;
            foreach (var row in rows.EnumerateArray())
                Vector(row, horizon, file, $"baselines.linear_regression.weights[{i}]").CopyTo(weights, horizon * i++);
            bias = Vector(Field(lr, "bias", file, "baselines.linear_regression"), horizon, file, "baselines.linear_regression.bias");
            lrSd = Vector(Field(lr, "residual_sd_mg_dl", file, "baselines.linear_regression"), horizon, file, "baselines.linear_regression.residual_sd_mg_dl");
        }
        if (b.TryGetProperty("last_value", out var lv))
            lvSd = Vector(Field(lv, "residual_sd_mg_dl", file, "baselines.last_value"), horizon, file, "baselines.last_value.residual_sd_mg_dl");
        return new ForecastBaselines { LinearWeights = weights, LinearBias = bias, LinearResidualSd = lrSd, LastValueResidualSd = lvSd };
    }

    private static JsonElement Field(JsonElement parent, string name, string file, string where) =>
        parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(name, out var v) ? v : throw Bad(file, $"{where}.{name}", "is missing");

    private static double[] Vector(JsonElement array, int length, string file, string field)
    {
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() != length) throw Bad(file, field, $"must be {length} numbers");
        var values = new double[length];
        var i = 0;
        foreach (var v in array.EnumerateArray())
        {
            if (v.ValueKind != JsonValueKind.Number || !double.IsFinite(values[i] = v.GetDouble())) throw Bad(file, $"{field}[{i}]", "is not a number");
            i++;
        }
        return values;
    }

    private static ForecastModelException Bad(string file, string field, string problem) => new($"model metadata {file}: {field} {problem}");
}
