using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>Unit conversion to kilograms with the exact international definitions.</summary>
public static class WeightUnits
{
    /// <summary>The international avoirdupois pound (1959), exact.</summary>
    public const double KgPerPound = 0.45359237;

    /// <summary>14 pounds, exact.</summary>
    public const double KgPerStone = 14 * KgPerPound;

    /// <summary>False for <see cref="WeightUnit.Unspecified"/> and any unit a newer producer may add:
    /// guessing a unit is how "lb entered as kg" errors are born.</summary>
    public static bool TryToKilograms(double value, WeightUnit unit, out double kilograms)
    {
        switch (unit)
        {
            case WeightUnit.Kg: kilograms = value; return true;
            case WeightUnit.Lb: kilograms = value * KgPerPound; return true;
            case WeightUnit.St: kilograms = value * KgPerStone; return true;
            default: kilograms = 0; return false;
        }
    }

    public static double FromKilograms(double kilograms, WeightUnit unit) => unit switch
    {
        WeightUnit.Kg => kilograms,
        WeightUnit.Lb => kilograms / KgPerPound,
        WeightUnit.St => kilograms / KgPerStone,
        _ => throw new ArgumentOutOfRangeException(nameof(unit), unit, "unit must be kg, lb or st"),
    };
}
