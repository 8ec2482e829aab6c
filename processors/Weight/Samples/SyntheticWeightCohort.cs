using StreamHealth.Schemas;
using StreamHealth.Weight.Filter;

namespace StreamHealth.Weight.Samples;

/// <summary>Why a synthetic reading is wrong on purpose (ground truth for outlier precision/recall).</summary>
public enum SyntheticOutlierKind : byte
{
    None,
    /// <summary>±5–30 kg off: someone else on the scale, a coat and bag, a typo.</summary>
    Offset,
    /// <summary>The pound reading typed into a kilogram field (×2.2).</summary>
    PoundsEnteredAsKilograms,
    /// <summary>The kilogram reading sent labelled as pounds (×0.45).</summary>
    KilogramsEnteredAsPounds,
    /// <summary>Another household member (adult or child) on the user's scale during a streak.</summary>
    OtherPerson,
}

/// <summary>Days on which another household member uses the user's scale (ground truth for the harness).</summary>
/// <param name="OtherWeightKg">The other person's underlying weight (constant over a streak).</param>
/// <param name="UserWeighsInBetween">The user keeps weighing during the streak; otherwise only the other
/// person's (and the clinic's) readings arrive in it.</param>
public sealed record SyntheticHouseholdStreak(double StartDay, int Days, double OtherWeightKg, bool IsChild, bool UserWeighsInBetween)
{
    public double EndDay => StartDay + Days;
}

/// <summary>One synthetic weigh-in with the truth behind it.</summary>
/// <param name="TrueWeightKg">The user's underlying weight at that moment (the smooth path, steps and a cast
/// included), what a perfect filter would report; for another person's reading, still the user's.</param>
public readonly record struct SyntheticWeighIn(int UserIndex, string UserId, WeightObservation Observation,
    double TrueWeightKg, SyntheticOutlierKind Outlier)
{
    /// <summary>The reading declares surgery (the first reading after a declared step change).</summary>
    public bool DeclaresSurgery => Observation.DeclaredEvent == WeightEvent.Surgery;
    /// <summary>Should not enter the user's estimate: a gross error or another person's reading.</summary>
    public bool IsOutlier => Outlier != SyntheticOutlierKind.None;
    public bool IsOtherPerson => Outlier == SyntheticOutlierKind.OtherPerson;
}

/// <summary>How one synthetic person behaves; drawn from the cohort's seed and the user's index.</summary>
public sealed record SyntheticUserProfile(
    int UserIndex,
    string UserId,
    double StartWeightKg,
    double DailyNoiseSdKg,
    double MeanIntervalDays,
    WeightUnit Unit,
    WeightSource PrimarySource,
    double CareTeamVisitIntervalDays,   // 0: no clinic visits
    double StepChangeDay,               // -1: none
    double StepChangeKg,
    double GapStartDay,                 // -1: no long gap
    double GapDays,
    bool WeeklyWeigher,                 // weighs every 5.5-8.5 days instead of MeanIntervalDays' exponential
    bool SurgeryDeclared,               // the step change is declared on the first reading after it
    double CastStartDay,                // -1: no cast
    double CastDays,
    double CastKg,
    IReadOnlyList<SyntheticHouseholdStreak> HouseholdStreaks)
{
    public bool HasCast => CastStartDay >= 0;
    public bool HasHousehold => HouseholdStreaks.Count > 0;

    public bool HasStepChange => StepChangeDay >= 0;
    public bool HasLongGap => GapStartDay >= 0;
}

