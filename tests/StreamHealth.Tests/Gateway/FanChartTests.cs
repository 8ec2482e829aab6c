using System.Xml.Linq;
using StreamHealth.Gateway.Cgm;

namespace StreamHealth.Tests.Gateway;

public sealed class FanChartTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static FanChartData Data(string? title = null)
    {
        const long step = 5 * 60_000;
        var t0 = DateTimeOffset.Parse("2026-05-01T08:00:00Z").ToUnixTimeMilliseconds();
        var history = Enumerable.Range(0, 96).Select(i => t0 + i * step).ToArray();
        var values = Enumerable.Range(0, 96).Select(i => 120f + 30f * MathF.Sin(i / 10f)).ToArray();
        var start = history[^1];
        var median = Enumerable.Range(0, 12).Select(k => 130f + k).ToArray();
        FanBand Band(double q, float offset) => new(q, median.Select((m, k) => m + offset * (k + 1)).ToArray());
        return new FanChartData(history, values, start, 5, median,
            [Band(0.05, -4), Band(0.25, -1.5f), Band(0.75, 1.5f), Band(0.95, 4)],
            Enumerable.Range(1, 6).Select(k => start + k * step).ToArray(), [131, 133, 132, 135, 137, float.NaN], title);
    }

    [Fact]
    public void The_fan_chart_is_well_formed_svg_with_history_median_nested_bands_and_actual_values()
    {
        var doc = XDocument.Parse(FanChart.Render(Data()));
        Assert.Equal(Svg + "svg", doc.Root!.Name);
        var bands = doc.Descendants(Svg + "path").Where(p => (string?)p.Attribute("class") == "band").ToList();
        Assert.Equal(["0.05-0.95", "0.25-0.75"], bands.Select(b => (string)b.Attribute("data-quantiles")!));
        // The inner band is drawn after (on top of) the outer one and more opaque.
        Assert.True(double.Parse((string)bands[1].Attribute("fill-opacity")!, System.Globalization.CultureInfo.InvariantCulture)
                    > double.Parse((string)bands[0].Attribute("fill-opacity")!, System.Globalization.CultureInfo.InvariantCulture));
        var history = doc.Descendants(Svg + "polyline").Single(p => (string?)p.Attribute("class") == "history");
        Assert.Equal(96, ((string)history.Attribute("points")!).Split(' ').Length);
        var median = doc.Descendants(Svg + "polyline").Single(p => (string?)p.Attribute("class") == "median");
        Assert.Equal(13, ((string)median.Attribute("points")!).Split(' ').Length);   // joined to the last history point
        Assert.Equal(5, doc.Descendants(Svg + "circle").Count(c => (string?)c.Attribute("class") == "actual"));   // NaN left out
        // Forecast x coordinates continue to the right of the history.
        var lastHistoryX = double.Parse(((string)history.Attribute("points")!).Split(' ')[^1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture);
        var firstForecastX = double.Parse(((string)median.Attribute("points")!).Split(' ')[1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(firstForecastX > lastHistoryX);
    }

    [Fact]
    public void Titles_are_escaped()
    {
        var doc = XDocument.Parse(FanChart.Render(Data("<script>alert(1)</script> & co")));
        Assert.Equal("<script>alert(1)</script> & co", doc.Root!.Element(Svg + "title")!.Value);
        Assert.Empty(doc.Descendants(Svg + "script"));
    }
}
