namespace StreamHealth.Sensors.Districts;

/// <summary>Why a series is flagged as drifting: against the other meters' demand, against the critical-point head loss,
/// or against its own seasonal baseline (a series with no correlated neighbour).</summary>
internal enum DriftSource : byte { None, MeterNeighbours, HeadLoss, OwnBaseline }

/// <summary>What the analyser keeps of one node's metric. Everything bounded: rings, masks and counters.</summary>
internal sealed class SeriesState
{
    public const int MinuteRing = 32;      // minutes of the balance waiting to be computed (BalanceWaitMinutes ≪ 32)
    public const int RecentMinutes = 5;    // the spike check's reference: median of the previous minutes
    public const int ShareRing = 96;       // a meter's share of district demand per quarter-hour: one day

    public string NodeId = "";
    public NodeKind Kind;
    public string Metric = "";

    /// <summary>Per window size (1, 15, 60 minutes): the newest window start applied. A window at or before it is a replay
    /// (the topology emits a series' windows of one size in order) and changes nothing.</summary>
    public readonly long[] LastStartUnixMs = [long.MinValue, long.MinValue, long.MinValue];

    // Flatline: the value of the current run of unchanged minutes and where the run started.
    public double RunValue = double.NaN;
    public long RunStartUnixMs = long.MinValue;
    public bool Stuck;

    // Spike: the previous minutes' values and the minute-to-minute noise (exponential mean of |Δ|, which is 1.128 σ for
    // white noise).
    public readonly double[] Recent = new double[RecentMinutes];
    public int RecentCount, RecentNext;
    public double MeanAbsStep = double.NaN;
    public double LastMinuteValue = double.NaN;

    // Per minute (bit = minute mod 64) whether it was out of range, stuck, drifting: the 15- and 60-minute windows are
    // judged by their minutes. NewestMaskMinute: the minute of the newest bit.
    public ulong OutOfRangeMask, FlatlineMask, DriftMask;
    public long NewestMaskMinute = long.MinValue;

    // Drift, whatever its source.
    public DriftCusum Cusum;
    public bool Drifting;
    public DriftSource DriftSource;
    public double DriftObserved = double.NaN, DriftExpected = double.NaN;

    // The balance's minutes waiting: value (mean) and whether usable / valued (present, in range, not stuck: good enough
    // for the neighbour checks even while flagged as drifting).
    public readonly double[] SlotValue = new double[MinuteRing];
    public readonly byte[] SlotStatus = new byte[MinuteRing];
    public long LastSeenMinute = long.MinValue;
    public double LastUsableValue = double.NaN;

    // A meter's learned share of district demand.
    public readonly float[] Shares = new float[ShareRing];
    public int ShareCount, ShareNext;
    public double ShareMedian = double.NaN, ShareSigma = double.NaN;
    public double QuarterSum;

    public SeasonalBaseline Baseline = new();

    // Residual anomaly of this series.
    public int ResidualRun, CalmRun;
    public bool ResidualOpen;
    public long ResidualStartUnixMs;
    public double ResidualPeakSigmas;

    public const byte Absent = 0, Usable = 1, Valued = 2, Unusable = 3, Spiked = 4;

    public bool IsFlow => Metric == "flow";
    public bool InBalance => IsFlow && Kind is NodeKind.Inflow or NodeKind.Meter;
    public bool IsHeadLossPressure => Metric == "pressure" && Kind is NodeKind.Inflow or NodeKind.PressureLogger;

    /// <summary>Whether the balance waits for this series' minutes (the series the district computations use).</summary>
    public bool Required => InBalance || IsHeadLossPressure;

    public static int SizeIndex(int windowMinutes) => windowMinutes switch { 1 => 0, 15 => 1, 60 => 2, _ => -1 };

    /// <summary>Moves the minute masks forward to <paramref name="minute"/> (bits of skipped minutes cleared) and sets its bits.</summary>
    public void MarkMinute(long minute, bool outOfRange, bool flatline, bool drift)
    {
        if (NewestMaskMinute == long.MinValue || minute - NewestMaskMinute >= 64) OutOfRangeMask = FlatlineMask = DriftMask = 0;
        else if (minute > NewestMaskMinute)
            for (var m = NewestMaskMinute + 1; m < minute; m++)
            {
                var clear = ~(1UL << (int)(m & 63));
                OutOfRangeMask &= clear;
                FlatlineMask &= clear;
                DriftMask &= clear;
            }
        else if (NewestMaskMinute - minute >= 64) return;
        NewestMaskMinute = Math.Max(NewestMaskMinute, minute);
        var bit = 1UL << (int)(minute & 63);
        OutOfRangeMask = outOfRange ? OutOfRangeMask | bit : OutOfRangeMask & ~bit;
        FlatlineMask = flatline ? FlatlineMask | bit : FlatlineMask & ~bit;
        DriftMask = drift ? DriftMask | bit : DriftMask & ~bit;
    }

