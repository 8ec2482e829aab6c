namespace StreamHealth.Cgm;

/// <summary>Quality flags of the unified format (cgm_format convention); a row may carry several.</summary>
[Flags]
public enum CgmQuality : byte
{
    Good = 0,
    /// <summary>Outside the sensor's reporting range (Dexcom "Low" = 39, "High" = 401 mg/dL) or physiologically impossible.</summary>
    OutOfRange = 1,
    /// <summary>Sensor calibration / warm-up period.</summary>
    Calibration = 2,
    /// <summary>Not measured: interpolated across a short gap.</summary>
    Imputed = 4,
    /// <summary>Another reading claimed the same time (or grid step).</summary>
    DuplicateTime = 8,
    /// <summary>Moved onto the 5-minute grid (datetime differs from original_datetime).</summary>
    Synchronised = 16,
}

/// <summary>The unified format's event types (8-character codes, see <see cref="CgmEventTypes"/>).</summary>
public enum CgmEventType : byte
{
    EgvRead,
    Calibration,
    Carbs,
    InsulinFast,
    InsulinSlow,
    ExerciseLight,
    ExerciseMedium,
    ExerciseHeavy,
    AlertHigh,
    AlertLow,
    AlertUrgentLow,
    AlertUrgentLowSoon,
    AlertRise,
    AlertFall,
    AlertSignalLoss,
    HealthIllness,
    HealthStress,
    HealthLowSymptoms,
    HealthCycle,
    HealthAlcohol,
    Imputation,
    Other,
}

public static class CgmEventTypes
{
    private static readonly string[] Codes =
    [
        "EGV_READ", "CALIBRAT", "CARBS_IN", "INS_FAST", "INS_SLOW", "XRCS_LTE", "XRCS_MED", "XRCS_HVY",
        "ALRT_HIG", "ALRT_LOG", "ALRT_ULG", "ALRT_ULS", "ALRT_RIS", "ALRT_FAL", "ALRT_SIG",
        "HLTH_ILL", "HLTH_STR", "HLTH_LSY", "HLTH_CYC", "HLTH_ALC", "IMPUTATN", "OTHEREVT",
    ];

    private static readonly byte[][] Utf8Codes = Codes.Select(System.Text.Encoding.ASCII.GetBytes).ToArray();

    public static string Code(this CgmEventType type) => Codes[(int)type];

    public static ReadOnlySpan<byte> Utf8Code(this CgmEventType type) => Utf8Codes[(int)type];

    /// <summary>Each code's 8 bytes as one little-endian word: the unified reader compares one word per
    /// candidate instead of 8 bytes.</summary>
    private static readonly ulong[] CodeWords = Utf8Codes.Select(c => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(c)).ToArray();

    public static bool TryParse(ReadOnlySpan<byte> code, out CgmEventType type)
    {
        if (code.Length == 8)
        {
            var word = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(code);
            var words = CodeWords;
            for (var i = 0; i < words.Length; i++)
                if (words[i] == word) { type = (CgmEventType)i; return true; }
        }
        type = CgmEventType.Other;
        return false;
    }
}

/// <summary>Glucose units. Everything inside StreamHealth is mg/dL.</summary>
public static class GlucoseUnits
{
    /// <summary>1 mmol/L of glucose = 18.0182 mg/dL (molar mass 180.16 g/mol).</summary>
    public const double MgDlPerMmolL = 18.0182;
    /// <summary>A mmol/L reading in mg/dL, rounded to 5 decimals: the exact product for readings given to
    /// one decimal (18.0182 has four), without the binary noise of the multiplication ("100.90192", not
    /// "100.90191999999999" in the unified CSV).</summary>
    public static double MmolLToMgDl(double mmolL) => Math.Round(mmolL * MgDlPerMmolL, 5);
    /// <summary>Dexcom's "Low" reading (below the sensor range), as the unified format records it.</summary>
    public const double DexcomLowMgDl = 39;
    /// <summary>Dexcom's "High" reading (above the sensor range).</summary>
    public const double DexcomHighMgDl = 401;
    /// <summary>Above this no sensor or meter reports: the value is garbage or in the wrong unit. Readers keep such a
    /// value flagged <see cref="CgmQuality.OutOfRange"/> (and report it); the series drops it; cgm.readings refuses it.</summary>
    public const double ImpossibleAboveMgDl = 1_000;
}

/// <summary>One row of the unified format. Times are milliseconds since 1970-01-01 on the export's
/// own clock: wall-clock local time for vendor exports that carry no offset (Clarity, LibreView,
/// CareLink), UTC where the source says so (Nightscout). Absent values are NaN. Auto layout packs the
/// fields into 64 bytes instead of the declaration order's 72: lists of rows hold whole files.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Auto)]
public readonly record struct CgmRow(
    int SequenceId,
    long OriginalTimeMs,
    CgmQuality Quality,
    CgmEventType EventType,
    long TimeMs,
    double GlucoseMgDl,
    double CarbsG,
    double InsulinSlowU,
    double InsulinFastU,
    double ExerciseSeconds)
{
    public static CgmRow Glucose(long timeMs, double mgDl, CgmQuality quality = CgmQuality.Good) =>
        new(0, timeMs, quality, CgmEventType.EgvRead, timeMs, mgDl, double.NaN, double.NaN, double.NaN, double.NaN);

    public static CgmRow Event(CgmEventType type, long timeMs, double carbsG = double.NaN, double insulinSlowU = double.NaN,
        double insulinFastU = double.NaN, double exerciseSeconds = double.NaN) =>
        new(0, timeMs, CgmQuality.Good, type, timeMs, double.NaN, carbsG, insulinSlowU, insulinFastU, exerciseSeconds);

    public bool HasGlucose => !double.IsNaN(GlucoseMgDl);

    /// <summary>A point of the glucose series: a sensor reading or a value imputed between two. Sensor readings alone
    /// define the grid, its gaps and sequences; a calibration carries a glucose value too (the fingerstick), but it is an
    /// event attached to its step, never a second point on it.</summary>
    public bool IsSeriesPoint => EventType is CgmEventType.EgvRead or CgmEventType.Imputation;
}