/// <summary>A seeded, deterministic cohort of people weighing themselves for a year, with the truth kept:
/// the accuracy harness's input and the live demo's producer feed.</summary>
/// <remarks>
/// Per person: start weight N(88, 17) kg clamped to 52–160; trend phases of 45–150 days, each a plateau
/// (25 %, N(0, 0.05) kg/week), a loss (50 %, −1…−0.1 kg/week) or a gain (25 %, +0.1…+0.5 kg/week);
/// day-to-day fluctuation with SD 0.5–2 kg (per person) plus the instrument (care team 0.2 kg, connected
/// scale 0.3 kg, self-report 0.6 kg and coarse rounding, unspecified 0.5 kg); weigh-ins at exponential
/// intervals with a mean of 0.8–5 days, 8 % followed by a second one the same day, 2 % followed by a
/// 7–21-day pause; half the people also have care-team visits every 30–60 days (recorded in kg);
/// 4 % of home readings carry no source; 8 % of people lose 8–15 kg at once (surgery) on a day in 60–300,
/// followed by a loss phase; 12 % stop weighing for 35–75 days once. Units: 60 % kg, 28 % lb, 12 % st.
/// 5 % of readings are gross outliers (<see cref="SyntheticOutlierKind"/>): 65 % offsets, 20 % lb typed as
/// kg, 15 % kg sent as lb. A person's readings depend only on (seed, user index), so any subset of users
/// reproduces exactly. Memory: every reading of every user is held while streaming (about 50 B each).
/// <para>Life events (issue 19), drawn from a second random stream per user so the draws above keep their
/// order: 10 % of people weigh weekly (every 5.5–8.5 days, never twice a day) instead; half the step changes
/// are declared as surgery on the first reading after them; 6 % of people wear a cast for 28–56 days that
/// adds 1.5–3.5 kg to what the scale shows (the truth includes it: it is on the scale, and no API declares
/// it); 30 % share the scale: 1–4 streaks of 1–10 days each in which another adult (70 %, N(80, 16) kg,
/// 45–150, independent of the user) or a child (20–45 kg) weighs daily on the user's scale, in the user's
/// unit and source, 15 % of days twice 1–3 minutes apart; in half the streaks the user keeps weighing,
/// in the other half only the other person's (and the clinic's) readings arrive. Another person's reading
/// is marked <see cref="SyntheticOutlierKind.OtherPerson"/> and carries no gross error of its own.</para>
/// </remarks>
public sealed class SyntheticWeightCohort
{
    public const int DefaultSeed = 20261123;
    public const double OutlierRate = 0.05;

    /// <summary>2025-01-06T00:00:00Z, a Monday.</summary>
    public const long DefaultStartUnixMs = 1_736_121_600_000;

    private const double MsPerDay = 86_400_000.0;

    public SyntheticWeightCohort(int users, int seed = DefaultSeed, long startUnixMs = DefaultStartUnixMs, int days = 365)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(users, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(days, 1);
        Users = users;
        Seed = seed;
        StartUnixMs = startUnixMs;
        Days = days;
    }

    public int Users { get; }
    public int Seed { get; }
    public long StartUnixMs { get; }
    public int Days { get; }

    public string UserId(int userIndex) => $"synthetic-{userIndex:D5}";

    public SyntheticUserProfile Profile(int userIndex) => DrawProfile(NewRandom(userIndex), userIndex);

