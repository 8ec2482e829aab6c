using StreamHealth.Cgm;
using StreamHealth.Cgm.Series;
using static StreamHealth.Tests.Cgm.Series.SyntheticCgm;

namespace StreamHealth.Tests.Cgm.Series;

public sealed class CgmWindowTests
{
    private static readonly long T0 = At("2025-03-10 08:00");

    private static CgmWindow Filled(int readings, double mgDlPerMinute = 0, long firstMs = 0)
    {
        var window = new CgmWindow();
        firstMs = firstMs == 0 ? T0 : firstMs;
        for (var i = 0; i < readings; i++) window.Add(firstMs + i * Cadence, (float)(120 + mgDlPerMinute * 5 * i));
        return window;
    }

    [Fact]
    public void Add_reports_what_it_did_with_each_reading()
    {
        var window = new CgmWindow();
        Assert.Equal(CgmWindowChange.Added, window.Add(T0 + 20_000, 100));
        Assert.Equal(CgmWindowChange.OutOfRange, window.Add(T0 + 5 * Minute, 39));
        Assert.Equal(CgmWindowChange.Dropped, window.Add(T0 + 10 * Minute, float.NaN));
        Assert.Equal(CgmWindowChange.Dropped, window.Add(T0 + 10 * Minute, 0));
        Assert.Equal(CgmWindowChange.Dropped, window.Add(T0 + 10 * Minute, 1001));
        Assert.Equal(CgmWindowChange.Duplicate, window.Add(T0 + 40_000, 104));      // further from T0 than the first
        Assert.Equal(CgmWindowChange.Replaced, window.Add(T0 - 10_000, 101));       // nearer
        Assert.Equal(CgmWindowChange.TooOld, window.Add(T0 - 119 * Cadence, 90));  // 120 steps before the newest step

        Assert.Equal(2, window.Count);
        Assert.True(window.TryGetStep(T0, out var mgDl, out var quality));
        Assert.Equal(101, mgDl);
        Assert.Equal(CgmQuality.DuplicateTime | CgmQuality.Synchronised, quality);
        Assert.True(window.TryGetStep(T0 + 5 * Minute, out mgDl, out quality));
        Assert.Equal((39f, CgmQuality.OutOfRange), (mgDl, quality));
        Assert.Equal(T0 + 5 * Minute, window.LatestTimeMs);
        Assert.Equal(39, window.LatestGlucoseMgDl);
        Assert.Equal(CgmWindowChange.Added, window.Add(T0 - 118 * Cadence, 90));    // the oldest step still fits
    }

    [Fact]
    public void A_late_reading_fills_its_step_and_a_newer_one_moves_the_window()
    {
        var window = new CgmWindow();
        window.Add(T0, 100);
        window.Add(T0 + 10 * Minute, 110);
        Assert.Equal(CgmWindowChange.Added, window.Add(T0 + 5 * Minute, 105));
        Assert.Equal(T0 + 10 * Minute, window.LatestTimeMs);
        Assert.Equal(T0 + 10 * Minute - 119 * Cadence, window.FirstStepTimeMs);

        window.Add(T0 + 121 * Cadence, 130);   // steps T0 and T0 + 5 fall off; T0 + 10 is now the oldest
        Assert.False(window.TryGetStep(T0 + 5 * Minute, out _, out _));
        Assert.True(window.TryGetStep(T0 + 10 * Minute, out _, out _));
        Assert.Equal(2, window.Count);

        window.Add(T0 + 1000 * Cadence, 140);  // far ahead: everything else falls off
        Assert.Equal(1, window.Count);
        Assert.Equal(140, window.LatestGlucoseMgDl);
    }

