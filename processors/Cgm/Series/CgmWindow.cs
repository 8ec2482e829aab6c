using System.Buffers.Binary;

namespace StreamHealth.Cgm.Series;

/// <summary>What <see cref="CgmWindow.Add"/> did with a reading.</summary>
public enum CgmWindowChange : byte
{
    /// <summary>Stored in an empty step (the window moved forward if it was the newest).</summary>
    Added,
    /// <summary>Stored like <see cref="Added"/>, flagged <see cref="CgmQuality.OutOfRange"/> (sensor Low/High).</summary>
    OutOfRange,
    /// <summary>The step held a reading further from its grid time; this one replaced it (flagged
    /// <see cref="CgmQuality.DuplicateTime"/>, and <see cref="CgmQuality.OutOfRange"/> when it is).</summary>
    Replaced,
    /// <summary>The step held a reading at least as near its grid time: kept, now flagged
    /// <see cref="CgmQuality.DuplicateTime"/>; this one is discarded.</summary>
    Duplicate,
    /// <summary>Before the window's first step: discarded.</summary>
    TooOld,
    /// <summary>NaN or physiologically impossible: discarded.</summary>
    Dropped,
}

/// <summary>Dexcom's trend arrows and their numbering.</summary>
public enum CgmTrendArrow : byte
{
    /// <summary>No readings.</summary>
    None = 0,
    /// <summary>Rising more than 3 mg/dL/min.</summary>
    DoubleUp = 1,
    /// <summary>Rising 2-3 mg/dL/min.</summary>
    SingleUp = 2,
    /// <summary>Rising 1-2 mg/dL/min.</summary>
    FortyFiveUp = 3,
    /// <summary>Changing at most 1 mg/dL/min either way.</summary>
    Flat = 4,
    /// <summary>Falling 1-2 mg/dL/min.</summary>
    FortyFiveDown = 5,
    /// <summary>Falling 2-3 mg/dL/min.</summary>
    SingleDown = 6,
    /// <summary>Falling more than 3 mg/dL/min.</summary>
    DoubleDown = 7,
    /// <summary>Too few in-range readings in the trend span, or the latest reading is out of the sensor range.</summary>
    NotComputable = 8,
}

public static class CgmTrendArrows
{
    /// <summary>The arrow for a rate: a boundary belongs to the slower arrow (exactly 1 mg/dL/min is Flat).</summary>
    public static CgmTrendArrow FromRate(double mgDlPerMinute) => mgDlPerMinute switch
    {
        double.NaN => CgmTrendArrow.NotComputable,
        > 3 => CgmTrendArrow.DoubleUp,
        > 2 => CgmTrendArrow.SingleUp,
        > 1 => CgmTrendArrow.FortyFiveUp,
        >= -1 => CgmTrendArrow.Flat,
        >= -2 => CgmTrendArrow.FortyFiveDown,
        >= -3 => CgmTrendArrow.SingleDown,
        _ => CgmTrendArrow.DoubleDown,
    };
}

/// <summary>One person's latest glucose steps for the stream topology: a ring of
/// <see cref="CgmSeriesOptions.WindowSteps"/> grid steps ending at the newest reading's step, kept in a state store
/// (<see cref="Write"/>/<see cref="Read"/>). Not thread-safe; one per user per task.</summary>
/// <remarks>
/// Same rules as <see cref="CgmResampler"/> for one reading: impossible values are dropped, out-of-range ones kept
/// and flagged, a reading goes to its nearest grid step, and of two readings in one step the one nearer the grid time
/// is kept (then the earlier, then the lower value). Times must be on one continuous clock (UTC, as streamed): the
/// window does not undo clock shifts. A reading older than the first step is discarded; a late one inside the
/// window fills its step; a newer one moves the window forward, discarding the steps that fall off the front.
/// Nothing is interpolated in storage: <see cref="TryCopyLatest"/> fills short gaps when asked.
/// </remarks>
public sealed class CgmWindow
{
    /// <summary>Version byte of <see cref="Write"/>'s format.</summary>
    public const byte FormatVersion = 1;

    private const int HeaderBytes = 18;
    private const int StepBytes = 9;
    private const byte EmptyStep = 0xFF;
    private const CgmQuality KnownFlags = (CgmQuality)0x1F;

    private readonly float[] _glucoseMgDl;
    private readonly int[] _offsetMs;
    private readonly CgmQuality[] _quality;
    private readonly long _stepMs;
    private readonly int _stepMinutes;
    private readonly int _maxGapSteps;
    private readonly int _trendSteps;
    private readonly GlucoseLimits _limits;
    private long _latestStep;
    private int _count;

