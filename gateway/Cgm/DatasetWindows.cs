using StreamHealth.Cgm.Pipeline;

namespace StreamHealth.Gateway.Cgm;

/// <summary>The forecastable windows of a stored series: every run of <c>inputSteps</c> consecutive points of one
/// sequence (one point per step, imputed ones included). Index 0 is the most recent window, −1 the one a step
/// earlier, and so on (GluRPC's convention); a window's true future is the up to <c>horizon</c> points that follow
/// it in its sequence.</summary>
public sealed class DatasetWindows
{
    private readonly CgmDataset _dataset;
    private readonly int _inputSteps;
    private readonly List<int> _ends = [];

    public DatasetWindows(CgmDataset dataset, int inputSteps)
    {
        _dataset = dataset;
        _inputSteps = inputSteps;
        var run = 0;
        for (var i = 0; i < dataset.Points; i++)
        {
            run = i > 0 && dataset.SequenceIds[i] == dataset.SequenceIds[i - 1] ? run + 1 : 1;
            if (run >= inputSteps) _ends.Add(i);
        }
    }

    public int Count => _ends.Count;

    /// <summary>Smallest valid index (−(Count − 1)); 0 is the latest.</summary>
    public int MinIndex => 1 - _ends.Count;

    public bool IsValid(int index) => index <= 0 && index >= MinIndex && _ends.Count > 0;

    /// <summary>Position of the last input point of window <paramref name="index"/>.</summary>
    public int End(int index) => _ends[_ends.Count - 1 + index];

    public float[] Input(int index) => _dataset.GlucoseMgDl.AsSpan(End(index) - _inputSteps + 1, _inputSteps).ToArray();

    public FanChartData Chart(int index, WindowForecast forecast, int stepMinutes, int historySteps, string title)
    {
        var end = End(index);
        var start = Math.Max(end - historySteps + 1, end - _inputSteps + 1);
        var futureEnd = end;
        while (futureEnd + 1 < _dataset.Points && futureEnd - end < forecast.MedianMgDl.Length
               && _dataset.SequenceIds[futureEnd + 1] == _dataset.SequenceIds[end]) futureEnd++;
        return new FanChartData(
            _dataset.TimesUnixMs[start..(end + 1)], _dataset.GlucoseMgDl[start..(end + 1)],
            _dataset.TimesUnixMs[end], stepMinutes, forecast.MedianMgDl, forecast.Bands,
            _dataset.TimesUnixMs[(end + 1)..(futureEnd + 1)], _dataset.GlucoseMgDl[(end + 1)..(futureEnd + 1)], title);
    }
}
