using System.Globalization;
using System.Text.Json;

namespace StreamHealth.Sensors.Anomalies.Nab;

/// <summary>One series of a Numenta Anomaly Benchmark layout: its readings in file order and its labelled anomaly
/// windows as (first, last) row indices, inclusive.</summary>
public sealed record NabSeries(string Name, string[] Timestamps, double[] Values, (int First, int Last)[] Windows);

/// <summary>A Numenta Anomaly Benchmark layout read from disk: <c>DIR/data/&lt;category&gt;/&lt;series&gt;.csv</c>
/// (timestamp,value) and <c>DIR/labels/combined_windows.json</c> ({"category/series.csv": [[start, end], …]}).</summary>
public static class NabCorpus
{
    /// <summary>Every series that has an entry in the windows file, in name order. A malformed file is an error
    /// naming the file and line: a benchmark that silently skips a series reports a score for another corpus.</summary>
    public static IReadOnlyList<NabSeries> Load(string directory)
    {
        var windowsPath = Path.Combine(directory, "labels", "combined_windows.json");
        var dataDir = Path.Combine(directory, "data");
        if (!File.Exists(windowsPath)) throw new InvalidDataException($"{windowsPath}: not found (expected a NAB layout: data/ and labels/combined_windows.json)");
        if (!Directory.Exists(dataDir)) throw new InvalidDataException($"{dataDir}: not found (expected a NAB layout: data/ and labels/)");
        Dictionary<string, string[][]>? labels;
        try { labels = JsonSerializer.Deserialize<Dictionary<string, string[][]>>(File.ReadAllText(windowsPath)); }
        catch (JsonException e) { throw new InvalidDataException($"{windowsPath}: not a map of series to [[start, end], …]: {e.Message}"); }
        if (labels is null || labels.Count == 0) throw new InvalidDataException($"{windowsPath}: no series");
        var series = new List<NabSeries>();
        foreach (var (name, windows) in labels.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (name.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(name))
                throw new InvalidDataException($"{windowsPath}: series name '{name}' leaves the data directory");
            var path = Path.Combine(dataDir, name);
            if (!File.Exists(path)) throw new InvalidDataException($"{path}: labelled in {windowsPath} but not found");
            series.Add(ReadSeries(name, path, windows ?? [], windowsPath));
        }
        return series;
    }

    internal static NabSeries ReadSeries(string name, string path, string[][] windows, string windowsPath)
    {
        var timestamps = new List<string>();
        var values = new List<double>();
        using (var reader = new StreamReader(path))
        {
            var header = reader.ReadLine();
            if (header is null || !header.StartsWith("timestamp,value", StringComparison.Ordinal))
                throw new InvalidDataException($"{path}:1: expected the header 'timestamp,value'");
            var lineNo = 1;
            while (reader.ReadLine() is { } line)
            {
                lineNo++;
                if (line.Length == 0) continue;
                var comma = line.IndexOf(',');
                if (comma <= 0 || !double.TryParse(line.AsSpan(comma + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v))
                    throw new InvalidDataException($"{path}:{lineNo}: expected 'timestamp,value' with a finite number");
                timestamps.Add(line[..comma]);
                values.Add(v);
            }
        }
        if (values.Count == 0) throw new InvalidDataException($"{path}: no readings");
        var index = new Dictionary<string, int>(timestamps.Count, StringComparer.Ordinal);
        // A repeated timestamp (NAB's data has daylight-saving repeats) resolves to its first row, as NAB's
        // timestamps.index() does.
        for (var i = 0; i < timestamps.Count; i++) index.TryAdd(timestamps[i], i);
        var spans = new (int, int)[windows.Length];
        for (var w = 0; w < windows.Length; w++)
        {
            if (windows[w] is not { Length: 2 } pair) throw new InvalidDataException($"{windowsPath}: {name} window {w + 1} is not [start, end]");
            var first = RowOf(pair[0]);
            var last = RowOf(pair[1]);
            if (last < first || (w > 0 && first <= spans[w - 1].Item2))
                throw new InvalidDataException($"{windowsPath}: {name} window {w + 1} ({pair[0]} … {pair[1]}) is empty or overlaps the one before");
            spans[w] = (first, last);
        }
        return new NabSeries(name, [.. timestamps], [.. values], spans);

        // NAB writes window edges as "2014-02-19 10:50:00.000000"; the data has "2014-02-19 10:50:00".
        int RowOf(string edge)
        {
            var key = edge.Length > 19 && edge[19] == '.' ? edge[..19] : edge;
            return index.TryGetValue(key, out var row) ? row
                : throw new InvalidDataException($"{windowsPath}: {name} window edge {edge} is not a timestamp of {path}");
        }
    }
}