    /// <exception cref="ArgumentException">When <paramref name="options"/> are invalid, naming each setting.</exception>
    public CgmWindow(CgmSeriesOptions? options = null)
    {
        options ??= new CgmSeriesOptions();
        options.ThrowIfInvalid(nameof(options));
        _glucoseMgDl = new float[options.WindowSteps];
        _offsetMs = new int[options.WindowSteps];
        _quality = new CgmQuality[options.WindowSteps];
        _glucoseMgDl.AsSpan().Fill(float.NaN);
        _stepMinutes = options.StepMinutes;
        _stepMs = options.StepMs;
        _maxGapSteps = options.MaxInterpolationGapMinutes / options.StepMinutes;
        _trendSteps = options.TrendMinutes / options.StepMinutes;
        _limits = new GlucoseLimits(options);
    }

    public int Capacity => _glucoseMgDl.Length;

    public int StepMinutes => _stepMinutes;

    /// <summary>Steps holding a reading.</summary>
    public int Count => _count;

    public bool IsEmpty => _count == 0;

    /// <summary>Incremented by every change to what is stored (value or flags); a topology compares it with the value
    /// it saw at the last forecast request. Persisted by <see cref="Write"/>.</summary>
    public uint Version { get; private set; }

    /// <summary>Grid time of the newest step (it always holds a reading); 0 when empty.</summary>
    public long LatestTimeMs => _count == 0 ? 0 : _latestStep * _stepMs;

    /// <summary>Grid time of the oldest step the window can hold; 0 when empty.</summary>
    public long FirstStepTimeMs => _count == 0 ? 0 : (_latestStep - Capacity + 1) * _stepMs;

    /// <summary>The newest step's reading; NaN when empty.</summary>
    public float LatestGlucoseMgDl => _count == 0 ? float.NaN : _glucoseMgDl[Slot(_latestStep)];

    /// <summary>The newest step's flags; <see cref="CgmQuality.Good"/> when empty.</summary>
    public CgmQuality LatestQuality => _count == 0 ? CgmQuality.Good : _quality[Slot(_latestStep)];

    /// <summary>Least-squares slope (mg/dL per minute, at the readings' own times) of the in-range readings in the
    /// steps of the last <see cref="CgmSeriesOptions.TrendMinutes"/> (15 minutes: the newest step and the 3 before);
    /// NaN unless the newest is in range and there are at least 3.</summary>
    public double TrendMgDlPerMinute => ComputeTrend();

    /// <summary>Dexcom's arrow for <see cref="TrendMgDlPerMinute"/>; <see cref="CgmTrendArrow.None"/> when empty.</summary>
    public CgmTrendArrow TrendArrow => _count == 0 ? CgmTrendArrow.None : CgmTrendArrows.FromRate(ComputeTrend());

    /// <summary>Adds one reading; allocation-free.</summary>
    public CgmWindowChange Add(long timeMs, float glucoseMgDl, CgmQuality quality = CgmQuality.Good)
    {
        if (!_limits.IsPlausible(glucoseMgDl)) return CgmWindowChange.Dropped;
        var step = CgmGrid.NearestStep(timeMs, _stepMs);
        var offsetMs = (int)(timeMs - step * _stepMs);
        var outOfRange = _limits.IsOutOfRange(glucoseMgDl);
        var flags = (quality & KnownFlags) | (outOfRange ? CgmQuality.OutOfRange : 0) | (offsetMs != 0 ? CgmQuality.Synchronised : 0);

        if (_count == 0) _latestStep = step;
        else if (step > _latestStep) Advance(step);
        else if (step <= _latestStep - Capacity) return CgmWindowChange.TooOld;

        var slot = Slot(step);
        if (float.IsNaN(_glucoseMgDl[slot]))
        {
            Store(slot, glucoseMgDl, offsetMs, flags);
            _count++;
            Version++;
            return outOfRange ? CgmWindowChange.OutOfRange : CgmWindowChange.Added;
        }
        if (CgmGrid.Precedes(offsetMs, glucoseMgDl, _offsetMs[slot], _glucoseMgDl[slot]))
        {
            Store(slot, glucoseMgDl, offsetMs, flags | CgmQuality.DuplicateTime);
            Version++;
            return CgmWindowChange.Replaced;
        }
        if ((_quality[slot] & CgmQuality.DuplicateTime) == 0)
        {
            _quality[slot] |= CgmQuality.DuplicateTime;
            Version++;
        }
        return CgmWindowChange.Duplicate;
    }

    /// <summary>The reading stored for the step at <paramref name="stepTimeMs"/> (a grid time); false when that step
    /// is empty or outside the window.</summary>
    public bool TryGetStep(long stepTimeMs, out float glucoseMgDl, out CgmQuality quality)
    {
        var step = CgmGrid.FloorDiv(stepTimeMs, _stepMs);
        if (_count == 0 || step * _stepMs != stepTimeMs || step > _latestStep || step <= _latestStep - Capacity
            || float.IsNaN(_glucoseMgDl[Slot(step)]))
        {
            glucoseMgDl = float.NaN;
            quality = CgmQuality.Good;
            return false;
        }
        glucoseMgDl = _glucoseMgDl[Slot(step)];
        quality = _quality[Slot(step)];
        return true;
    }