    [Fact]
    public void Version_counts_every_stored_change_and_nothing_else()
    {
        var window = new CgmWindow();
        window.Add(T0, 100);
        window.Add(T0 + 5 * Minute + 20_000, 100);
        Assert.Equal(2u, window.Version);
        window.Add(T0 + 5 * Minute + 60_000, 100);   // duplicate: the kept one gains DuplicateTime
        Assert.Equal(3u, window.Version);
        window.Add(T0 + 5 * Minute + 60_000, 100);   // same again: nothing changes
        window.Add(T0, float.NaN);
        window.Add(T0 - 1000 * Cadence, 100);
        Assert.Equal(3u, window.Version);
        window.Add(T0 + 5 * Minute - 1_000, 100);    // replaces
        Assert.Equal(4u, window.Version);
    }

    [Fact]
    public void TryCopyLatest_fills_short_gaps_and_refuses_long_ones()
    {
        var window = Filled(100);
        Span<float> input = stackalloc float[96];
        Assert.True(window.TryCopyLatest(96, input, out var lastStepTimeMs));
        Assert.Equal(T0 + 99 * Cadence, lastStepTimeMs);
        Assert.All(input.ToArray(), v => Assert.Equal(120, v));

        window = new CgmWindow();
        for (var i = 0; i < 100; i++)
            if (i is not (50 or 51 or 4)) window.Add(T0 + i * Cadence, 100 + i);   // 15-minute gap at 50-51
        Assert.True(window.TryCopyLatest(96, input, out _));                      // starts at step 4: 3 and 5 around it
        Assert.Equal(Enumerable.Range(104, 96).Select(v => (float)v), input.ToArray());

        window.Add(T0 + 103 * Cadence, 203);   // a 20-minute gap at the end
        Assert.False(window.TryCopyLatest(96, input, out _));
        Assert.True(window.TryCopyLatest(1, input, out _));
        Assert.False(window.TryCopyLatest(2, input, out _));

        Assert.False(Filled(95).TryCopyLatest(96, input, out _));
        Assert.False(new CgmWindow().TryCopyLatest(96, input, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => Filled(10).TryCopyLatest(121, new float[121], out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => Filled(10).TryCopyLatest(5, new float[4], out _));
    }

    [Fact]
    public void TryCopyLatest_needs_the_reading_before_a_gap_at_the_start_of_its_span()
    {
        var window = new CgmWindow();
        window.Add(T0, 100);
        for (var i = 2; i < 120; i++) window.Add(T0 + i * Cadence, 100);   // step 1 missing; T0 is the oldest step
        Span<float> input = stackalloc float[120];
        Assert.True(window.TryCopyLatest(120, input, out _));

        window.Add(T0 + 120 * Cadence, 100);   // T0 falls off: step 1 can no longer be filled
        Assert.True(window.TryCopyLatest(119, input, out _));
        Assert.False(window.TryCopyLatest(120, input, out _));
    }

    [Theory]
    [InlineData(3.5, CgmTrendArrow.DoubleUp)]
    [InlineData(2.5, CgmTrendArrow.SingleUp)]
    [InlineData(1.5, CgmTrendArrow.FortyFiveUp)]
    [InlineData(0.4, CgmTrendArrow.Flat)]
    [InlineData(-1.5, CgmTrendArrow.FortyFiveDown)]
    [InlineData(-2.5, CgmTrendArrow.SingleDown)]
    [InlineData(-3.5, CgmTrendArrow.DoubleDown)]
    public void Trend_arrow_follows_the_rate_over_the_last_15_minutes(double mgDlPerMinute, CgmTrendArrow arrow)
    {
        var window = Filled(3, -5);                  // an earlier fall, outside the 15 minutes
        for (var i = 0; i < 4; i++) window.Add(T0 + (3 + i) * Cadence, (float)(150 + mgDlPerMinute * 5 * i));
        Assert.Equal(mgDlPerMinute, window.TrendMgDlPerMinute, 4);
        Assert.Equal(arrow, window.TrendArrow);
    }

    [Fact]
    public void Trend_uses_the_readings_own_times_and_needs_three_in_range_readings()
    {
        var window = new CgmWindow();
        window.Add(T0, 100);
        window.Add(T0 + 5 * Minute + 60_000, 112);   // 6 minutes after the first, 12 mg/dL
        Assert.Equal(CgmTrendArrow.NotComputable, window.TrendArrow);
        Assert.True(double.IsNaN(window.TrendMgDlPerMinute));
        window.Add(T0 + 12 * Minute, 124);            // at 12 minutes, 24 mg/dL: exactly 2 mg/dL/min
        Assert.Equal(2.0, window.TrendMgDlPerMinute, 9);
        Assert.Equal(CgmTrendArrow.FortyFiveUp, window.TrendArrow);   // a boundary goes to the slower arrow

        window.Add(T0 + 15 * Minute, 401);            // "High": no arrow, as on the receiver
        Assert.Equal(CgmTrendArrow.NotComputable, window.TrendArrow);
        Assert.Equal(CgmTrendArrow.None, new CgmWindow().TrendArrow);
        Assert.Equal(CgmTrendArrow.Flat, CgmTrendArrows.FromRate(-1));
        Assert.Equal(CgmTrendArrow.FortyFiveDown, CgmTrendArrows.FromRate(-1.0001));
        Assert.Equal(CgmTrendArrow.NotComputable, CgmTrendArrows.FromRate(double.NaN));
    }

    [Fact]
    public void Serialisation_round_trips_and_stays_small()
    {
        var window = new CgmWindow();
        for (var i = 0; i < 150; i++)
            if (i % 17 != 3) window.Add(T0 + i * Cadence + (i % 7 - 3) * 20_000, 80.25f + i, i % 11 == 0 ? CgmQuality.Calibration : 0);
        window.Add(T0 + 140 * Cadence + 90_000, 77);
        window.Add(T0 + 141 * Cadence, 39);

        var bytes = new byte[window.SerializedSize];
        Assert.Equal(bytes.Length, window.Write(bytes));
        Assert.Equal(CgmWindow.FormatVersion, bytes[0]);
        Assert.True(bytes.Length <= CgmWindow.MaxSerializedSize(120) && bytes.Length < 1200, $"{bytes.Length} bytes");

        var copy = CgmWindow.Read(bytes);
        var again = new byte[copy.SerializedSize];
        copy.Write(again);
        Assert.Equal(bytes, again);
        AssertSameWindow(window, copy);

        Assert.Equal(18, new CgmWindow().SerializedSize);
        var empty = new byte[18];
        new CgmWindow().Write(empty);
        Assert.True(CgmWindow.Read(empty).IsEmpty);
    }

    [Fact]
    public void Reading_checks_version_length_and_step_and_keeps_the_newest_steps_of_a_bigger_window()
    {
        var window = Filled(150, 0.1);
        var bytes = new byte[window.SerializedSize];
        window.Write(bytes);

        var wrongVersion = (byte[])bytes.Clone();
        wrongVersion[0] = 9;
        Assert.Contains("format version 9 is unknown", Assert.Throws<InvalidDataException>(() => CgmWindow.Read(wrongVersion)).Message);
        Assert.Throws<InvalidDataException>(() => CgmWindow.Read(bytes.AsSpan(0, bytes.Length - 3)));
        Assert.Throws<InvalidDataException>(() => CgmWindow.Read(bytes.AsSpan(0, 10)));
        Assert.Contains("5-minute steps", Assert.Throws<InvalidDataException>(() => CgmWindow.Read(bytes, new CgmSeriesOptions { StepMinutes = 15, TrendMinutes = 30 })).Message);
        Assert.Throws<ArgumentException>(() => window.Write(new byte[bytes.Length - 1]));

        var big = new CgmWindow(new CgmSeriesOptions { WindowSteps = 288 });
        for (var i = 0; i < 200; i++) big.Add(T0 + i * Cadence, 100 + i);
        var bigBytes = new byte[big.SerializedSize];
        big.Write(bigBytes);
        var small = CgmWindow.Read(bigBytes);
        Assert.Equal(120, small.Capacity);
        Assert.Equal(120, small.Count);
        Assert.Equal(big.LatestTimeMs, small.LatestTimeMs);
        Assert.Equal(big.Version, small.Version);
        Assert.True(small.TryGetStep(T0 + 80 * Cadence, out var oldest, out _));
        Assert.Equal(180, oldest);
        Assert.False(small.TryGetStep(T0 + 79 * Cadence, out _, out _));
    }

    [Fact]
    public void Add_allocates_nothing()
    {
        var window = new CgmWindow();
        window.Add(T0, 100);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++) window.Add(T0 + i * 290_000, 100 + i % 50);
        Span<float> input = stackalloc float[96];
        window.TryCopyLatest(96, input, out _);
        _ = window.TrendArrow;
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Random_windows_round_trip()
    {
        CgmResamplerPropertyTests.ForEachSeed(200, seed =>
        {
            var random = new Random(seed);
            var window = new CgmWindow();
            var first = RandomMidnight(random);
            for (var i = random.Next(1, 400); i > 0; i--)
                window.Add(first + random.Next(0, 2000) * 60_000L + random.Next(1000), random.Next(-5, 600) + random.Next(4) / 4f,
                    (CgmQuality)random.Next(32));
            var bytes = new byte[window.SerializedSize];
            Assert.Equal(bytes.Length, window.Write(bytes));
            AssertSameWindow(window, CgmWindow.Read(bytes));
        });
    }

    /// <summary>The forecaster sees the same 8 hours from the streaming window as the batch resampler makes of the
    /// same readings (arriving in file order, with local reordering), at several points of each series.</summary>
    [Fact]
    public void TryCopyLatest_equals_the_batch_resamplers_last_96_steps()
    {
        int complete = 0, incomplete = 0;
        var options = new CgmSeriesOptions();
        CgmResamplerPropertyTests.ForEachSeed(150, seed =>
        {
            var random = new Random(seed);
            var generator = new SyntheticCgm(random) { MinReadings = 150, MaxReadings = 700, EventProbability = 0, GapProbability = 0.01 };
            var rows = generator.Generate(RandomMidnight(random));
            generator.ShuffleLocally(rows);
            var window = new CgmWindow(options);
            var checkpoints = new HashSet<int>(Enumerable.Range(0, 4).Select(_ => random.Next(100, rows.Count)).Append(rows.Count));
            for (var i = 1; i <= rows.Count; i++)
            {
                window.Add(rows[i - 1].TimeMs, (float)rows[i - 1].GlucoseMgDl);
                if (!checkpoints.Contains(i)) continue;
                var batch = new List<CgmRow>();
                CgmResampler.Resample(rows.GetRange(0, i).ToArray(), options, batch);
                if (SeriesInvariants.CheckForecastInput(window, batch)) complete++;
                else incomplete++;
            }
        });
        Assert.True(complete > 200 && incomplete > 50, $"{complete} complete, {incomplete} incomplete");
    }

    private static void AssertSameWindow(CgmWindow expected, CgmWindow actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(expected.Version, actual.Version);
        Assert.Equal(expected.LatestTimeMs, actual.LatestTimeMs);
        Assert.Equal(expected.LatestGlucoseMgDl, actual.LatestGlucoseMgDl);
        Assert.Equal(expected.TrendMgDlPerMinute, actual.TrendMgDlPerMinute);
        for (var step = expected.FirstStepTimeMs; step <= expected.LatestTimeMs; step += Cadence)
        {
            Assert.Equal(expected.TryGetStep(step, out var mgDl, out var quality), actual.TryGetStep(step, out var copyMgDl, out var copyQuality));
            Assert.Equal(mgDl, copyMgDl);
            Assert.Equal(quality, copyQuality);
        }
        // The same next reading does the same to both: the offsets from the grid survived too.
        var probe = expected.LatestTimeMs - 30_000;
        Assert.Equal(expected.Add(probe, 100), actual.Add(probe, 100));
        Assert.Equal(expected.LatestQuality, actual.LatestQuality);
    }
}
