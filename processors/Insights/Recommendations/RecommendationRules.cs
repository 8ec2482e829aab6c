using Microsoft.Extensions.Configuration;

namespace StreamHealth.Insights.Recommendations;

/// <summary>A threshold that depends on sex; <see cref="Unspecified"/> applies when the profile gives none (or "other"),
/// chosen so that a rule never fires on a person it would not fire on whatever their sex.</summary>
public sealed class SexSpecific
{
    public double Female { get; set; }
    public double Male { get; set; }
    public double Unspecified { get; set; }

    public double For(string? sex) => sex switch
    {
        "female" => Female,
        "male" => Male,
        _ => Unspecified,
    };
}

/// <summary>The thresholds of every rule family for one age band (inclusive ages in whole years). Units are in the
/// names; a null threshold switches its check off for the band (e.g. weight-trend rules for growing children).</summary>
public sealed class AgeBandRules
{
    public string Name { get; set; } = "";
    public int MinAgeYears { get; set; }
    public int MaxAgeYears { get; set; }

    public double StepsPerDay { get; set; }
    public double SleepHoursMin { get; set; }
    /// <summary>Mean daily minimum heart rate (the resting-rate estimate) at or above which the rate is called elevated.</summary>
    public double RestingHeartRateElevatedBpm { get; set; }
    /// <summary>… and at or above which it is high (tachycardia range): the person is advised to see a clinician.</summary>
    public double RestingHeartRateHighBpm { get; set; }
    public SexSpecific WaterMlPerDay { get; set; } = new();
    public SexSpecific CaloriesKcalPerDayMin { get; set; } = new();
    public SexSpecific CaloriesKcalPerDayMax { get; set; } = new();
    public double ProteinGPerKgPerDay { get; set; }
    /// <summary>Protein floor when no body weight is known.</summary>
    public SexSpecific ProteinGPerDayMin { get; set; } = new();
    public SexSpecific FiberGPerDayMin { get; set; } = new();
    public double SodiumMgPerDayMax { get; set; }
    /// <summary>Logged sugars as a share of energy (4 kcal/g): logs carry total sugars, which overstate the free sugars
    /// guidelines limit, so the default is above the WHO's 10 %.</summary>
    public double SugarEnergyFractionMax { get; set; }
    public double? WeightGainKgPerWeekMax { get; set; }
    public double? WeightLossKgPerWeekMax { get; set; }
}

/// <summary>The recommendation rules as data: section <c>Insights:Recommendations</c>, whose defaults ship in
/// recommendation-rules.json beside the binary (with their sources). A clinic changes thresholds there or through
/// STREAMHEALTH_Insights__Recommendations__… variables, not in code.</summary>
public sealed class RecommendationRules
{
    public const string Section = "Insights:Recommendations";
    public const string FileName = "recommendation-rules.json";

    /// <summary>Most recommendations one answer carries (the top 5).</summary>
    public int MaxResults { get; set; } = 5;
    /// <summary>Days with data a rule needs before it speaks (fewer when the window itself is shorter).</summary>
    public int MinDaysWithData { get; set; } = 3;
    /// <summary>Age assumed when the profile has no date of birth; the reason then says the age is unknown.</summary>
    public int DefaultAgeYears { get; set; } = 40;
    /// <summary>A weight trend older than this is not used (the Kalman trend of a person who stopped weighing).</summary>
    public int WeightTrendMaxAgeDays { get; set; } = 14;
    public List<AgeBandRules> AgeBands { get; set; } = [];

    public AgeBandRules? BandFor(int ageYears)
    {
        foreach (var band in AgeBands)
            if (ageYears >= band.MinAgeYears && ageYears <= band.MaxAgeYears) return band;
        return null;
    }

    /// <summary>Binds the section; every problem names its setting (start-up refuses rules that could not be applied).</summary>
    public static RecommendationRules Bind(IConfiguration configuration)
    {
        var rules = new RecommendationRules();
        configuration.GetSection(Section).Bind(rules);
        var errors = rules.Validate();
        if (errors.Count > 0)
            throw new StreamHealth.Runtime.Configuration.ConfigurationException(string.Join("; ", errors));
        return rules;
    }

    /// <summary>The defaults file, for tests and tools that have no host configuration.</summary>
    public static RecommendationRules LoadDefaults(string? path = null) =>
        Bind(new ConfigurationBuilder().AddJsonFile(path ?? Path.Combine(AppContext.BaseDirectory, FileName), optional: false).Build());

    public List<string> Validate()
    {
        var errors = new List<string>();
        if (MaxResults is < 1 or > 20) errors.Add($"{Section}:MaxResults = {MaxResults}: must be 1-20");
        if (MinDaysWithData is < 1 or > 90) errors.Add($"{Section}:MinDaysWithData = {MinDaysWithData}: must be 1-90");
        if (WeightTrendMaxAgeDays is < 1 or > 365) errors.Add($"{Section}:WeightTrendMaxAgeDays = {WeightTrendMaxAgeDays}: must be 1-365");
        if (AgeBands.Count == 0) errors.Add($"{Section}:AgeBands is empty");
        var ordered = AgeBands.OrderBy(b => b.MinAgeYears).ToList();
        for (var i = 0; i < ordered.Count; i++)
        {
            var b = ordered[i];
            var at = $"{Section}:AgeBands '{b.Name}'";
            if (b.MinAgeYears < 0 || b.MaxAgeYears < b.MinAgeYears) errors.Add($"{at}: ages {b.MinAgeYears}-{b.MaxAgeYears} are not a range");
            if (i > 0 && b.MinAgeYears != ordered[i - 1].MaxAgeYears + 1)
                errors.Add($"{at}: starts at {b.MinAgeYears}, but the band before ends at {ordered[i - 1].MaxAgeYears} (bands must tile the ages)");
            if (b.StepsPerDay <= 0 || b.SleepHoursMin <= 0 || b.RestingHeartRateElevatedBpm <= 0 || b.RestingHeartRateHighBpm < b.RestingHeartRateElevatedBpm)
                errors.Add($"{at}: steps, sleep and heart-rate thresholds must be positive, High ≥ Elevated");
            if (b.SodiumMgPerDayMax <= 0 || b.SugarEnergyFractionMax is <= 0 or >= 1 || b.ProteinGPerKgPerDay <= 0)
                errors.Add($"{at}: sodium, sugar share (0-1) and protein per kg must be positive");
            foreach (var (name, s) in new[] { ("WaterMlPerDay", b.WaterMlPerDay), ("CaloriesKcalPerDayMin", b.CaloriesKcalPerDayMin),
                         ("CaloriesKcalPerDayMax", b.CaloriesKcalPerDayMax), ("ProteinGPerDayMin", b.ProteinGPerDayMin), ("FiberGPerDayMin", b.FiberGPerDayMin) })
                if (s.Female <= 0 || s.Male <= 0 || s.Unspecified <= 0) errors.Add($"{at}: {name} needs Female, Male and Unspecified > 0");
        }
        if (BandFor(DefaultAgeYears) is null) errors.Add($"{Section}:DefaultAgeYears = {DefaultAgeYears}: in no age band");
        return errors;
    }
}
