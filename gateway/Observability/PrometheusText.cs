using System.Globalization;
using System.Text;

namespace StreamHealth.Gateway.Observability;

/// <summary>One sample of a scrape: a series' name, its labels and its value.</summary>
public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string? Label(string name) => Labels.TryGetValue(name, out var value) ? value : null;

    public override string ToString() => $"{Name}{{{string.Join(",", Labels.Select(l => $"{l.Key}=\"{l.Value}\""))}}} {Value}";
}

/// <summary>Reads the Prometheus text exposition format (0.0.4; OpenMetrics text reads the same up to its <c># EOF</c>) into samples.
/// No maintained .NET parser of the format is served here (prometheus-net and the OpenTelemetry exporter only write it), so this
/// is the smallest honest reader of what the gateway scrapes: sample lines <c>name{label="value",...} value [timestamp]</c> with
/// the format's escapes (\\, \", \n) in label values and NaN/±Inf values; comments (# HELP, # TYPE) are skipped, and a line that
/// does not parse is skipped and counted, never thrown on (a host's endpoint is input like any other).</summary>
public static class PrometheusText
{
    public static List<PrometheusSample> Parse(string text, out int malformedLines)
    {
        malformedLines = 0;
        var samples = new List<PrometheusSample>();
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            if (line.IsEmpty || line[0] == '#') continue;
            if (TryParseLine(line, out var sample)) samples.Add(sample);
            else malformedLines++;
        }
        return samples;
    }

    private static bool TryParseLine(ReadOnlySpan<char> line, out PrometheusSample sample)
    {
        sample = null!;
        var i = 0;
        while (i < line.Length && IsNameChar(line[i], i == 0)) i++;
        if (i == 0) return false;
        var name = line[..i].ToString();
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                while (i < line.Length && line[i] is ' ' or ',') i++;
                if (i >= line.Length) return false;
                if (line[i] == '}')
                {
                    i++;
                    break;
                }
                var start = i;
                while (i < line.Length && IsNameChar(line[i], i == start)) i++;
                if (i == start || i + 1 >= line.Length || line[i] != '=' || line[i + 1] != '"') return false;
                var label = line[start..i].ToString();
                i += 2;
                var value = new StringBuilder();
                while (true)
                {
                    if (i >= line.Length) return false;
                    var c = line[i++];
                    if (c == '"') break;
                    if (c != '\\') value.Append(c);
                    else if (i < line.Length) value.Append(line[i++] switch { 'n' => '\n', var e => e });
                    else return false;
                }
                labels[label] = value.ToString();
            }
        }
        var rest = line[i..].TrimStart();
        var end = rest.IndexOf(' ');
        var number = end < 0 ? rest : rest[..end];
        if (!TryParseValue(number, out var parsed)) return false;
        sample = new PrometheusSample(name, labels, parsed);
        return true;
    }

    private static bool TryParseValue(ReadOnlySpan<char> text, out double value)
    {
        switch (text)
        {
            case "NaN":
                value = double.NaN;
                return true;
            case "+Inf" or "Inf":
                value = double.PositiveInfinity;
                return true;
            case "-Inf":
                value = double.NegativeInfinity;
                return true;
            default:
                return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        }
    }

    private static bool IsNameChar(char c, bool first) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' or ':' || (!first && c is >= '0' and <= '9');
}
