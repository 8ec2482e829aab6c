namespace StreamHealth.Runtime.Resilience;

/// <summary>Waits between tries of one round: each drawn uniformly from [0, ceiling], the ceiling starting at the initial wait and
/// doubling per try up to the maximum ("full jitter": clients that failed together do not retry together). One per round; the
/// call-log fetch worker and the OpenAI-compatible extractor share it.</summary>
public struct FullJitterBackoff(double initialMs, double maxMs)
{
    private double _ceilingMs = initialMs;

    /// <summary>The next wait, ms; the ceiling doubles for the one after.</summary>
    public double NextWaitMs()
    {
        var waitMs = Random.Shared.NextDouble() * _ceilingMs;
        _ceilingMs = Math.Min(_ceilingMs * 2, maxMs);
        return waitMs;
    }
}
