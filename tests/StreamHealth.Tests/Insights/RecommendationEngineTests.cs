using StreamHealth.Insights.Recommendations;
using static StreamHealth.Insights.Recommendations.RecommendationEngine;

namespace StreamHealth.Tests.Insights;

/// <summary>The rule families against a table (the shipped recommendation-rules.json): which rules fire, with which
/// priority, in which order, for people of different ages and sexes.</summary>
public sealed class RecommendationEngineTests
{
    private static readonly RecommendationRules Rules = RecommendationRules.LoadDefaults();

    private static DailyFigures Days(double perDay, int days = 7) => new(days, perDay);

    public static TheoryData<string, RecommendationInputs, string[]> Table => new()
    {
        // Nothing known: nothing said.
        { "no data", new(7, 35, "female"), [] },
        // Steps: 8,000 for 18-64, 6,000 from 65. 3,000 is a 62 % shortfall (priority 1), 5,000 38 % (2), 7,500 6 % (3).
        { "steps 3000 at 35", new(7, 35, "male", Steps: Days(3000)), [$"{LowSteps}:1"] },
        { "steps 5000 at 35", new(7, 35, "male", Steps: Days(5000)), [$"{LowSteps}:2"] },
        { "steps 7500 at 35", new(7, 35, "male", Steps: Days(7500)), [$"{LowSteps}:3"] },
        { "steps 6500 at 70: enough from 65", new(7, 70, "male", Steps: Days(6500)), [] },
        { "steps 6500 at 50", new(7, 50, "male", Steps: Days(6500)), [$"{LowSteps}:3"] },
        { "steps 10500 at 15: below 10,000? no", new(7, 15, "female", Steps: Days(10500)), [] },
        // Too few days with data: silent (3 needed), unless the window itself is shorter.
        { "steps on 2 of 7 days", new(7, 35, "male", Steps: Days(1000, 2)), [] },
        { "steps on the 1 day of a 1-day window", new(1, 35, "male", Steps: Days(1000, 1)), [$"{LowSteps}:1"] },
        // Sleep: 7 h for adults, 8 h for 13-17, 9 h under 13.
        { "sleep 5 h at 30", new(7, 30, null, SleepHours: Days(5)), [$"{InsufficientSleep}:1"] },
        { "sleep 6 h at 30", new(7, 30, null, SleepHours: Days(6)), [$"{InsufficientSleep}:2"] },
        { "sleep 7.5 h at 30", new(7, 30, null, SleepHours: Days(7.5)), [] },
        { "sleep 7.5 h at 16", new(7, 16, null, SleepHours: Days(7.5)), [$"{InsufficientSleep}:3"] },
        // Resting heart rate: elevated from 80, high from 100 (adults); children from 100/120.
        { "resting 85 bpm at 40", new(7, 40, "female", RestingHeartRateBpm: Days(85)), [$"{ElevatedRestingHeartRate}:2"] },
        { "resting 104 bpm at 40", new(7, 40, "female", RestingHeartRateBpm: Days(104)), [$"{ElevatedRestingHeartRate}:1"] },
        { "resting 95 bpm at 10", new(7, 10, "female", RestingHeartRateBpm: Days(95)), [] },
        // Water: 1.6 L women, 2.0 L men; without sex the lower figure.
        { "water 1.7 L woman", new(7, 40, "female", WaterMl: Days(1700)), [] },
        { "water 1.7 L man", new(7, 40, "male", WaterMl: Days(1700)), [$"{LowWater}:3"] },
        { "water 1.7 L sex unknown", new(7, 40, null, WaterMl: Days(1700)), [] },
        { "water 0.6 L", new(7, 40, "male", WaterMl: Days(600)), [$"{LowWater}:1"] },
        // Weight trend (Kalman): gain over 0.25 kg/week, loss over 1.0 (0.5 from 65); none under 18; a stale trend is unused.
        { "gain 0.4 kg/week", new(7, 40, null, Weight: new WeightTrend(90, 0.4, 1)), [$"{WeightManagement}:2"] },
        { "gain 0.6 kg/week", new(7, 40, null, Weight: new WeightTrend(90, 0.6, 1)), [$"{WeightManagement}:1"] },
        { "loss 0.7 kg/week at 40", new(7, 40, null, Weight: new WeightTrend(90, -0.7, 1)), [] },
        { "loss 0.7 kg/week at 70", new(7, 70, null, Weight: new WeightTrend(70, -0.7, 1)), [$"{WeightManagement}:2"] },
        { "gain 1 kg/week at 15", new(7, 15, null, Weight: new WeightTrend(60, 1.0, 1)), [] },
        { "gain with a 30-day-old trend", new(7, 40, null, Weight: new WeightTrend(90, 0.6, 30)), [] },
        // Nutrition: calories by age and sex, protein per kg when the weight is known, fibre, sodium, sugars.
        { "balanced man", new(7, 30, "male", Nutrition: new NutritionFigures(7, 2600, 90, 40, 60, 2000)), [] },
        { "man on 1,900 kcal", new(7, 30, "male", Nutrition: new NutritionFigures(7, 1900, 90, 40, 60, 2000)), [$"{PoorNutrition}:3"] },
        { "woman on 1,900 kcal", new(7, 30, "female", Nutrition: new NutritionFigures(7, 1900, 90, 40, 60, 2000)), [] },
        { "salt and low fibre", new(7, 30, "female", Nutrition: new NutritionFigures(7, 2000, 80, 10, 40, 3500)), [$"{PoorNutrition}:1"] },
        { "protein per kg at 120 kg", new(7, 30, "male", Nutrition: new NutritionFigures(7, 2600, 80, 40, 60, 2000), Weight: new WeightTrend(120, 0, 1)),
            [$"{PoorNutrition}:3"] },
        // Top 5 of six, by priority then severity.
        { "everything at once", new(7, 45, "male", Steps: Days(2000), SleepHours: Days(6.2), RestingHeartRateBpm: Days(88), WaterMl: Days(1200),
              Nutrition: new NutritionFigures(7, 3400, 50, 10, 150, 4000), Weight: new WeightTrend(110, 0.45, 2)),
            // Priority 2 by severity: weight 0.45 (0.45 of 4 × 0.25 kg/week), heart rate 0.40 (8 of 20 bpm), water 0.40 (tie: rule
            // name), then sleep 0.11 (0.8 of 7 h): sixth, left out.
            [$"{LowSteps}:1", $"{PoorNutrition}:1", $"{WeightManagement}:2", $"{ElevatedRestingHeartRate}:2", $"{LowWater}:2"] },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public void Rules_fire_as_the_table_says(string name, RecommendationInputs inputs, string[] expected)
    {
        var found = Evaluate(Rules, inputs);
        Assert.True(expected.SequenceEqual(found.Select(r => $"{r.Rule}:{r.Priority}")),
            $"{name}: expected [{string.Join(", ", expected)}], got [{string.Join(", ", found.Select(r => $"{r.Rule}:{r.Priority}"))}]");
        foreach (var r in found)
        {
            Assert.False(string.IsNullOrWhiteSpace(r.Reason));
            Assert.InRange(r.Severity, 0, 1);
            Assert.True(r.Figures.ContainsKey("age_band"), $"{r.Rule} names the age band it used");
        }
    }

    [Fact]
    public void Reasons_quote_the_figures_and_say_when_the_age_is_assumed()
    {
        var known = Evaluate(Rules, new(7, 70, "female", Steps: Days(4000, 5))).Single();
        Assert.Equal("You averaged 4,000 steps a day over the last 7 days (5 days with data); the target for ages 65+ is 6,000. " +
                     "About 2,000 more steps a day (roughly 20 minutes of brisk walking) would reach it.", known.Reason);
        Assert.Equal(4000.0, known.Figures["steps_per_day"]);
        Assert.Equal(6000.0, known.Figures["target_steps_per_day"]);
        var unknown = Evaluate(Rules, new(7, null, null, Steps: Days(4000))).Single();
        Assert.Contains("no date of birth in the profile; 40 assumed", unknown.Reason);
        Assert.Equal("40-64", unknown.Figures["age_band"]);
    }

    [Fact]
    public void Evaluation_is_deterministic_and_never_exceeds_the_configured_count()
    {
        var inputs = new RecommendationInputs(30, 45, "male", Steps: Days(2000, 30), SleepHours: Days(5, 30), RestingHeartRateBpm: Days(105, 30),
            WaterMl: Days(300, 30), Nutrition: new NutritionFigures(30, 4000, 20, 5, 200, 5000), Weight: new WeightTrend(110, 1.5, 1));
        var first = Evaluate(Rules, inputs);
        Assert.Equal(5, first.Count);
        Assert.Equal(first.Select(r => r.Reason), Evaluate(Rules, inputs).Select(r => r.Reason));
        Assert.All(first, r => Assert.Equal(1, r.Priority));
    }

    [Fact]
    public void Rules_that_do_not_tile_the_ages_or_lack_a_threshold_are_refused_naming_the_band()
    {
        var broken = RecommendationRules.LoadDefaults();
        broken.AgeBands.RemoveAt(1);   // 13-17 missing: 0-12 then 18-39
        broken.AgeBands[0].WaterMlPerDay.Male = 0;
        var errors = broken.Validate();
        Assert.Contains(errors, e => e.Contains("'18-39': starts at 18, but the band before ends at 12"));
        Assert.Contains(errors, e => e.Contains("'0-12': WaterMlPerDay needs Female, Male and Unspecified > 0"));
    }
}