    /// <summary>How many of the minutes [first, first + count) have their bit set in <paramref name="mask"/> (minutes the
    /// masks no longer hold count as clear).</summary>
    public int CountMinutes(ulong mask, long firstMinute, int count)
    {
        var n = 0;
        for (var m = firstMinute; m < firstMinute + count; m++)
            if (NewestMaskMinute != long.MinValue && m <= NewestMaskMinute && NewestMaskMinute - m < 64 && (mask & (1UL << (int)(m & 63))) != 0) n++;
        return n;
    }

    /// <summary>The median of the meter's learned shares and their robust SD (as of the last quarter-hour), or false before
    /// 16 quarter-hours.</summary>
    public bool TryShare(out double share, out double sigma)
    {
        (share, sigma) = (ShareMedian, ShareSigma);
        return ShareCount >= 16 && share > 0;
    }

    public void AddShare(double share)
    {
        Shares[ShareNext] = (float)share;
        ShareNext = (ShareNext + 1) % ShareRing;
        if (ShareCount < ShareRing) ShareCount++;
        Span<double> scratch = stackalloc double[ShareRing];
        for (var i = 0; i < ShareCount; i++) scratch[i] = Shares[i];
        (ShareMedian, var mad) = Robust.MedianMad(scratch[..ShareCount]);
        ShareSigma = Robust.MadToSigma * mad;
    }

    internal void Write(StateWriter w)
    {
        w.String(NodeId);
        w.Byte((byte)Kind);
        w.String(Metric);
        foreach (var s in LastStartUnixMs) w.Long(s);
        w.Double(RunValue);
        w.Long(RunStartUnixMs);
        w.Bool(Stuck);
        foreach (var v in Recent) w.Double(v);
        w.Int(RecentCount);
        w.Int(RecentNext);
        w.Double(MeanAbsStep);
        w.Double(LastMinuteValue);
        w.ULong(OutOfRangeMask);
        w.ULong(FlatlineMask);
        w.ULong(DriftMask);
        w.Long(NewestMaskMinute);
        Cusum.Write(w);
        w.Bool(Drifting);
        w.Byte((byte)DriftSource);
        w.Double(DriftObserved);
        w.Double(DriftExpected);
        foreach (var v in SlotValue) w.Double(v);
        foreach (var s in SlotStatus) w.Byte(s);
        w.Long(LastSeenMinute);
        w.Double(LastUsableValue);
        w.Floats(Shares);
        w.Int(ShareCount);
        w.Int(ShareNext);
        w.Double(ShareMedian);
        w.Double(ShareSigma);
        w.Double(QuarterSum);
        Baseline.Write(w);
        w.Int(ResidualRun);
        w.Int(CalmRun);
        w.Bool(ResidualOpen);
        w.Long(ResidualStartUnixMs);
        w.Double(ResidualPeakSigmas);
    }

    internal static SeriesState Read(ref StateReader r)
    {
        var s = new SeriesState { NodeId = r.String(), Kind = (NodeKind)r.Byte(), Metric = r.String() };
        for (var i = 0; i < 3; i++) s.LastStartUnixMs[i] = r.Long();
        s.RunValue = r.Double();
        s.RunStartUnixMs = r.Long();
        s.Stuck = r.Bool();
        for (var i = 0; i < RecentMinutes; i++) s.Recent[i] = r.Double();
        s.RecentCount = Math.Clamp(r.Int(), 0, RecentMinutes);
        s.RecentNext = Math.Clamp(r.Int(), 0, RecentMinutes - 1);
        s.MeanAbsStep = r.Double();
        s.LastMinuteValue = r.Double();
        s.OutOfRangeMask = r.ULong();
        s.FlatlineMask = r.ULong();
        s.DriftMask = r.ULong();
        s.NewestMaskMinute = r.Long();
        s.Cusum = DriftCusum.Read(ref r);
        s.Drifting = r.Bool();
        s.DriftSource = (DriftSource)r.Byte();
        s.DriftObserved = r.Double();
        s.DriftExpected = r.Double();
        for (var i = 0; i < MinuteRing; i++) s.SlotValue[i] = r.Double();
        for (var i = 0; i < MinuteRing; i++) s.SlotStatus[i] = r.Byte();
        s.LastSeenMinute = r.Long();
        s.LastUsableValue = r.Double();
        var shares = r.Floats();
        if (shares.Length != ShareRing) throw new FormatException($"series {s.NodeId}: {shares.Length} shares, expected {ShareRing}");
        shares.CopyTo(s.Shares, 0);
        s.ShareCount = Math.Clamp(r.Int(), 0, ShareRing);
        s.ShareNext = Math.Clamp(r.Int(), 0, ShareRing - 1);
        s.ShareMedian = r.Double();
        s.ShareSigma = r.Double();
        s.QuarterSum = r.Double();
        s.Baseline = SeasonalBaseline.Read(ref r);
        s.ResidualRun = r.Int();
        s.CalmRun = r.Int();
        s.ResidualOpen = r.Bool();
        s.ResidualStartUnixMs = r.Long();
        s.ResidualPeakSigmas = r.Double();
        return s;
    }
}
