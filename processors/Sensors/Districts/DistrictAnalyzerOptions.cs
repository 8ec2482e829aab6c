namespace StreamHealth.Sensors.Districts;

/// <summary>Settings of <see cref="DistrictAnalyzer"/>. Thresholds are mostly relative to what the analyser learns of the
/// district (robust spreads); the absolute floors only matter for a very quiet district.</summary>
public sealed record DistrictAnalyzerOptions
{
    /// <summary>Readings a node sends per minute (the simulator's step of 60 s: 1). Completeness is counted against it.</summary>
    public double ExpectedReadingsPerMinute { get; init; } = 1;
    /// <summary>Per node id, a cadence other than <see cref="ExpectedReadingsPerMinute"/> (readings per minute).</summary>
    public IReadOnlyDictionary<string, double> ReadingsPerMinuteByNode { get; init; } = new Dictionary<string, double>();
    /// <summary>Local time minus UTC, minutes: the night window and the time-of-day slots of the baselines are local.</summary>
    public int LocalOffsetMinutes { get; init; }

    /// <summary>How long after a minute's end (in the district's newest window time) the balance waits for the minute's
    /// windows of every node before it computes the minute without the missing ones (estimated or skipped): minutes.</summary>
    public int BalanceWaitMinutes { get; init; } = 2;

    /// <summary>A window with fewer than this fraction of its expected readings is incomplete.</summary>
    public double MinCompleteness { get; init; } = 0.8;
    /// <summary>A series unchanged for this long (while it normally moves) is stuck: minutes. Zero flow is exempt: a meter
    /// whose customers use nothing reads exactly zero for hours.</summary>
    public int FlatlineMinutes { get; init; } = 10;
    /// <summary>A minute this many robust SDs (of the minute-to-minute noise) from the median of the series' previous minutes
    /// is a spike (out of range). A burst is such a jump too, for its first minutes, until the median follows it.</summary>
    public double SpikeSigmas { get; init; } = 12;

    /// <summary>CUSUM of the drift checks (per 15 minutes, in robust SDs): allowance and decision level. The flag clears when
    /// <see cref="DriftClearQuarters"/> quarters in a row are back within 2 SDs.</summary>
    public double DriftAllowance { get; init; } = 0.5;
    public double DriftDecision { get; init; } = 8;
    public int DriftClearQuarters { get; init; } = 4;

    /// <summary>Burst: the district's net flow (inflow − Σ meters) above its reference (median of the hour ending 15 minutes
    /// earlier) by more than max(<see cref="BurstMinLitresPerSecond"/>, <see cref="BurstSigmas"/> × its robust minute
    /// noise) for <see cref="BurstMinutes"/> usable minutes in a row.</summary>
    public double BurstMinLitresPerSecond { get; init; } = 0.5;
    public double BurstSigmas { get; init; } = 6;
    public int BurstMinutes { get; init; } = 5;
    /// <summary>A burst resolves after this many usable minutes in a row below half its threshold.</summary>
    public int BurstResolveMinutes { get; init; } = 10;

    /// <summary>Night window for the minimum night flow, local minutes of the day [start, end).</summary>
    public int NightStartMinute { get; init; } = 60;
    public int NightEndMinute { get; init; } = 300;
    /// <summary>Background leak: two consecutive valid nights whose minimum net flow exceeds the median of the previous
    /// normal nights by more than max(<see cref="NightMinRiseLitresPerSecond"/>, <see cref="NightSigmas"/> × their robust SD).
    /// Two nights, because a fault of a day or less (a drift, a stuck meter) can raise at most one night's minimum.</summary>
    public double NightMinRiseLitresPerSecond { get; init; } = 0.05;
    public double NightSigmas { get; init; } = 4;
    public int NightBaselineNights { get; init; } = 7;
    public int NightMinBaselineNights { get; init; } = 3;
    /// <summary>After one or more nights without a balance (fewer than half their quarters balanced: the inflow stuck,
    /// drifting or silent), the first usable night opens a leak on its own when its excess is at least this many times the
    /// threshold (one night carrying the evidence of two) and at least <see cref="NightAfterGapMinCoverage"/> of its quarters
    /// were balanced. Without it a lost night costs a day: a leak starting just after a night, with the next night lost,
    /// was confirmed on the third night (3.03 days on the simulator, seed 1). It keeps the two-night rule's guarantee: a
    /// fault of a day or less that took more than half of the lost night began before that night's middle, so it is over
    /// before this night's middle and cannot raise this night's minimum (the lowest of its quarters); and an inflow fault
    /// flagged in this night leaves quarters unbalanced, which the coverage refuses (its unflagged onset is what could raise
    /// a quarter). On seeds 1-10 the one night raised outside a leak (an inflow drift flagged late, after a normal night)
    /// reached 1.15 times the threshold.</summary>
    public double NightAfterGapFactor { get; init; } = 2;
    public double NightAfterGapMinCoverage { get; init; } = 0.9;

