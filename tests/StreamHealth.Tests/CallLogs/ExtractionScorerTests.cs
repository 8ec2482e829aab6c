using StreamHealth.CallLogs.Extraction;

namespace StreamHealth.Tests.CallLogs;

/// <summary>Hand-computed cases of the call-log scorer.</summary>
public sealed class ExtractionScorerTests
{
    private static readonly TranscriptSpan NoSpan = new(0, 0);

    private static MedicationEntry Med(string name, double? dose, string? unit, string? frequency, MedicationStatus status) =>
        new(name, dose, unit, frequency, status, 1, NoSpan, "test");

    private static SymptomEntry Sym(string name, bool present, string? severity = null, string? onset = null) =>
        new(name, present, severity, onset, 1, NoSpan, "test");

    [Fact]
    public void Names_and_attributes_are_counted_as_multisets()
    {
        // Expected: metformin 500 mg twice daily taken, metformin (second entry), aspirin. Actual: metformin 500 mg twice
        // daily taken, lisinopril. Names: TP 1 (one metformin), FP 1 (lisinopril), FN 2 (metformin, aspirin).
        var expected = new ExtractionResult([
            Med("metformin", 500, "mg", Frequencies.TwiceDaily, MedicationStatus.Taken),
            Med("metformin", 1000, "mg", null, MedicationStatus.Taken),
            Med("aspirin", null, null, null, MedicationStatus.Taken)], [], []);
        var actual = new ExtractionResult([
            Med("metformin", 500, "mg", Frequencies.TwiceDaily, MedicationStatus.Taken),
            Med("lisinopril", null, null, null, MedicationStatus.Taken)], [], []);
        var s = ExtractionScorer.Score(expected, actual);
        Assert.Equal(new Counts(1, 1, 2), s.MedicationNames);
        Assert.Equal(new Counts(1, 1, 2), s.MedicationFull);
        Assert.Equal(0.5, s.MedicationNames.Precision, 9);
        Assert.Equal(1.0 / 3, s.MedicationNames.Recall, 9);
        Assert.Equal(0.4, s.MedicationNames.F1, 9);
    }

    [Fact]
    public void An_absent_attribute_matches_only_an_absent_attribute()
    {
        var expected = new ExtractionResult([], [], [Sym("headache", true), Sym("fever", false)]);
        var actual = new ExtractionResult([], [], [Sym("headache", true, severity: "mild"), Sym("fever", false)]);
        var s = ExtractionScorer.Score(expected, actual);
        Assert.Equal(new Counts(2, 0, 0), s.SymptomNames);
        Assert.Equal(new Counts(1, 1, 1), s.SymptomFull);
    }

    [Fact]
    public void Present_versus_denied_is_an_attribute_not_a_name()
    {
        var s = ExtractionScorer.Score(new ExtractionResult([], [], [Sym("nausea", false)]), new ExtractionResult([], [], [Sym("nausea", true)]));
        Assert.Equal(new Counts(1, 0, 0), s.SymptomNames);
        Assert.Equal(new Counts(0, 1, 1), s.SymptomFull);
    }

    [Fact]
    public void Food_quantity_compares_numerically_and_meal_must_match()
    {
        var expected = new ExtractionResult([], [new FoodEntry("toast", 2, "slice", Meal.Breakfast, 1, NoSpan, "t"), new FoodEntry("rice", null, null, Meal.Lunch, 1, NoSpan, "t")], []);
        var actual = new ExtractionResult([], [new FoodEntry("toast", 2.0000000001, "slice", Meal.Breakfast, 1, NoSpan, "t"), new FoodEntry("rice", null, null, Meal.Dinner, 1, NoSpan, "t")], []);
        var s = ExtractionScorer.Score(expected, actual);
        Assert.Equal(new Counts(2, 0, 0), s.FoodNames);
        Assert.Equal(new Counts(1, 1, 1), s.FoodFull);
    }

    [Fact]
    public void Empty_against_empty_is_perfect_and_sums_add_up()
    {
        var empty = ExtractionScorer.Score(ExtractionResult.Empty, ExtractionResult.Empty);
        Assert.Equal(1.0, empty.SymptomNames.F1);
        var one = ExtractionScorer.Score(new ExtractionResult([], [], [Sym("cough", true)]), ExtractionResult.Empty);
        var total = one + one + empty;
        Assert.Equal(new Counts(0, 0, 2), total.SymptomNames);
        Assert.Equal(0.0, total.SymptomNames.F1);
    }

    [Fact]
    public void The_committed_labelled_set_parses_and_has_its_parts()
    {
        var path = FindSet();
        var set = ExtractionScorer.ReadLabelled(path);
        Assert.True(set.Count >= 220, $"{set.Count} transcripts");
        Assert.True(set.Count(c => c.Part == "heldout") >= 60);
        Assert.True(set.Count(c => c.Expected.Medications.Count + c.Expected.Foods.Count + c.Expected.Symptoms.Count == 0) >= 20);
        Assert.Equal(set.Count, set.Select(c => c.Id).Distinct().Count());
    }

    [Theory]
    [InlineData("heldout")]
    [InlineData("tuning")]
    public void The_embedded_extractor_meets_the_issue_targets_on_each_part_of_the_labelled_set(string part)
    {
        // Issue 17: F1 >= 0.90 on names and >= 0.80 with attributes, per kind. A rule change that loses accuracy fails here.
        var extractor = new EmbeddedExtractor();
        var score = ExtractionScore.Zero;
        foreach (var checkin in ExtractionScorer.ReadLabelled(FindSet()).Where(c => c.Part == part))
            score += ExtractionScorer.Score(checkin.Expected, extractor.Extract(checkin.Transcript));
        foreach (var (kind, names, full) in new[] { ("medication", score.MedicationNames, score.MedicationFull), ("food", score.FoodNames, score.FoodFull),
                     ("symptom", score.SymptomNames, score.SymptomFull) })
        {
            Assert.True(names.TruePositives >= 20, $"{part} {kind}: only {names.TruePositives} names matched");
            Assert.True(names.F1 >= 0.90, $"{part} {kind} names: F1 {names.F1:0.000} ({names})");
            Assert.True(full.F1 >= 0.80, $"{part} {kind} with attributes: F1 {full.F1:0.000} ({full})");
        }
    }

    internal static string FindSet()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "benchmarks", "data", "calllogs", "checkins-labelled.jsonl");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("benchmarks/data/calllogs/checkins-labelled.jsonl above the test binaries");
    }
}
