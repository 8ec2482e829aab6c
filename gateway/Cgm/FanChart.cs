using System.Globalization;
using System.Text;

namespace StreamHealth.Gateway.Cgm;

/// <summary>One forecast band: the glucose at <see cref="Quantile"/> for each horizon step.</summary>
public sealed record FanBand(double Quantile, IReadOnlyList<float> GlucoseMgDl);

/// <summary>What a fan chart shows: the recent history, the median forecast with its quantile bands (paired
/// outermost first: 5–95 %, then 25–75 %), and the true values after the forecast time where they are known.</summary>
public sealed record FanChartData(
    long[] HistoryTimesUnixMs, float[] HistoryMgDl,
    long ForecastStartUnixMs, int StepMinutes, IReadOnlyList<float> MedianMgDl, IReadOnlyList<FanBand> Bands,
    long[]? ActualTimesUnixMs = null, float[]? ActualMgDl = null, string? Title = null);

/// <summary>Renders a glucose fan chart as a self-contained SVG document (server-side: no script, no external
/// resources). Text is XML-escaped; numbers use the invariant culture; the y axis is mg/dL with the 70–180
/// target range shaded, the x axis wall-clock time of the series.</summary>
public static class FanChart
{
    private const int Width = 800, Height = 360, Left = 56, Right = 16, Top = 28, Bottom = 36;