    /// <summary>Residual anomaly: a usable 15-minute mean this many robust SDs from its time-of-week median, twice in a row.</summary>
    public double ResidualSigmas { get; init; } = 6;

    /// <summary>Series one district may hold (nodes × metrics); more is a registry error, refused by name.</summary>
    public int MaxSeries { get; init; } = 64;

    public double ReadingsPerMinute(string nodeId) =>
        ReadingsPerMinuteByNode.TryGetValue(nodeId, out var perMinute) ? perMinute : ExpectedReadingsPerMinute;

    public void Validate()
    {
        if (!(ExpectedReadingsPerMinute > 0 && ExpectedReadingsPerMinute <= 600))
            throw new ArgumentOutOfRangeException(nameof(ExpectedReadingsPerMinute), ExpectedReadingsPerMinute, "(0, 600] readings per minute");
        foreach (var (node, perMinute) in ReadingsPerMinuteByNode)
            if (!(perMinute > 0 && perMinute <= 600)) throw new ArgumentOutOfRangeException(nameof(ReadingsPerMinuteByNode), perMinute, $"node {node}: (0, 600] readings per minute");
        if (LocalOffsetMinutes is < -14 * 60 or > 14 * 60) throw new ArgumentOutOfRangeException(nameof(LocalOffsetMinutes), LocalOffsetMinutes, "-840..840 minutes");
        if (BalanceWaitMinutes is < 0 or > 20) throw new ArgumentOutOfRangeException(nameof(BalanceWaitMinutes), BalanceWaitMinutes, "0-20 minutes");
        if (!(MinCompleteness is > 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(MinCompleteness), MinCompleteness, "(0, 1]");
        if (FlatlineMinutes is < 2 or > 1440) throw new ArgumentOutOfRangeException(nameof(FlatlineMinutes), FlatlineMinutes, "2-1440 minutes");
        if (BurstMinutes is < 1 or > 30) throw new ArgumentOutOfRangeException(nameof(BurstMinutes), BurstMinutes, "1-30 minutes");
        if (BurstResolveMinutes is < 1 or > 240) throw new ArgumentOutOfRangeException(nameof(BurstResolveMinutes), BurstResolveMinutes, "1-240 minutes");
        if (NightStartMinute < 0 || NightEndMinute > 1440 || NightEndMinute - NightStartMinute < 60)
            throw new ArgumentOutOfRangeException(nameof(NightEndMinute), $"{NightStartMinute}-{NightEndMinute}: the night window must be at least 60 minutes within one day");
        if (NightBaselineNights is < 3 or > 28) throw new ArgumentOutOfRangeException(nameof(NightBaselineNights), NightBaselineNights, "3-28 nights");
        if (NightMinBaselineNights < 2 || NightMinBaselineNights > NightBaselineNights)
            throw new ArgumentOutOfRangeException(nameof(NightMinBaselineNights), NightMinBaselineNights, $"2-{NightBaselineNights} nights");
        if (!(NightAfterGapFactor is >= 1 and <= 1000))
            throw new ArgumentOutOfRangeException(nameof(NightAfterGapFactor), NightAfterGapFactor, "1-1000: one night alone needs at least the two-night threshold");
        if (!(NightAfterGapMinCoverage is > 0.5 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(NightAfterGapMinCoverage), NightAfterGapMinCoverage, "(0.5, 1]: more of the night than a night needs to count at all");
        if (MaxSeries is < 2 or > 1024) throw new ArgumentOutOfRangeException(nameof(MaxSeries), MaxSeries, "2-1024");
        foreach (var (name, v) in new[] { (nameof(SpikeSigmas), SpikeSigmas), (nameof(BurstSigmas), BurstSigmas), (nameof(NightSigmas), NightSigmas),
                     (nameof(ResidualSigmas), ResidualSigmas), (nameof(DriftDecision), DriftDecision) })
            if (!(v is > 0 and <= 1000)) throw new ArgumentOutOfRangeException(name, v, "(0, 1000]");
        if (!(BurstMinLitresPerSecond >= 0 && NightMinRiseLitresPerSecond >= 0 && DriftAllowance >= 0))
            throw new ArgumentOutOfRangeException(nameof(BurstMinLitresPerSecond), "floors and allowances must not be negative");
        if (DriftClearQuarters is < 1 or > 96) throw new ArgumentOutOfRangeException(nameof(DriftClearQuarters), DriftClearQuarters, "1-96");
    }
}
