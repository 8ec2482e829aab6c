using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Insights.Nutrition;

/// <summary>One meal's energy and nutrients, each in the unit its name carries; the optional ones are null when not logged.</summary>
public readonly record struct MealNutrients(double CaloriesKcal, double ProteinG, double CarbohydrateG, double FatG,
    double? FiberG, double? SugarG, double? SodiumMg);

/// <summary>One nutrient field: its name in the API, the topic and the table, and the plausible range of one meal.</summary>
public sealed record NutrientField(string Name, double Min, double Max, string Unit, bool Required);

/// <summary>The rules of a logged meal, shared by the gateway (400 naming the field) and the insights.nutrition sink (a
/// record produced past the gateway is dead-lettered by the same rule). Pure: no I/O.</summary>
public static class NutritionRules
{
    public const int MaxDescriptionLength = 500;
    public const string MealsText = "breakfast, lunch, dinner or snack";

    /// <summary>Atwater's general factors: energy per gram of protein, carbohydrate and fat.</summary>
    public const double KcalPerGramProtein = 4, KcalPerGramCarbohydrate = 4, KcalPerGramFat = 9;

    /// <summary>How far the macronutrients' Atwater energy may exceed the stated calories: by 25 % of the calories plus
    /// 50 kcal. Labels may round calories and state them up to 20 % low (the FDA's tolerance), fibre counted inside
    /// carbohydrate yields about 2 kcal/g rather than 4, and small snacks round to whole grams; beyond that margin one
    /// number is a typo or in the wrong unit (kJ for kcal, mg for g). No lower bound: alcohol (7 kcal/g) and polyols
    /// carry energy the three macros do not.</summary>
    public const double EnergyToleranceFraction = 0.25, EnergyToleranceKcal = 50;

    /// <summary>Sugars are part of carbohydrate: they may exceed it by rounding only.</summary>
    public const double SugarRoundingG = 1;

    /// <summary>Per-meal plausibility (our choice: a feast is ~5,000 kcal; beyond these a value is a typo or a wrong unit).
    /// Sodium: 20 g (50 g of salt) in one meal is already past a lethal dose's order of magnitude.</summary>
    public static readonly IReadOnlyList<NutrientField> Fields =
    [
        new("calories_kcal", 0, 10_000, "kcal", true),
        new("protein_g", 0, 2_000, "g", true),
        new("carbohydrate_g", 0, 2_000, "g", true),
        new("fat_g", 0, 2_000, "g", true),
        new("fiber_g", 0, 2_000, "g", false),
        new("sugar_g", 0, 2_000, "g", false),
        new("sodium_mg", 0, 20_000, "mg", false),
    ];

    public static bool IsMeal(string? meal) => meal is "breakfast" or "lunch" or "dinner" or "snack";

    public static string? CheckMeal(string? meal) =>
        meal is null ? "meal is required" : IsMeal(meal) ? null : $"meal = {InputRules.Quote(meal)}: must be {MealsText}";

    public static string? CheckDescription(string? description) =>
        InputRules.CheckText("description", description, MaxDescriptionLength, required: true);

    /// <summary>Each field's range, then the consistency of the whole meal; every problem as (field, message).</summary>
    public static List<(string Field, string Problem)> Check(MealNutrients meal)
    {
        var problems = new List<(string, string)>();
        for (var i = 0; i < Fields.Count; i++)
        {
            var field = Fields[i];
            if (Value(meal, i) is { } value && InputRules.CheckRange(field.Name, value, field.Min, field.Max, field.Unit) is { } problem)
                problems.Add((field.Name, problem));
        }
        if (problems.Count > 0) return problems;
        var macroKcal = MacroEnergyKcal(meal);
        var allowedKcal = meal.CaloriesKcal * (1 + EnergyToleranceFraction) + EnergyToleranceKcal;
        if (macroKcal > allowedKcal)
            problems.Add(("calories_kcal", $"calories_kcal = {Format(meal.CaloriesKcal)}: the macronutrients alone carry {Format(macroKcal)} kcal " +
                                           $"(4 kcal/g protein and carbohydrate, 9 kcal/g fat); at most {Format(allowedKcal)} kcal is accepted for this value " +
                                           "(is a nutrient in the wrong unit?)"));
        if (meal.SugarG is { } sugar && sugar > meal.CarbohydrateG + SugarRoundingG)
            problems.Add(("sugar_g", $"sugar_g = {Format(sugar)}: sugars are part of carbohydrate_g ({Format(meal.CarbohydrateG)} g)"));
        return problems;
    }

    /// <summary>The energy of protein, carbohydrate and fat by Atwater's factors, in kcal.</summary>
    public static double MacroEnergyKcal(MealNutrients meal) =>
        KcalPerGramProtein * meal.ProteinG + KcalPerGramCarbohydrate * meal.CarbohydrateG + KcalPerGramFat * meal.FatG;

    /// <summary>Why a stored meal breaks the rules (the first problem), or null.</summary>
    public static string? Refuse(string meal, string description, MealNutrients nutrients) =>
        CheckMeal(meal) ?? CheckDescription(description) ?? (Check(nutrients) is [var first, ..] ? first.Problem : null);

    /// <summary>What makes a retry the same meal log: equal under one log_id is a retry, different is a conflict. Hashed:
    /// the description alone may be 500 characters.</summary>
    public static string Fingerprint(string meal, long eatenAtUnixMs, string description, MealNutrients n)
    {
        var text = string.Create(CultureInfo.InvariantCulture,
            $"{meal}|{eatenAtUnixMs}|{n.CaloriesKcal:R}|{n.ProteinG:R}|{n.CarbohydrateG:R}|{n.FatG:R}|{n.FiberG:R}|{n.SugarG:R}|{n.SodiumMg:R}|{description}");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>The meal from values in the order of <see cref="Fields"/> (the required ones present).</summary>
    public static MealNutrients FromValues(IReadOnlyList<double?> values) =>
        new(values[0]!.Value, values[1]!.Value, values[2]!.Value, values[3]!.Value, values[4], values[5], values[6]);

    /// <summary>The value of <see cref="Fields"/>[<paramref name="index"/>] in <paramref name="meal"/>.</summary>
    public static double? Value(MealNutrients meal, int index) => index switch
    {
        0 => meal.CaloriesKcal,
        1 => meal.ProteinG,
        2 => meal.CarbohydrateG,
        3 => meal.FatG,
        4 => meal.FiberG,
        5 => meal.SugarG,
        6 => meal.SodiumMg,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    private static string Format(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
