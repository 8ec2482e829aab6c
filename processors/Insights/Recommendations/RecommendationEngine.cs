using System.Globalization;

namespace StreamHealth.Insights.Recommendations;

/// <summary>A metric over the window: per-day figures over the days that have data (a day without data is unknown,
/// not zero).</summary>
public readonly record struct DailyFigures(int DaysWithData, double PerDayMean);

/// <summary>Nutrition logs over the window, per day with at least one logged meal. Optional nutrients: null when no log
/// of the window gave them.</summary>
public readonly record struct NutritionFigures(int DaysWithData, double CaloriesKcalPerDay, double ProteinGPerDay,
    double? FiberGPerDay, double? SugarGPerDay, double? SodiumMgPerDay);

/// <summary>The weights workload's Kalman estimate: filtered weight and trend, and how old it is.</summary>
public readonly record struct WeightTrend(double WeightKg, double TrendKgPerWeek, double AgeDays);

/// <summary>What the rules read about one person for one window of <see cref="WindowDays"/> local days.</summary>
public sealed record RecommendationInputs(
    int WindowDays,
    int? AgeYears,
    string? Sex,
    DailyFigures? Steps = null,
    DailyFigures? SleepHours = null,
    /// <summary>Mean of the daily minimum heart rate, the resting-rate estimate.</summary>
    DailyFigures? RestingHeartRateBpm = null,
    DailyFigures? WaterMl = null,
    NutritionFigures? Nutrition = null,
    WeightTrend? Weight = null);

/// <summary>One recommendation: <see cref="Priority"/> 1 (act now) to 3 (worth a look); <see cref="Severity"/> (0-1)
/// orders those of one priority; <see cref="Figures"/> are the numbers the reason quotes, with their units in the keys.</summary>
public sealed record Recommendation(string Rule, int Priority, double Severity, string Title, string Reason,
    IReadOnlyDictionary<string, object> Figures);

/// <summary>The six rule families of the insights design (low step count, insufficient sleep, elevated resting heart
/// rate, weight management, poor nutrition, low water intake), personalised by age band and sex through
/// <see cref="RecommendationRules"/>. Pure: the same inputs always give the same list, in the same order.</summary>
public static class RecommendationEngine
{
    public const string LowSteps = "low_step_count";
    public const string InsufficientSleep = "insufficient_sleep";
    public const string ElevatedRestingHeartRate = "elevated_resting_heart_rate";
    public const string WeightManagement = "weight_management";
    public const string PoorNutrition = "poor_nutrition";
    public const string LowWater = "low_water_intake";