    public static string Render(FanChartData d)
    {
        var horizon = d.MedianMgDl.Count;
        var stepMs = d.StepMinutes * 60_000L;
        long t0 = d.HistoryTimesUnixMs.Length > 0 ? d.HistoryTimesUnixMs[0] : d.ForecastStartUnixMs;
        var t1 = d.ForecastStartUnixMs + horizon * stepMs;
        if (t1 <= t0) t1 = t0 + stepMs;
        double lo = 40, hi = 300;
        void Extend(float v) { if (float.IsFinite(v)) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); } }
        foreach (var v in d.HistoryMgDl) Extend(v);
        foreach (var b in d.Bands) foreach (var v in b.GlucoseMgDl) Extend(v);
        if (d.ActualMgDl is not null) foreach (var v in d.ActualMgDl) Extend(v);
        lo = Math.Floor(lo / 20) * 20;
        hi = Math.Ceiling(hi / 20) * 20;
        double X(long ms) => Left + (ms - t0) / (double)(t1 - t0) * (Width - Left - Right);
        double Y(double mgDl) => Top + (hi - mgDl) / (hi - lo) * (Height - Top - Bottom);

        var svg = new StringBuilder(16 * 1024);
        svg.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"11\">");
        svg.Append("<title>").Append(Escape(d.Title ?? "Glucose forecast")).Append("</title>");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
        // Target range 70-180 mg/dL.
        svg.Append(CultureInfo.InvariantCulture,
            $"<rect x=\"{Left}\" y=\"{Y(180):F1}\" width=\"{Width - Left - Right}\" height=\"{Y(70) - Y(180):F1}\" fill=\"#e8f4ec\"/>");
        for (var v = lo; v <= hi; v += 40)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{Y(v):F1}\" y2=\"{Y(v):F1}\" stroke=\"#e3e8ee\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 6}\" y=\"{Y(v) + 4:F1}\" text-anchor=\"end\" fill=\"#5a6673\">{v:F0}</text>");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"12\" y=\"{Top - 10}\" fill=\"#5a6673\">mg/dL</text>");
        // Forecast start.
        var xs = X(d.ForecastStartUnixMs);
        svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{xs:F1}\" x2=\"{xs:F1}\" y1=\"{Top}\" y2=\"{Height - Bottom}\" stroke=\"#9aa5b1\" stroke-dasharray=\"4 3\"/>");
        // Bands: pair quantiles from the outside in (q, 1-q) and shade each region, lighter outside.
        var ordered = d.Bands.OrderBy(b => b.Quantile).ToList();
        for (int i = 0, j = ordered.Count - 1, level = 0; i < j; i++, j--, level++)
        {
            var lower = ordered[i].GlucoseMgDl;
            var upper = ordered[j].GlucoseMgDl;
            var path = new StringBuilder();
            for (var k = 0; k < horizon; k++) path.Append(k == 0 ? 'M' : 'L').Append(Point(X(StepTime(d, k)), Y(lower[k])));
            for (var k = horizon - 1; k >= 0; k--) path.Append('L').Append(Point(X(StepTime(d, k)), Y(upper[k])));
            var opacity = 0.18 + 0.17 * level;
            svg.Append(CultureInfo.InvariantCulture,
                $"<path class=\"band\" data-quantiles=\"{ordered[i].Quantile:0.###}-{ordered[j].Quantile:0.###}\" d=\"{path}Z\" fill=\"#d9822b\" fill-opacity=\"{opacity:F2}\" stroke=\"none\"/>");
        }
        // History.
        if (d.HistoryTimesUnixMs.Length > 0)
            svg.Append("<polyline class=\"history\" fill=\"none\" stroke=\"#1d4f91\" stroke-width=\"1.6\" points=\"")
               .Append(Points(d.HistoryTimesUnixMs, d.HistoryMgDl, X, Y)).Append("\"/>");
        // Median forecast, starting from the last history point so the line is continuous.
        var median = new StringBuilder();
        if (d.HistoryTimesUnixMs.Length > 0 && float.IsFinite(d.HistoryMgDl[^1]))
            median.Append(Point(X(d.HistoryTimesUnixMs[^1]), Y(d.HistoryMgDl[^1]))).Append(' ');
        for (var k = 0; k < horizon; k++) median.Append(Point(X(StepTime(d, k)), Y(d.MedianMgDl[k]))).Append(' ');
        svg.Append("<polyline class=\"median\" fill=\"none\" stroke=\"#b35900\" stroke-width=\"2\" points=\"").Append(median.ToString().TrimEnd()).Append("\"/>");
        // True future values where known.
        if (d.ActualTimesUnixMs is { Length: > 0 } at && d.ActualMgDl is { } av)
            for (var k = 0; k < at.Length; k++)
                if (float.IsFinite(av[k]))
                    svg.Append(CultureInfo.InvariantCulture, $"<circle class=\"actual\" cx=\"{X(at[k]):F1}\" cy=\"{Y(av[k]):F1}\" r=\"2.5\" fill=\"#1b7f3b\"/>");
        // Time labels and legend.
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"{Height - 12}\" fill=\"#5a6673\">{Time(t0)}</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{xs:F1}\" y=\"{Height - 12}\" text-anchor=\"middle\" fill=\"#5a6673\">{Time(d.ForecastStartUnixMs)}</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width - Right}\" y=\"{Height - 12}\" text-anchor=\"end\" fill=\"#5a6673\">{Time(t1)}</text>");
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{Left}\" y=\"{Top - 10}\" fill=\"#1d2733\"><tspan fill=\"#1d4f91\">— history</tspan>  <tspan fill=\"#b35900\">— median forecast</tspan>  <tspan fill=\"#d9822b\">▒ {BandLegend(ordered)}</tspan>  <tspan fill=\"#1b7f3b\">● actual</tspan></text>");
        svg.Append("</svg>");
        return svg.ToString();
    }

    private static long StepTime(FanChartData d, int k) => d.ForecastStartUnixMs + (k + 1) * d.StepMinutes * 60_000L;

    private static string Point(double x, double y) => string.Create(CultureInfo.InvariantCulture, $"{x:F1},{y:F1}");

    private static string Points(long[] times, float[] values, Func<long, double> x, Func<double, double> y)
    {
        var sb = new StringBuilder(times.Length * 12);
        for (var i = 0; i < times.Length; i++)
            if (float.IsFinite(values[i])) sb.Append(Point(x(times[i]), y(values[i]))).Append(' ');
        return sb.ToString().TrimEnd();
    }

    private static string BandLegend(List<FanBand> ordered) =>
        ordered.Count >= 2 ? string.Create(CultureInfo.InvariantCulture, $"{ordered[0].Quantile * 100:0}–{ordered[^1].Quantile * 100:0} % band") : "band";

    private static string Time(long unixMs) => DateTime.UnixEpoch.AddMilliseconds(unixMs).ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture);

    private static string Escape(string s) => System.Security.SecurityElement.Escape(s);
}
