namespace StreamHealth.CallLogs.Extraction;

internal sealed partial class CallWork
{
    private static string? ServingUnitOf(ReadOnlySpan<char> w) => w switch
    {
        "slice" or "slices" or "rebanada" or "rebanadas" => "slice",
        "cup" or "cups" or "mug" or "mugs" or "taza" or "tazas" or "cafecito" => "cup",
        "glass" or "glasses" or "vaso" or "vasos" => "glass",
        "bowl" or "bowls" or "tazon" or "plato hondo" => "bowl",
        "piece" or "pieces" or "pieza" or "piezas" or "pedazo" or "pedazos" => "piece",
        "plate" or "plates" or "plato" or "platos" or "plateful" => "plate",
        "bag" or "bags" or "bolsa" or "bolsita" => "bag",
        "can" or "cans" or "lata" or "latas" => "can",
        "bottle" or "bottles" or "botella" or "botellas" => "bottle",
        "handful" or "handfuls" or "punado" => "handful",
        "spoon" or "spoons" or "spoonful" or "spoonfuls" or "cuchara" => "spoon",
        "tablespoon" or "tablespoons" or "tbsp" or "cucharada" or "cucharadas" => "tablespoon",
        "teaspoon" or "teaspoons" or "tsp" or "cucharadita" or "cucharaditas" => "teaspoon",
        "serving" or "servings" or "porcion" or "porciones" => "serving",
        "scoop" or "scoops" => "scoop",
        "box" or "carton" => "box",
        "g" or "grams" or "gramos" => "g",
        "oz" or "ounce" or "ounces" or "onzas" => "oz",
        _ => null,
    };

    private static bool IsFoodAdjective(ReadOnlySpan<char> w) => w is "big" or "small" or "large" or "whole" or "full" or "hot" or "cold"
        or "fresh" or "plain" or "warm" or "extra" or "medium" or "grande" or "chico" or "pequeno" or "huge" or "tiny" or "nice" or "good"
        or "the" or "my" or "her" or "his";

    /// <summary>"two slices of toast", "a big plate of spaghetti", "un vaso de leche", "half a sandwich", "two eggs",
    /// "a banana" (1). "a little oatmeal" and "some rice" have no quantity.</summary>
    private (double? Quantity, string? Unit) FoodQuantity(Mention mention, int turnStart)
    {
        var j = mention.TokenStart - 1;
        while (j >= turnStart && IsFoodAdjective(call.Text(j)) && !call.Is(j, "the")) j--;
        if (j < turnStart || call.MentionAt[j] >= 0) return (null, null);
        if (call.Text(j) is "little" or "bit" or "some" or "more" or "poco" or "lot" or "few") return (null, null);
        string? unit = null;
        if (call.Text(j) is "of" or "de")
        {
            j--;
            while (j >= turnStart && IsFoodAdjective(call.Text(j))) j--;
            if (j < turnStart || (unit = ServingUnitOf(call.Text(j))) is null) return (null, null);
            j--;
            while (j >= turnStart && IsFoodAdjective(call.Text(j))) j--;
            if (j >= turnStart && NumberEndingAt(j, turnStart, out var counted)) return (counted, unit);
            return (null, unit);
        }
        if (ServingUnitOf(call.Text(j)) is not null) return (null, null);
        return NumberEndingAt(j, turnStart, out var quantity) && quantity <= 100 ? (quantity, null) : (null, null);
    }

    /// <summary>A meal word at token j: "for breakfast", "desayuné", "en la comida", "dinner", "snack", and for food
    /// "this morning" (breakfast) and "in the afternoon" (snack).</summary>
    private Meal? MealCueAt(int j, bool forFood)
    {
        var w = call.Text(j);
        switch (w)
        {
            case "breakfast" or "desayuno" or "desayune" or "desayunar" or "desayunamos" or "brunch" or "desayuna": return Meal.Breakfast;
            case "lunch" or "almuerzo" or "almorce" or "almorzar" or "lunchtime" or "comida": return Meal.Lunch;
            case "dinner" or "supper" or "cena" or "cene" or "cenar" or "dinnertime": return Meal.Dinner;
            case "snack" or "snacks" or "merienda" or "botana" or "snacked": return Meal.Snack;
            case "afternoon" when forFood: return Meal.Snack;
            case "morning" when forFood && (call.Is(j - 1, "this") || call.Is(j - 1, "esta")): return Meal.Breakfast;
            case "manana" when forFood && call.Is(j - 1, "esta"): return Meal.Breakfast;
        }
        return null;
    }

    /// <summary>The meal of a food: the nearest meal word in its comma clause; else the meal carried from the previous
    /// clause of the sentence ("For dinner, pasta"; "…for dinner, and ice cream after"); null when none.</summary>
    private Meal? MealOf(int token, int turnStart, int turnEnd)
    {
        var sentence = call.Tokens[token].Sentence;
        var clause = call.Clause[token];
        Meal? best = null;
        var bestDistance = int.MaxValue;
        for (var j = token - 1; j >= turnStart && call.Clause[j] == clause; j--)
            if (MealCueAt(j, true) is { } meal && token - j < bestDistance) { best = meal; bestDistance = token - j; break; }
        for (var j = token + 1; j < turnEnd && call.Clause[j] == clause; j++)
            if (MealCueAt(j, true) is { } meal) { if (j - token < bestDistance) best = meal; break; }
        if (best is not null) return best;
        // Carry: the closest earlier clause of the sentence with a meal word.
        for (var j = token - 1; j >= turnStart && call.Tokens[j].Sentence == sentence; j--)
            if (MealCueAt(j, true) is { } meal) return meal;
        return null;
    }
}
