using System.Globalization;
using System.Text;
using Microsoft.Extensions.Configuration;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Forecast;
using StreamHealth.Forecast.Evaluation;
using StreamHealth.Forecast.Inference;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth forecast evaluate FILE... [--people ID,ID] [--per-person] [--model PATH] [--samples N] [--seed S]`:
/// how a clinic checks the shipped model on its own population. Reads every supported export (one person per file, named
/// by the file) or GlucoBench/iglu CSV (several people, by id), cuts GlucoBench windows per person, and prints the
/// model's and the baselines' figures (<see cref="ForecastEvaluator"/>). Needs no broker or database.
/// Bad input is one line and exit code 2.</summary>
internal static class ForecastEvaluateVerb
{
    /// <summary>Requests per ONNX Runtime call (× samples rows): bounds memory on files of any size.</summary>
    public const int BatchRequests = 256;
    public const int DefaultSeed = 1;

    public static int Run(string[] argv)
    {
        var args = new Args(argv, "--per-person");
        if (args.Positional.Count == 0)
            throw new UsageException("usage: streamhealth forecast evaluate FILE... [--people ID,ID] [--per-person] [--model PATH] [--samples N] [--seed S]");
        var options = ForecastOptions.Load(StreamHealthOptions.AddSources(new ConfigurationBuilder()).Build());
        if (args.Get("--model") is { } model) options.ModelPath = Path.GetFullPath(model);
        options.McSamples = args.GetInt("--samples", options.McSamples);
        if (options.McSamples < 1) throw new UsageException("option --samples = 0: at least 1 Monte Carlo sample");
        if (args.Get("--seed") is { } seedText)
            options.Seed = long.TryParse(seedText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s
                : throw new UsageException($"option --seed = '{seedText}' is not a whole number");
        options.Seed ??= DefaultSeed;
        options.MaxBatchSize = BatchRequests;
        options.ThrowIfInvalid();

        var leftOut = new List<string>();
        var people = ReadPeople(args.Positional, leftOut);
        if (args.Get("--people") is { } wanted)
        {
            var ids = wanted.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var known = people.Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
            if (ids.FirstOrDefault(id => !known.Contains(id)) is { } unknown)
                throw new UsageException($"--people: no person \"{unknown}\" in {string.Join(", ", args.Positional.Select(Path.GetFileName))} " +
                                         $"(its {people.Count} people: {string.Join(", ", people.Select(p => p.Id).Take(30))}{(people.Count > 30 ? ", …" : "")})");
            people = [.. people.Where(p => ids.Contains(p.Id))];
        }
        var windows = people.Sum(p => GlucoBenchWindows.CountWindows(p.Segments));
        if (windows == 0)
            throw new UsageException($"no window to evaluate: {Describe(people)} {(people.Count == 1 ? "has" : "have")} no run of " +
                                     $"{GlucoBenchWindows.WindowSteps} contiguous 5-minute steps (96 in + 12 out; gaps over 15 min split the series); " +
                                     $"the longest is {people.Max(p => GlucoBenchWindows.LongestSegment(p.Segments))} steps");

        using var forecaster = OnnxGlucoseForecaster.Open(options);
        var baselines = ForecastBaselines.Load(forecaster.ModelPath, forecaster.InputSteps, forecaster.HorizonSteps);
        var evaluator = new ForecastEvaluator(forecaster, baselines, BatchRequests, options.MinGlucoseMgDl, options.MaxGlucoseMgDl);
        var reports = evaluator.Evaluate(people, args.Has("--per-person"));
        Console.Out.Write(Format(reports, forecaster, evaluator, people, windows, baselines, leftOut));
        return 0;
    }

    private static string Describe(List<EvaluationPerson> people) =>
        people.Count == 1 ? $"person {people[0].Id}" : $"the {people.Count} people";

    /// <summary>Every person of every file: GlucoBench rows by their id, any other export as one person named by the
    /// file. Sensor readings only (not calibrations or meter values), with a glucose a sensor can report; what is left out
    /// is counted per file into <paramref name="leftOut"/> (one line each), so that no reading disappears unsaid.</summary>
    internal static List<EvaluationPerson> ReadPeople(IReadOnlyList<string> files, List<string>? leftOut = null)
    {
        var readings = new Dictionary<string, Readings>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            if (Directory.Exists(file)) throw new UsageException($"{file} is a directory, not a CGM export");
            if (!File.Exists(file)) throw new UsageException($"{file}: no such file");
            var name = Path.GetFileName(file);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            try
            {
                using var reader = CgmFormats.Open(file);
                string? person = null;
                Readings? series = null;
                int otherEvents = 0, impossible = 0;
                long firstImpossibleLine = 0;
                while (reader.TryRead(out var row))
                {
                    var id = reader.PersonId ?? Path.GetFileNameWithoutExtension(file);
                    if (!ReferenceEquals(id, person) && id != person)
                    {
                        person = id;
                        if (seen.Add(id) && readings.TryGetValue(id, out var other))
                            throw new UsageException($"person \"{id}\" is in both {other.File} and {name}: evaluate the files separately");
                        if (!readings.TryGetValue(id, out series)) readings[id] = series = new Readings(name);
                    }
                    if (row.EventType != CgmEventType.EgvRead) { otherEvents++; continue; }
                    if (!(row.GlucoseMgDl > 0 && row.GlucoseMgDl <= GlucoseUnits.ImpossibleAboveMgDl))
                    {
                        if (impossible++ == 0) firstImpossibleLine = reader.Line;
                        continue;
                    }
                    series!.Times.Add(row.TimeMs);
                    series.MgDl.Add(row.GlucoseMgDl);
                }
                if (impossible > 0)
                    leftOut?.Add($"{name}: {impossible} reading(s) with a glucose no sensor reports (outside (0, {GlucoseUnits.ImpossibleAboveMgDl:0}] mg/dL; first at line {firstImpossibleLine})");
                if (otherEvents > 0) leftOut?.Add($"{name}: {otherEvents} row(s) that are not sensor readings (calibrations, meter values, other events)");
                foreach (var skipped in reader.Skipped)
                    leftOut?.Add($"{name}: {skipped.Rows} line(s) skipped: {skipped.Reason} (first at line {skipped.FirstLine})");
            }
            catch (CgmFormatException e)
            {
                throw new UsageException($"{file}: {e.Message}");
            }
            catch (IOException e)
            {
                throw new UsageException($"{file}: cannot be read ({e.Message})");
            }
            catch (UnauthorizedAccessException)
            {
                throw new UsageException($"{file}: permission denied");
            }
        }
        if (readings.Count == 0) throw new UsageException($"no glucose readings in {string.Join(", ", files)}");
        return [.. readings.Select(r => new EvaluationPerson(r.Key, GlucoBenchWindows.Segments(
            System.Runtime.InteropServices.CollectionsMarshal.AsSpan(r.Value.Times), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(r.Value.MgDl))))];
    }

    private sealed record Readings(string File)
    {
        public List<long> Times { get; } = [];
        public List<double> MgDl { get; } = [];
    }

    internal static string Format(List<EvaluationReport> reports, OnnxGlucoseForecaster forecaster, ForecastEvaluator evaluator,
        List<EvaluationPerson> people, int windows, ForecastBaselines baselines, IReadOnlyList<string>? leftOut = null)
    {
        var c = CultureInfo.InvariantCulture;
        var o = new StringBuilder();
        var q = evaluator.Quantiles;
        var calibration = q.Calibration.IsIdentity ? "none (identity)" : "from the metadata";
        o.AppendLine(c, $"model {forecaster.ModelVersion}: {forecaster.McSamples} Monte Carlo samples, seed {forecaster.Seed}, calibration {calibration}, bounds {q.MinMgDl:0.#}–{q.MaxMgDl:0.#} mg/dL");
        var noLinear = baselines.HasLinearRegression ? "" : "; no linear regression baseline in the model's metadata";
        o.AppendLine(c, $"{people.Count} {(people.Count == 1 ? "person" : "people")}, {windows} windows (96 × 5 min in, 12 out, stride 1){noLinear}");
        foreach (var line in leftOut ?? []) o.AppendLine(c, $"left out: {line}");
        foreach (var r in reports)
        {
            o.AppendLine();
            o.AppendLine(r.Scope == "all" ? "all windows" : $"person {r.Scope}");
            o.AppendLine("method             windows  sqrtMedMSE  medMAE  RMSE@30  RMSE@60  calErr  cov50  cov90  bias@60 <70 | 70-180 | 180-250 | >=250 (windows)");
            Row(o, "model", r.Model);
            Row(o, "last value", r.LastValue);
            if (r.LinearRegression is { } lr) Row(o, "linear regression", lr);
        }
        return o.ToString();
    }

    private static void Row(StringBuilder o, string method, ForecastMetricsResult m)
    {
        var c = CultureInfo.InvariantCulture;
        string F(double v, string format) => double.IsNaN(v) ? "–" : v.ToString(format, c);
        // Rounded first, so a small negative value prints 0.0 rather than "-0.0" (or worse, "-+0.0").
        string Signed(double v, int decimals) => double.IsNaN(v) ? "–"
            : (Math.Round(v, decimals) + 0.0) is var r && r == 0 ? (0.0).ToString(decimals == 1 ? "0.0" : "0.00", c)
            : r.ToString(decimals == 1 ? "+0.0;-0.0" : "+0.00;-0.00", c);
        o.Append(c, $"{method,-18} {m.Windows,7}  {F(m.SqrtMedianWindowMse, "0.00"),10}  {F(m.MedianWindowMae, "0.00"),6}  {F(m.Rmse30, "0.00"),7}  ");
        o.Append(c, $"{F(m.Rmse60, "0.00"),7}  {F(m.MeanCalibrationError, "0.000"),6}  {F(m.Coverage50, "0.000"),5}  {F(m.Coverage90, "0.000"),5}  {Signed(m.MeanSignedError60, 2),7}");
        for (var b = 0; b < m.WindowsByBand.Length; b++)
            o.Append(c, $"{(b == 0 ? "  " : " | ")}{Signed(m.MeanSignedError60ByBand[b], 1)} ({m.WindowsByBand[b]})");
        o.AppendLine();
    }
}
