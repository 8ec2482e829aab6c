namespace StreamHealth.Cgm.Formats;

/// <summary>The export formats StreamHealth reads. The names are the <c>source_format</c> values on
/// <c>cgm.readings</c> and in PostgreSQL.</summary>
public enum CgmFormat
{
    Unified,
    DexcomClarity,
    LibreView,
    MedtronicCareLink,
    NightscoutJson,
    NightscoutCsv,
    /// <summary>GlucoBench / iglu research layout <c>id,time,gl</c>: several people in one file.</summary>
    GlucoBench,
}

public static class CgmFormatNames
{
    public static string Name(this CgmFormat format) => format switch
    {
        CgmFormat.Unified => "unified",
        CgmFormat.DexcomClarity => "dexcom_clarity",
        CgmFormat.LibreView => "libreview",
        CgmFormat.MedtronicCareLink => "medtronic_carelink",
        CgmFormat.NightscoutJson => "nightscout_json",
        CgmFormat.NightscoutCsv => "nightscout_csv",
        CgmFormat.GlucoBench => "glucobench_csv",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    /// <summary>Whether the format's times are absolute (Nightscout: epoch milliseconds) rather than the device's local
    /// wall clock, which the vendor exports (Clarity, LibreView, CareLink) and the unified CSV carry.</summary>
    public static bool IsUtc(this CgmFormat format) => format is CgmFormat.NightscoutJson or CgmFormat.NightscoutCsv;
}

/// <summary>A file (or one of its lines) that cannot be read. <see cref="Line"/> is 1-based (0 when the
/// problem is not tied to a line), and the message names the line and the problem.</summary>
public class CgmFormatException(CgmFormat? format, long line, string problem)
    : Exception(line > 0 ? $"{Describe(format)}{LineWord(format)} {line}: {problem}" : $"{Describe(format)}{problem}")
{
    public CgmFormat? Format { get; } = format;
    public long Line { get; } = line;
    public string Problem { get; } = problem;

    private static string Describe(CgmFormat? format) => format is { } f ? $"{f.Name()} " : "";

    /// <summary>JSON readers count entries, not lines (see <see cref="CgmRowReader.Line"/>).</summary>
    private static string LineWord(CgmFormat? format) => format == CgmFormat.NightscoutJson ? "entry" : "line";
}

/// <summary>No reader recognised the file; the message lists the formats tried.</summary>
public sealed class UnknownCgmFormatException(IReadOnlyList<string> tried)
    : CgmFormatException(null, 0, $"unrecognised CGM export: tried {string.Join(", ", tried)}")
{
    public IReadOnlyList<string> Tried { get; } = tried;
}