    /// <summary>The forecaster's input: the last <paramref name="steps"/> steps up to the newest, oldest first, with
    /// gaps of at most <see cref="CgmSeriesOptions.MaxInterpolationGapMinutes"/> between real readings filled by
    /// linear interpolation, exactly as <see cref="CgmResampler"/> fills them. False (destination unspecified) when a
    /// longer gap falls in that span or its first step is in a gap whose earlier reading has left the window: those
    /// steps are not one complete sequence.</summary>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="steps"/> is not 1 … <see cref="Capacity"/>
    /// or <paramref name="destination"/> is shorter.</exception>
    public bool TryCopyLatest(int steps, Span<float> destination, out long lastStepTimeMs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(steps, Capacity);
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, steps, nameof(destination));
        lastStepTimeMs = LatestTimeMs;
        if (_count == 0) return false;

        var first = _latestStep - steps + 1;
        // The real reading at or before the first step: the left end of a gap the span may start in.
        var left = first;
        while (left > _latestStep - Capacity && float.IsNaN(_glucoseMgDl[Slot(left)])) left--;
        if (left <= _latestStep - Capacity) return false;

        var leftMgDl = _glucoseMgDl[Slot(left)];
        if (left == first) destination[0] = leftMgDl;
        for (var step = left + 1; step <= _latestStep; step++)
        {
            var mgDl = _glucoseMgDl[Slot(step)];
            if (float.IsNaN(mgDl)) continue;
            var gapSteps = step - left;
            if (gapSteps > _maxGapSteps) return false;
            for (var missing = Math.Max(left + 1, first); missing < step; missing++)
                destination[(int)(missing - first)] = (float)CgmGrid.Interpolate(leftMgDl, mgDl, missing - left, gapSteps);
            destination[(int)(step - first)] = mgDl;
            left = step;
            leftMgDl = mgDl;
        }
        return true;
    }

    /// <summary>Bytes <see cref="Write"/> needs now.</summary>
    public int SerializedSize => HeaderBytes + (_count == 0 ? 0 : StoredSteps() + (StepBytes - 1) * _count);

    /// <summary>Bytes <see cref="Write"/> may need for a window of <paramref name="capacity"/> steps.</summary>
    public static int MaxSerializedSize(int capacity) => HeaderBytes + StepBytes * capacity;

    /// <summary>Writes the window: a version byte, step minutes, capacity, <see cref="Version"/>, the newest step
    /// number, then from the oldest stored step to the newest a flags byte (0xFF = empty) followed, for a filled step,
    /// by its value (float32) and the reading's offset from the grid time (int32 ms); little-endian. About 1.1 KB for
    /// a full 120-step window. Returns the bytes written.</summary>
    /// <exception cref="ArgumentException">When <paramref name="destination"/> is shorter than <see cref="SerializedSize"/>.</exception>
    public int Write(Span<byte> destination)
    {
        var size = SerializedSize;
        if (destination.Length < size)
            throw new ArgumentException($"CGM window needs {size} bytes, the destination has {destination.Length}", nameof(destination));
        var storedSteps = _count == 0 ? 0 : StoredSteps();
        destination[0] = FormatVersion;
        destination[1] = (byte)_stepMinutes;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], (ushort)Capacity);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], _count == 0 ? long.MinValue : _latestStep);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[16..], (ushort)storedSteps);
        var at = HeaderBytes;
        for (var step = _latestStep - storedSteps + 1; step <= _latestStep; step++)
        {
            var slot = Slot(step);
            if (float.IsNaN(_glucoseMgDl[slot]))
            {
                destination[at++] = EmptyStep;
                continue;
            }
            destination[at] = (byte)_quality[slot];
            BinaryPrimitives.WriteSingleLittleEndian(destination[(at + 1)..], _glucoseMgDl[slot]);
            BinaryPrimitives.WriteInt32LittleEndian(destination[(at + 5)..], _offsetMs[slot]);
            at += StepBytes;
        }
        return at;
    }

    /// <summary>Reads what <see cref="Write"/> wrote. <paramref name="options"/> (default: the defaults) give the rules
    /// and the capacity: a window stored with more steps keeps its newest ones.</summary>
    /// <exception cref="InvalidDataException">An unknown version, truncated or inconsistent bytes, or a step size that
    /// differs from <paramref name="options"/>' (the stored steps cannot be re-gridded).</exception>
    public static CgmWindow Read(ReadOnlySpan<byte> source, CgmSeriesOptions? options = null)
    {
        var window = new CgmWindow(options);
        if (source.Length < HeaderBytes)
            throw new InvalidDataException($"CGM window: {source.Length} bytes is shorter than the {HeaderBytes}-byte header");
        if (source[0] != FormatVersion)
            throw new InvalidDataException($"CGM window: format version {source[0]} is unknown (this build reads {FormatVersion})");
        if (source[1] != window._stepMinutes)
            throw new InvalidDataException($"CGM window: stored with {source[1]}-minute steps, {CgmSeriesOptions.Section}:StepMinutes is {window._stepMinutes}");
        window.Version = BinaryPrimitives.ReadUInt32LittleEndian(source[4..]);
        var latestStep = BinaryPrimitives.ReadInt64LittleEndian(source[8..]);
        int storedSteps = BinaryPrimitives.ReadUInt16LittleEndian(source[16..]);
        if (storedSteps == 0) return window;

        window._latestStep = latestStep;
        var at = HeaderBytes;
        for (var step = latestStep - storedSteps + 1; step <= latestStep; step++)
        {
            if (at >= source.Length) throw Truncated(source.Length);
            var flags = source[at];
            if (flags == EmptyStep)
            {
                at++;
                continue;
            }
            if ((flags & ~(int)KnownFlags) != 0) throw new InvalidDataException($"CGM window: flags byte {flags} at offset {at} is not a quality");
            if (at + StepBytes > source.Length) throw Truncated(source.Length);
            var mgDl = BinaryPrimitives.ReadSingleLittleEndian(source[(at + 1)..]);
            if (float.IsNaN(mgDl)) throw new InvalidDataException($"CGM window: filled step at offset {at} holds NaN");
            if (step > latestStep - window.Capacity)
            {
                window.Store(window.Slot(step), mgDl, BinaryPrimitives.ReadInt32LittleEndian(source[(at + 5)..]), (CgmQuality)flags);
                window._count++;
            }
            at += StepBytes;
        }
        if (window._count == 0 || float.IsNaN(window._glucoseMgDl[window.Slot(latestStep)]))
            throw new InvalidDataException("CGM window: the newest step holds no reading");
        return window;
    }

    private static InvalidDataException Truncated(int length) => new($"CGM window: {length} bytes end inside a step");

    private int Slot(long step)
    {
        var slot = (int)(step % Capacity);
        return slot < 0 ? slot + Capacity : slot;
    }

    private void Store(int slot, float glucoseMgDl, int offsetMs, CgmQuality quality)
    {
        _glucoseMgDl[slot] = glucoseMgDl;
        _offsetMs[slot] = offsetMs;
        _quality[slot] = quality;
    }

    /// <summary>Moves the newest step to <paramref name="step"/>, emptying the steps that fall off the front.</summary>
    private void Advance(long step)
    {
        if (step - _latestStep >= Capacity)
        {
            _glucoseMgDl.AsSpan().Fill(float.NaN);
            _count = 0;
        }
        else
        {
            for (var s = _latestStep + 1; s <= step; s++)
            {
                var slot = Slot(s);
                if (float.IsNaN(_glucoseMgDl[slot])) continue;
                _glucoseMgDl[slot] = float.NaN;
                _count--;
            }
        }
        _latestStep = step;
    }

    /// <summary>Steps from the oldest filled one to the newest.</summary>
    private int StoredSteps()
    {
        var oldest = _latestStep - Capacity + 1;
        while (float.IsNaN(_glucoseMgDl[Slot(oldest)])) oldest++;
        return (int)(_latestStep - oldest + 1);
    }

    private double ComputeTrend()
    {
        if (_count == 0) return double.NaN;
        var latestSlot = Slot(_latestStep);
        if ((_quality[latestSlot] & CgmQuality.OutOfRange) != 0) return double.NaN;
        // Minutes relative to the newest reading keep the sums small and exact enough in double.
        var latestMs = _latestStep * _stepMs + _offsetMs[latestSlot];
        double n = 0, sumX = 0, sumY = 0, sumXx = 0, sumXy = 0;
        for (var step = Math.Max(_latestStep - _trendSteps, _latestStep - Capacity + 1); step <= _latestStep; step++)
        {
            var slot = Slot(step);
            var mgDl = _glucoseMgDl[slot];
            if (float.IsNaN(mgDl) || (_quality[slot] & CgmQuality.OutOfRange) != 0) continue;
            var x = (step * _stepMs + _offsetMs[slot] - latestMs) / 60_000.0;
            n++;
            sumX += x;
            sumY += mgDl;
            sumXx += x * x;
            sumXy += x * mgDl;
        }
        if (n < 3) return double.NaN;
        var denominator = n * sumXx - sumX * sumX;
        return denominator <= 0 ? double.NaN : (n * sumXy - sumX * sumY) / denominator;
    }
}
