namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>Confluent Schema Registry's compatibility levels: which earlier versions of a subject a new schema is checked
/// against, and in which direction (BACKWARD: the new schema reads the old data; FORWARD: the old schemas read the new
/// data; FULL: both; TRANSITIVE: against every earlier version, else only the latest).</summary>
public enum CompatibilityLevel
{
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// <summary>The wire names of <see cref="CompatibilityLevel"/> (BACKWARD_TRANSITIVE, ...), as the registry's REST API and its
/// config table spell them.</summary>
public static class CompatibilityLevels
{
    /// <summary>Confluent's default when neither the subject nor the registry has a level set.</summary>
    public const CompatibilityLevel Default = CompatibilityLevel.Backward;

    public static string ToWire(this CompatibilityLevel level) => level switch
    {
        CompatibilityLevel.None => "NONE",
        CompatibilityLevel.Backward => "BACKWARD",
        CompatibilityLevel.BackwardTransitive => "BACKWARD_TRANSITIVE",
        CompatibilityLevel.Forward => "FORWARD",
        CompatibilityLevel.ForwardTransitive => "FORWARD_TRANSITIVE",
        CompatibilityLevel.Full => "FULL",
        CompatibilityLevel.FullTransitive => "FULL_TRANSITIVE",
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, null),
    };

    /// <summary>Parses a wire name, case-insensitively as Confluent does.</summary>
    public static bool TryParse(string? text, out CompatibilityLevel level)
    {
        foreach (var candidate in Enum.GetValues<CompatibilityLevel>())
        {
            if (string.Equals(candidate.ToWire(), text, StringComparison.OrdinalIgnoreCase))
            {
                level = candidate;
                return true;
            }
        }
        level = default;
        return false;
    }

    /// <summary>The new schema must be able to read data written with the earlier versions.</summary>
    public static bool ChecksBackward(this CompatibilityLevel level) =>
        level is CompatibilityLevel.Backward or CompatibilityLevel.BackwardTransitive or CompatibilityLevel.Full or CompatibilityLevel.FullTransitive;

    /// <summary>The earlier versions must be able to read data written with the new schema.</summary>
    public static bool ChecksForward(this CompatibilityLevel level) =>
        level is CompatibilityLevel.Forward or CompatibilityLevel.ForwardTransitive or CompatibilityLevel.Full or CompatibilityLevel.FullTransitive;

    /// <summary>Every earlier version counts, not only the latest.</summary>
    public static bool IsTransitive(this CompatibilityLevel level) =>
        level is CompatibilityLevel.BackwardTransitive or CompatibilityLevel.ForwardTransitive or CompatibilityLevel.FullTransitive;
}
