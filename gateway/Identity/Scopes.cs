using System.Collections.Frozen;

namespace StreamHealth.Gateway.Identity;

/// <summary>What a service credential (an X-Api-Key of Gateway:ApiKeys) may do. A person's own bearer token needs no
/// scope: it reaches that person's data and nobody else's.</summary>
public static class Scopes
{
    /// <summary>Read any person's weights (a clinic system, the dashboard's local key).</summary>
    public const string WeightsRead = "weights:read";
    /// <summary>Send any person's weight measurements (a scale integration).</summary>
    public const string WeightsWrite = "weights:write";
    public const string CgmRead = "cgm:read";
    /// <summary>Upload any person's CGM exports, and store datasets as this service.</summary>
    public const string CgmWrite = "cgm:write";
    /// <summary>Read any person's health metrics (steps, heart rate, sleep, weight, water, calories).</summary>
    public const string MetricsRead = "metrics:read";
    /// <summary>Record any person's health metrics (a fitness tracker integration).</summary>
    public const string MetricsWrite = "metrics:write";
    /// <summary>Read any person's recommendations and generated insights (a coaching service).</summary>
    public const string InsightsRead = "insights:read";
    /// <summary>Read any person's nutrition logs (meals with calories and macronutrients).</summary>
    public const string NutritionRead = "nutrition:read";
    /// <summary>Log any person's meals (a food-diary integration).</summary>
    public const string NutritionWrite = "nutrition:write";
    /// <summary>Read any person's call-log check-ins and the health entries (medications, foods, symptoms) extracted from them.</summary>
    public const string CheckinsRead = "checkins:read";
    /// <summary>Read any person's health goals and their progress.</summary>
    public const string GoalsRead = "goals:read";
    /// <summary>Set any person's health goals (a coaching integration).</summary>
    public const string GoalsWrite = "goals:write";
    /// <summary>Read weights, CGM and forecasts of the people listed in the key's CareTeamUsers, and no one else.</summary>
    public const string CareTeamRead = "care-team:read";
    /// <summary>Read the water network's nodes, metrics, history and status (operators' dashboards).</summary>
    public const string NetworkRead = "network:read";
    /// <summary>Register and describe the water network's nodes (operators).</summary>
    public const string NetworkWrite = "network:write";
    /// <summary>Forecast cache management and dataset deletion, and every stored dataset.</summary>
    public const string Admin = "admin";

    public static readonly FrozenSet<string> All =
        new[] { WeightsRead, WeightsWrite, CgmRead, CgmWrite, MetricsRead, MetricsWrite, NutritionRead, NutritionWrite, GoalsRead, GoalsWrite, CheckinsRead, InsightsRead, NetworkRead, NetworkWrite, CareTeamRead, Admin }.ToFrozenSet(StringComparer.Ordinal);
}