    /// <summary>One person's readings in time order.</summary>
    public IReadOnlyList<SyntheticWeighIn> User(int userIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(userIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(userIndex, Users);
        var random = NewRandom(userIndex);
        var profile = DrawProfile(random, userIndex);
        var path = DrawWeightPath(random, profile);
        return DrawReadings(random, profile, path);
    }

    /// <summary>Every reading of every user, in time order (ties by user index), as a producer would send them.</summary>
    public IEnumerable<SyntheticWeighIn> Stream()
    {
        var series = new IReadOnlyList<SyntheticWeighIn>[Users];
        var queue = new PriorityQueue<(int User, int Index), (long Time, int User)>(Users);
        for (var u = 0; u < Users; u++)
        {
            series[u] = User(u);
            if (series[u].Count > 0) queue.Enqueue((u, 0), (series[u][0].Observation.TimeUnixMs, u));
        }
        while (queue.TryDequeue(out var next, out _))
        {
            var list = series[next.User];
            yield return list[next.Index];
            var following = next.Index + 1;
            if (following < list.Count) queue.Enqueue((next.User, following), (list[following].Observation.TimeUnixMs, next.User));
        }
    }

    // System.Random with a seed uses its original, documented-stable algorithm, so a cohort is the same
    // on every .NET version; the multiplier keeps neighbouring users' streams unrelated.
    private Random NewRandom(int userIndex) => new(unchecked(Seed * 1_000_003 + userIndex * 7_919));

    private Random NewEventsRandom(int userIndex, int purpose) => new(unchecked(Seed * 998_244_353 + userIndex * 104_729 + purpose * 17));

    private SyntheticUserProfile DrawProfile(Random random, int userIndex)
    {
        var events = NewEventsRandom(userIndex, purpose: 1);
        var weekly = events.NextDouble() < 0.10;
        var declared = events.NextDouble() < 0.5;
        var hasCast = events.NextDouble() < 0.06;
        var castStart = Uniform(events, 30, 300);
        var castDays = Uniform(events, 28, 56);
        var castKg = Uniform(events, 1.5, 3.5);
        var streaks = new List<SyntheticHouseholdStreak>();
        if (events.NextDouble() < 0.30)
        {
            var count = events.Next(1, 5);
            for (var i = 0; i < count; i++)
            {
                var start = Math.Floor(Uniform(events, 20, Days - 12));
                var length = events.Next(1, 11);
                var child = events.NextDouble() < 0.30;
                var otherKg = child ? Uniform(events, 20, 45) : Math.Clamp(Normal(events, 80, 16), 45, 150);
                var between = events.NextDouble() < 0.5;
                // Streaks do not overlap: one other person at a time is what is being scored.
                if (streaks.Exists(s => start < s.EndDay + 3 && s.StartDay < start + length + 3)) continue;
                streaks.Add(new SyntheticHouseholdStreak(start, length, otherKg, child, between));
            }
            streaks.Sort((a, b) => a.StartDay.CompareTo(b.StartDay));
        }

        var startKg = Math.Clamp(Normal(random, 88, 17), 52, 160);
        var noiseSd = Uniform(random, 0.5, 2.0);
        var habit = random.NextDouble();
        var meanInterval = habit < 0.35 ? Uniform(random, 0.8, 1.3) : habit < 0.75 ? Uniform(random, 1.5, 3) : Uniform(random, 3, 5);
        var unitDraw = random.NextDouble();
        var unit = unitDraw < 0.60 ? WeightUnit.Kg : unitDraw < 0.88 ? WeightUnit.Lb : WeightUnit.St;
        var source = random.NextDouble() < 0.6 ? WeightSource.ConnectedScale : WeightSource.PatientReported;
        var careTeam = random.NextDouble() < 0.5 ? Uniform(random, 30, 60) : 0;
        var hasStep = random.NextDouble() < 0.08;
        var stepDay = Uniform(random, 60, 300);
        var stepKg = Uniform(random, 8, 15);
        var hasGap = random.NextDouble() < 0.12;
        var gapStart = Uniform(random, 30, 280);
        var gapDays = Uniform(random, 35, 75);
        return new SyntheticUserProfile(userIndex, UserId(userIndex), startKg, noiseSd, meanInterval, unit, source, careTeam,
            hasStep && stepDay < Days ? stepDay : -1, hasStep ? stepKg : 0,
            hasGap && gapStart < Days ? gapStart : -1, hasGap ? gapDays : 0,
            weekly, hasStep && declared, hasCast && castStart < Days ? castStart : -1, castDays, castKg, streaks);
    }

    /// <summary>Piecewise-linear true weight: phase i starts at StartDay[i] with StartKg[i] and slope TrendKgPerDay[i].</summary>
    private sealed class WeightPath
    {
        public readonly List<double> StartDay = [];
        public readonly List<double> StartKg = [];
        public readonly List<double> TrendKgPerDay = [];

        public double At(double day)
        {
            var i = StartDay.Count - 1;
            while (i > 0 && StartDay[i] > day) i--;
            return StartKg[i] + TrendKgPerDay[i] * (day - StartDay[i]);
        }
    }

    private WeightPath DrawWeightPath(Random random, SyntheticUserProfile profile)
    {
        var path = new WeightPath();
        var day = 0.0;
        var kg = profile.StartWeightKg;
        var stepPending = profile.HasStepChange;
        var forcedLoss = false;
        while (day < Days)
        {
            var phaseDraw = random.NextDouble();
            var kgPerWeek = forcedLoss ? Uniform(random, -1, -0.4)
                : phaseDraw < 0.25 ? Normal(random, 0, 0.05)
                : phaseDraw < 0.75 ? Uniform(random, -1, -0.1)
                : Uniform(random, 0.1, 0.5);
            // Keep people inside what bodies do: no one slims below 45 kg or grows past 200 kg here.
            if (kg < 50 && kgPerWeek < 0) kgPerWeek = -kgPerWeek;
            if (kg > 190 && kgPerWeek > 0) kgPerWeek = -kgPerWeek;
            forcedLoss = false;
            var length = Uniform(random, 45, 150);
            var end = day + length;
            path.StartDay.Add(day);
            path.StartKg.Add(kg);
            path.TrendKgPerDay.Add(kgPerWeek / 7);
            if (stepPending && profile.StepChangeDay < end)
            {
                kg += kgPerWeek / 7 * (profile.StepChangeDay - day) - profile.StepChangeKg;
                day = profile.StepChangeDay;
                stepPending = false;
                forcedLoss = true;     // after bariatric surgery the loss goes on for months
                continue;
            }
            kg += kgPerWeek / 7 * length;
            day = end;
        }
        return path;
    }

    private List<SyntheticWeighIn> DrawReadings(Random random, SyntheticUserProfile profile, WeightPath path)
    {
        var times = new List<(double Day, WeightSource Source, SyntheticHouseholdStreak? Other)>();
        bool InGap(double d) => profile.HasLongGap && d >= profile.GapStartDay && d < profile.GapStartDay + profile.GapDays;
        SyntheticHouseholdStreak? StreakAt(double d)
        {
            foreach (var s in profile.HouseholdStreaks)
                if (d >= s.StartDay && d < s.EndDay) return s;
            return null;
        }

        var t = Uniform(random, 0, profile.MeanIntervalDays);
        while (t < Days)
        {
            if (InGap(t))
            {
                t = profile.GapStartDay + profile.GapDays + Uniform(random, 0, 1);
                continue;
            }
            var source = random.NextDouble() < 0.04 ? WeightSource.Unspecified : profile.PrimarySource;
            var streak = StreakAt(t);
            var userAway = streak is { UserWeighsInBetween: false };
            if (!userAway) times.Add((t, source, null));
            if (random.NextDouble() < 0.08 && !profile.WeeklyWeigher)
            {
                var again = t + Uniform(random, 0.02, 0.5);
                if (again < Days && !InGap(again) && !userAway) times.Add((again, source, null));
            }
            if (random.NextDouble() < 0.02) t += Uniform(random, 7, 21);
            var exponential = Math.Max(0.05, -profile.MeanIntervalDays * Math.Log(1 - random.NextDouble()));
            t += profile.WeeklyWeigher ? Uniform(random, 5.5, 8.5) : exponential;
        }
        if (profile.CareTeamVisitIntervalDays > 0)
        {
            for (var v = Uniform(random, 5, profile.CareTeamVisitIntervalDays); v < Days; v += profile.CareTeamVisitIntervalDays * Uniform(random, 0.8, 1.2))
                if (!InGap(v)) times.Add((v, WeightSource.CareTeam, null));
        }
        var events = NewEventsRandom(profile.UserIndex, purpose: 2);
        foreach (var streak in profile.HouseholdStreaks)
        {
            for (var d = 0; d < streak.Days; d++)
            {
                var at = streak.StartDay + d + Uniform(events, 0.05, 0.95);
                if (at >= Days || InGap(at)) continue;
                times.Add((at, profile.PrimarySource, streak));
                // Stepping off and on again: two readings a minute or two apart are one observation.
                if (events.NextDouble() < 0.15) times.Add((at + Uniform(events, 1, 3) / 1440.0, profile.PrimarySource, streak));
            }
        }
        times.Sort((a, b) => a.Day.CompareTo(b.Day));

        var readings = new List<SyntheticWeighIn>(times.Count);
        var lastTime = long.MinValue;
        var surgeryDeclarationPending = profile.SurgeryDeclared;
        foreach (var (day, source, other) in times)
        {
            var time = StartUnixMs + (long)(day * MsPerDay);
            if (time <= lastTime) time = lastTime + 1;   // distinct times: "same time, source and value" stays a true duplicate
            lastTime = time;
            var castKg = profile.HasCast && day >= profile.CastStartDay && day < profile.CastStartDay + profile.CastDays ? profile.CastKg : 0;
            var trueKg = path.At(day) + castKg;
            if (other is not null)
            {
                var otherReadKg = other.OtherWeightKg + Normal(events, 0, 0.8) + Normal(events, 0, 0.3);
                var otherUnit = profile.Unit;
                readings.Add(new SyntheticWeighIn(profile.UserIndex, profile.UserId,
                    new WeightObservation(time, Display(otherReadKg, otherUnit, selfReported: source == WeightSource.PatientReported), otherUnit, source),
                    trueKg, SyntheticOutlierKind.OtherPerson));
                continue;
            }
            var declares = surgeryDeclarationPending && day >= profile.StepChangeDay;
            if (declares) surgeryDeclarationPending = false;
            var instrumentSd = source switch
            {
                WeightSource.CareTeam => 0.2,
                WeightSource.ConnectedScale => 0.3,
                WeightSource.PatientReported => 0.6,
                _ => 0.5,
            };
            var readKg = trueKg + Normal(random, 0, profile.DailyNoiseSdKg) + Normal(random, 0, instrumentSd);
            var unit = source == WeightSource.CareTeam ? WeightUnit.Kg : profile.Unit;   // clinics record kg
            var value = Display(readKg, unit, selfReported: source == WeightSource.PatientReported);

            var outlier = SyntheticOutlierKind.None;
            if (random.NextDouble() < OutlierRate)
            {
                var kind = random.NextDouble();
                if (kind < 0.65)
                {
                    outlier = SyntheticOutlierKind.Offset;
                    var offsetKg = Uniform(random, 5, 30) * (random.NextDouble() < 0.5 ? -1 : 1);
                    value = Display(readKg + offsetKg, unit, selfReported: false);
                }
                else if (kind < 0.85)
                {
                    outlier = SyntheticOutlierKind.PoundsEnteredAsKilograms;
                    unit = WeightUnit.Kg;
                    value = Math.Round(readKg / WeightUnits.KgPerPound, 1);
                }
                else
                {
                    outlier = SyntheticOutlierKind.KilogramsEnteredAsPounds;
                    unit = WeightUnit.Lb;
                    value = Math.Round(readKg, 1);
                }
            }
            readings.Add(new SyntheticWeighIn(profile.UserIndex, profile.UserId,
                new WeightObservation(time, value, unit, source, declares ? WeightEvent.Surgery : WeightEvent.Unspecified), trueKg, outlier));
        }
        return readings;
    }

    /// <summary>What the scale shows or the person types: scales to 0.1 kg / 0.2 lb / 0.01 st, people to
    /// 0.5 kg / 1 lb / 1 lb in stones.</summary>
    private static double Display(double kg, WeightUnit unit, bool selfReported) => unit switch
    {
        WeightUnit.Kg => selfReported ? Math.Round(kg * 2) / 2 : Math.Round(kg, 1),
        WeightUnit.Lb => selfReported ? Math.Round(kg / WeightUnits.KgPerPound) : Math.Round(kg / WeightUnits.KgPerPound * 5) / 5,
        _ => selfReported ? Math.Round(kg / WeightUnits.KgPerPound) / 14 : Math.Round(kg / WeightUnits.KgPerStone, 2),
    };

    private static double Uniform(Random random, double min, double max) => min + (max - min) * random.NextDouble();

    private static double Normal(Random random, double mean, double sd)
    {
        // Box–Muller; 1 − U keeps the logarithm's argument in (0, 1].
        var u1 = 1 - random.NextDouble();
        var u2 = random.NextDouble();
        return mean + sd * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