    /// <summary>The top <see cref="RecommendationRules.MaxResults"/>: priority first, then severity, then rule name.</summary>
    public static IReadOnlyList<Recommendation> Evaluate(RecommendationRules rules, RecommendationInputs inputs)
    {
        var ageKnown = inputs.AgeYears is not null;
        var age = inputs.AgeYears ?? rules.DefaultAgeYears;
        var band = rules.BandFor(age) ?? rules.BandFor(rules.DefaultAgeYears)!;
        var context = new Context(rules, band, inputs, ageKnown
            ? $"for ages {band.Name}"
            : $"for ages {band.Name} (no date of birth in the profile; {rules.DefaultAgeYears} assumed)");
        var found = new List<Recommendation>(6);
        Add(found, Steps(context));
        Add(found, Sleep(context));
        Add(found, HeartRate(context));
        Add(found, Weight(context));
        Add(found, Nutrition(context));
        Add(found, Water(context));
        found.Sort(static (a, b) => a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority)
            : b.Severity != a.Severity ? b.Severity.CompareTo(a.Severity)
            : string.CompareOrdinal(a.Rule, b.Rule));
        if (found.Count > rules.MaxResults) found.RemoveRange(rules.MaxResults, found.Count - rules.MaxResults);
        return found;
    }

    private sealed record Context(RecommendationRules Rules, AgeBandRules Band, RecommendationInputs Inputs, string BandText)
    {
        public int DaysNeeded => Math.Min(Rules.MinDaysWithData, Inputs.WindowDays);
        public bool Enough(int daysWithData) => daysWithData >= DaysNeeded;
        public string Over(int daysWithData) =>
            $"over the last {Inputs.WindowDays} days ({daysWithData} {(daysWithData == 1 ? "day" : "days")} with data)";
    }

    private static void Add(List<Recommendation> found, Recommendation? r)
    {
        if (r is not null) found.Add(r);
    }

    private static Recommendation? Steps(Context c)
    {
        if (c.Inputs.Steps is not { } steps || !c.Enough(steps.DaysWithData)) return null;
        var target = c.Band.StepsPerDay;
        if (steps.PerDayMean >= target) return null;
        var shortfall = 1 - steps.PerDayMean / target;
        return new Recommendation(LowSteps, Level(shortfall, 0.5, 0.25), shortfall, "Walk more each day",
            $"You averaged {Whole(steps.PerDayMean)} steps a day {c.Over(steps.DaysWithData)}; the target {c.BandText} is " +
            $"{Whole(target)}. About {Whole(target - steps.PerDayMean)} more steps a day (roughly {Whole((target - steps.PerDayMean) / 100)} " +
            "minutes of brisk walking) would reach it.",
            Figures(("steps_per_day", Round(steps.PerDayMean, 0)), ("target_steps_per_day", target), ("days_with_data", steps.DaysWithData),
                ("age_band", c.Band.Name)));
    }

    private static Recommendation? Sleep(Context c)
    {
        if (c.Inputs.SleepHours is not { } sleep || !c.Enough(sleep.DaysWithData)) return null;
        var minimum = c.Band.SleepHoursMin;
        var deficitHours = minimum - sleep.PerDayMean;
        if (deficitHours <= 0) return null;
        return new Recommendation(InsufficientSleep, Level(deficitHours, 1.5, 0.75), Math.Min(1, deficitHours / minimum), "Sleep longer",
            $"You slept {Hours(sleep.PerDayMean)} a night on average {c.Over(sleep.DaysWithData)}; at least {Hours(minimum)} is " +
            $"recommended {c.BandText}. A regular bedtime {Hours(deficitHours)} earlier would close the gap.",
            Figures(("sleep_hours_per_night", Round(sleep.PerDayMean, 2)), ("minimum_sleep_hours", minimum), ("deficit_hours", Round(deficitHours, 2)),
                ("days_with_data", sleep.DaysWithData), ("age_band", c.Band.Name)));
    }

    private static Recommendation? HeartRate(Context c)
    {
        if (c.Inputs.RestingHeartRateBpm is not { } rate || !c.Enough(rate.DaysWithData)) return null;
        var elevated = c.Band.RestingHeartRateElevatedBpm;
        var high = c.Band.RestingHeartRateHighBpm;
        if (rate.PerDayMean < elevated) return null;
        var isHigh = rate.PerDayMean >= high;
        return new Recommendation(ElevatedRestingHeartRate, isHigh ? 1 : 2, Math.Min(1, (rate.PerDayMean - elevated) / Math.Max(1, high - elevated)),
            isHigh ? "Ask a clinician about your resting heart rate" : "Your resting heart rate is elevated",
            $"Your resting heart rate (the lowest rate of each day) averaged {Whole(rate.PerDayMean)} bpm {c.Over(rate.DaysWithData)}. " +
            (isHigh
                ? $"{Whole(high)} bpm or more at rest is in the tachycardia range {c.BandText}: please discuss it with a clinician."
                : $"Above {Whole(elevated)} bpm {c.BandText} is associated with higher cardiovascular risk; regular aerobic exercise, " +
                  "sleep and less caffeine or alcohol usually lower it."),
            Figures(("resting_heart_rate_bpm", Round(rate.PerDayMean, 1)), ("elevated_from_bpm", elevated), ("high_from_bpm", high),
                ("days_with_data", rate.DaysWithData), ("age_band", c.Band.Name)));
    }

    private static Recommendation? Weight(Context c)
    {
        if (c.Inputs.Weight is not { } weight || weight.AgeDays > c.Rules.WeightTrendMaxAgeDays) return null;
        var trend = weight.TrendKgPerWeek;
        if (trend > 0 && c.Band.WeightGainKgPerWeekMax is { } gainMax && trend > gainMax)
            return new Recommendation(WeightManagement, trend > 2 * gainMax ? 1 : 2, Math.Min(1, trend / (4 * gainMax)), "Your weight is rising",
                $"Your filtered weight is {Kg(weight.WeightKg)} and rising by {Kg(trend)} a week (trend of your weigh-ins); more than " +
                $"{Kg(gainMax)} a week {c.BandText} adds up to {Kg(trend * 52)} a year. Small changes to portions and activity slow it.",
                Figures(("weight_kg", Round(weight.WeightKg, 1)), ("trend_kg_per_week", Round(trend, 2)), ("gain_limit_kg_per_week", gainMax),
                    ("age_band", c.Band.Name)));
        if (trend < 0 && c.Band.WeightLossKgPerWeekMax is { } lossMax && -trend > lossMax)
            return new Recommendation(WeightManagement, -trend > 1.5 * lossMax ? 1 : 2, Math.Min(1, -trend / (3 * lossMax)), "You are losing weight fast",
                $"Your filtered weight is {Kg(weight.WeightKg)} and falling by {Kg(-trend)} a week; more than {Kg(lossMax)} a week {c.BandText} " +
                "risks muscle loss and nutrient gaps. If it is not intended, please tell your care team.",
                Figures(("weight_kg", Round(weight.WeightKg, 1)), ("trend_kg_per_week", Round(trend, 2)), ("loss_limit_kg_per_week", lossMax),
                    ("age_band", c.Band.Name)));
        return null;
    }

    private static Recommendation? Nutrition(Context c)
    {
        if (c.Inputs.Nutrition is not { } food || !c.Enough(food.DaysWithData)) return null;
        var sex = c.Inputs.Sex;
        var problems = new List<string>(5);
        var figures = new List<(string, object)> { ("calories_kcal_per_day", Round(food.CaloriesKcalPerDay, 0)), ("protein_g_per_day", Round(food.ProteinGPerDay, 1)) };
        double worst = 0;
        var caloriesMin = c.Band.CaloriesKcalPerDayMin.For(sex);
        var caloriesMax = c.Band.CaloriesKcalPerDayMax.For(sex);
        if (food.CaloriesKcalPerDay < caloriesMin)
        {
            problems.Add($"{Whole(food.CaloriesKcalPerDay)} kcal a day is below the {Whole(caloriesMin)} kcal {c.BandText}");
            worst = Math.Max(worst, 1 - food.CaloriesKcalPerDay / caloriesMin);
            figures.Add(("calories_min_kcal_per_day", caloriesMin));
        }
        else if (food.CaloriesKcalPerDay > caloriesMax)
        {
            problems.Add($"{Whole(food.CaloriesKcalPerDay)} kcal a day is above the {Whole(caloriesMax)} kcal {c.BandText}");
            worst = Math.Max(worst, food.CaloriesKcalPerDay / caloriesMax - 1);
            figures.Add(("calories_max_kcal_per_day", caloriesMax));
        }
        // Protein per kg of body weight when the weights workload knows the weight, else the absolute floor.
        var proteinMin = c.Inputs.Weight is { } w ? c.Band.ProteinGPerKgPerDay * w.WeightKg : c.Band.ProteinGPerDayMin.For(sex);
        if (food.ProteinGPerDay < proteinMin)
        {
            problems.Add($"{Whole(food.ProteinGPerDay)} g of protein a day is below {Whole(proteinMin)} g" +
                         (c.Inputs.Weight is not null ? $" ({c.Band.ProteinGPerKgPerDay.ToString("0.##", CultureInfo.InvariantCulture)} g per kg)" : ""));
            worst = Math.Max(worst, 1 - food.ProteinGPerDay / proteinMin);
            figures.Add(("protein_min_g_per_day", Round(proteinMin, 1)));
        }
        if (food.FiberGPerDay is { } fiber && fiber < c.Band.FiberGPerDayMin.For(sex))
        {
            var fiberMin = c.Band.FiberGPerDayMin.For(sex);
            problems.Add($"{Whole(fiber)} g of fibre a day is below {Whole(fiberMin)} g");
            worst = Math.Max(worst, 0.5 * (1 - fiber / fiberMin));
            figures.Add(("fiber_g_per_day", Round(fiber, 1)));
            figures.Add(("fiber_min_g_per_day", fiberMin));
        }
        if (food.SodiumMgPerDay is { } sodium && sodium > c.Band.SodiumMgPerDayMax)
        {
            problems.Add($"{Whole(sodium)} mg of sodium a day is above {Whole(c.Band.SodiumMgPerDayMax)} mg");
            worst = Math.Max(worst, Math.Min(1, sodium / c.Band.SodiumMgPerDayMax - 1));
            figures.Add(("sodium_mg_per_day", Round(sodium, 0)));
            figures.Add(("sodium_max_mg_per_day", c.Band.SodiumMgPerDayMax));
        }
        if (food.SugarGPerDay is { } sugar && food.CaloriesKcalPerDay > 0 && 4 * sugar / food.CaloriesKcalPerDay > c.Band.SugarEnergyFractionMax)
        {
            var share = 4 * sugar / food.CaloriesKcalPerDay;
            problems.Add($"sugars give {Percent(share)} of your energy (above {Percent(c.Band.SugarEnergyFractionMax)})");
            worst = Math.Max(worst, Math.Min(1, share / c.Band.SugarEnergyFractionMax - 1));
            figures.Add(("sugar_g_per_day", Round(sugar, 1)));
            figures.Add(("sugar_energy_fraction", Round(share, 3)));
        }
        if (problems.Count == 0) return null;
        figures.Add(("days_with_data", food.DaysWithData));
        figures.Add(("age_band", c.Band.Name));
        var priority = problems.Count >= 3 || worst >= 0.5 ? 1 : problems.Count == 2 || worst >= 0.25 ? 2 : 3;
        return new Recommendation(PoorNutrition, priority, Math.Min(1, worst), "Improve the balance of your meals",
            $"From your meal logs {c.Over(food.DaysWithData)}: {string.Join("; ", problems)}.", Figures([.. figures]));
    }

    private static Recommendation? Water(Context c)
    {
        if (c.Inputs.WaterMl is not { } water || !c.Enough(water.DaysWithData)) return null;
        var target = c.Band.WaterMlPerDay.For(c.Inputs.Sex);
        if (water.PerDayMean >= target) return null;
        var shortfall = 1 - water.PerDayMean / target;
        return new Recommendation(LowWater, Level(shortfall, 0.5, 0.25), shortfall, "Drink more water",
            $"You logged {Litres(water.PerDayMean)} of water a day {c.Over(water.DaysWithData)}; about {Litres(target)} a day from drinks " +
            $"is adequate {c.BandText}{(c.Inputs.Sex is "female" or "male" ? $" ({c.Inputs.Sex})" : "")}.",
            Figures(("water_ml_per_day", Round(water.PerDayMean, 0)), ("target_water_ml_per_day", target), ("days_with_data", water.DaysWithData),
                ("age_band", c.Band.Name)));
    }

    /// <summary>1 at or above <paramref name="high"/>, 2 at or above <paramref name="medium"/>, else 3.</summary>
    private static int Level(double amount, double high, double medium) => amount >= high ? 1 : amount >= medium ? 2 : 3;

    private static IReadOnlyDictionary<string, object> Figures(params (string Key, object Value)[] figures)
    {
        var d = new Dictionary<string, object>(figures.Length, StringComparer.Ordinal);
        foreach (var (k, v) in figures) d[k] = v;
        return d;
    }

    private static double Round(double v, int digits) => Math.Round(v, digits, MidpointRounding.AwayFromZero);
    private static string Whole(double v) => Math.Round(v, MidpointRounding.AwayFromZero).ToString("#,0", CultureInfo.InvariantCulture);
    private static string Kg(double kg) => kg.ToString("0.0#", CultureInfo.InvariantCulture) + " kg";
    private static string Litres(double ml) => (ml / 1000).ToString("0.0#", CultureInfo.InvariantCulture) + " L";
    private static string Percent(double share) => (share * 100).ToString("0", CultureInfo.InvariantCulture) + " %";

    private static string Hours(double hours)
    {
        var totalMinutes = (int)Math.Round(hours * 60, MidpointRounding.AwayFromZero);
        return totalMinutes % 60 == 0 ? $"{totalMinutes / 60} h" : $"{totalMinutes / 60} h {totalMinutes % 60:00} min";
    }
}
