using StreamHealth.CallLogs.Extraction;

namespace StreamHealth.Tests.CallLogs;

/// <summary>One rule per test of the embedded call-log extractor (pure code: no Kafka, PostgreSQL or Redis).</summary>
public sealed class EmbeddedExtractorTests
{
    private static readonly EmbeddedExtractor Extractor = new();

    private static ExtractionResult Extract(string transcript) => Extractor.Extract(transcript);

    private static SymptomEntry Symptom(ExtractionResult r, string name) => Assert.Single(r.Symptoms, s => s.Name == name);

    private static MedicationEntry Medication(ExtractionResult r, string name) => Assert.Single(r.Medications, m => m.GenericName == name);

    [Fact]
    public void Negation_covers_a_coordinated_list_and_stops_at_but()
    {
        var r = Extract("Patient: No fever or chills, but I have a headache.");
        Assert.False(Symptom(r, "fever").Present);
        Assert.False(Symptom(r, "chills").Present);
        Assert.True(Symptom(r, "headache").Present);
    }

    [Theory]
    [InlineData("Patient: I haven't had any dizziness since Monday.", "dizziness")]
    [InlineData("Daughter: She denies chest pain.", "chest pain")]
    [InlineData("Paciente: Estoy bien, sin dolor de cabeza.", "headache")]
    [InlineData("Patient: The nausea went away.", "nausea")]
    public void Negation_cues_in_English_and_Spanish_deny(string transcript, string name) => Assert.False(Symptom(Extract(transcript), name).Present);

    [Fact]
    public void A_no_answering_a_question_is_not_a_negation_of_what_follows()
    {
        var r = Extract("Nurse: Did you take your pills?\nPatient: No, I didn't take my lisinopril today, I felt too dizzy.");
        Assert.True(Symptom(r, "dizziness").Present);
        Assert.Equal(MedicationStatus.Skipped, Medication(r, "lisinopril").Status);
    }

    [Fact]
    public void A_family_member_reporting_the_patients_symptom_counts_for_the_patient_but_not_their_own()
    {
        var r = Extract("Daughter: I've had a cough all week myself, but mom had a bad headache yesterday.");
        Assert.DoesNotContain(r.Symptoms, s => s.Name == "cough");
        var headache = Symptom(r, "headache");
        Assert.True(headache.Present);
        Assert.Equal("moderate", headache.Severity);
        Assert.Equal("yesterday", headache.Onset);
    }

    [Fact]
    public void Another_persons_symptom_in_the_patients_turn_is_not_the_patients()
    {
        var r = Extract("Patient: My husband has a fever, but I feel fine.");
        Assert.Empty(r.Symptoms);
    }

    [Fact]
    public void A_nurse_suggestion_is_never_an_entry()
    {
        var r = Extract("Nurse: You could try ibuprofen for that.\nPatient: Okay, maybe.");
        Assert.Empty(r.Medications);
    }

    [Fact]
    public void A_bare_answer_is_read_against_the_clinicians_question()
    {
        var r = Extract("Nurse: Any dizziness, headaches, or blurry vision?\nPatient: No, none of that.");
        Assert.Equal(3, r.Symptoms.Count);
        Assert.All(r.Symptoms, s => Assert.False(s.Present));
        var taking = Extract("Nurse: Are you taking the hydrochlorothiazide?\nPatient: Yes, 25 mg every morning.");
        var hctz = Medication(taking, "hydrochlorothiazide");
        Assert.Equal((25.0, "mg", Frequencies.EveryMorning, MedicationStatus.Taken), (hctz.DoseValue!.Value, hctz.DoseUnit, hctz.Frequency, hctz.Status));
    }

    [Theory]
    [InlineData("Patient: The doctor had me on five hundred — sorry, two fifty of metformin twice a day.", 250.0, "mg")]
    [InlineData("Patient: I take Zestril 10 mg, I mean 20 mg, every day.", 20.0, "mg")]
    [InlineData("Patient: I take four hundred, no wait, six hundred milligrams of gabapentin.", 600.0, "mg")]
    [InlineData("Paciente: Tomo quinientos, perdón, ochocientos cincuenta de metformina.", 850.0, "mg")]
    public void A_corrected_dose_keeps_the_correction(string transcript, double dose, string unit)
    {
        var m = Assert.Single(Extract(transcript).Medications);
        Assert.Equal(dose, m.DoseValue);
        Assert.Equal(unit, m.DoseUnit);
    }

    [Fact]
    public void A_corrected_drug_name_keeps_the_second_drug()
    {
        var r = Extract("Patient: I took my metformin, sorry, I mean my metoprolol.");
        Assert.Equal("metoprolol", Assert.Single(r.Medications).GenericName);
    }

    [Theory]
    [InlineData("Patient: I took five hundred milligrams of metformin.", 500.0, "mg")]
    [InlineData("Patient: Metformin 1,000 mg.", 1000.0, "mg")]
    [InlineData("Patient: I took one and a half tablets of furosemide.", 1.5, "tablets")]
    [InlineData("Patient: I take half a tablet of metoprolol.", 0.5, "tablets")]
    [InlineData("Patient: Twenty units of Lantus.", 20.0, "units")]
    [InlineData("Paciente: Me tomé dos pastillas de ibuprofeno.", 2.0, "tablets")]
    [InlineData("Paciente: Tomo la metformina de quinientos.", 500.0, "mg")]
    [InlineData("Patient: Took two Tylenol.", 2.0, "tablets")]
    public void Doses_in_digits_and_words(string transcript, double dose, string unit)
    {
        var m = Assert.Single(Extract(transcript).Medications);
        Assert.Equal(dose, m.DoseValue);
        Assert.Equal(unit, m.DoseUnit);
    }

    [Theory]
    [InlineData("twice a day", Frequencies.TwiceDaily)]
    [InlineData("BID", Frequencies.TwiceDaily)]
    [InlineData("three times a day", Frequencies.ThreeTimesDaily)]
    [InlineData("every 8 hours", "every 8 hours")]
    [InlineData("every eight hours", "every 8 hours")]
    [InlineData("at night", Frequencies.AtBedtime)]
    [InlineData("dos veces al día", Frequencies.TwiceDaily)]
    [InlineData("as needed", Frequencies.AsNeeded)]
    [InlineData("once a week", Frequencies.Weekly)]
    [InlineData("every other day", Frequencies.EveryOtherDay)]
    [InlineData("in the morning", Frequencies.EveryMorning)]
    public void Frequencies_are_normalised(string phrase, string expected) =>
        Assert.Equal(expected, Medication(Extract($"Patient: I take lisinopril 10 mg {phrase}."), "lisinopril").Frequency);

    [Theory]
    [InlineData("Patient: My knee pain is a 7 out of 10.", "knee pain", "7/10")]
    [InlineData("Patient: My back hurts, it's a five.", "back pain", "5/10")]
    [InlineData("Paciente: Me duele la rodilla, como un siete de diez.", "knee pain", "7/10")]
    [InlineData("Patient: I have a headache, pain is 6/10.", "headache", "6/10")]
    public void Pain_scores_attach_to_the_pain(string transcript, string name, string severity) =>
        Assert.Equal(severity, Symptom(Extract(transcript), name).Severity);

    [Fact]
    public void A_score_answering_a_pain_question_goes_to_that_pain()
    {
        var r = Extract("Nurse: How is the pain after your surgery?\nPatient: Much better. It's a two now.");
        Assert.Equal("2/10", Symptom(r, "pain").Severity);
    }

    [Theory]
    [InlineData("Patient: I forgot my Glucophage last night.", "metformin", MedicationStatus.Skipped)]
    [InlineData("Patient: I ran out of my Eliquis.", "apixaban", MedicationStatus.Skipped)]
    [InlineData("Patient: I stopped taking the Lipitor.", "atorvastatin", MedicationStatus.Stopped)]
    [InlineData("Paciente: Dejé de tomar la insulina.", "insulin", MedicationStatus.Stopped)]
    [InlineData("Patient: I don't take the Tylenol anymore.", "acetaminophen", MedicationStatus.Stopped)]
    [InlineData("Patient: I'm supposed to start Ozempic next week.", "semaglutide", MedicationStatus.Mentioned)]
    [InlineData("Patient: I missed my levothyroxine yesterday, I took it today.", "levothyroxine", MedicationStatus.Taken)]
    [InlineData("Patient: I took my metformin — wait, no, I haven't taken it yet today.", "metformin", MedicationStatus.Skipped)]
    public void Status_cues(string transcript, string name, MedicationStatus status) => Assert.Equal(status, Medication(Extract(transcript), name).Status);

    [Fact]
    public void Brand_and_Spanish_names_map_to_generics_and_typos_match_with_lower_confidence()
    {
        var r = Extract("Patient: I take Norvasc, paracetamol and metfromin.");
        Assert.Contains(r.Medications, m => m.GenericName == "amlodipine");
        Assert.Contains(r.Medications, m => m.GenericName == "acetaminophen");
        var typo = Medication(r, "metformin");
        Assert.True(typo.Confidence < Medication(r, "amlodipine").Confidence);
    }

    [Fact]
    public void Food_quantities_units_and_meals()
    {
        var r = Extract("Patient: For breakfast two eggs and a slice of toast, a turkey sandwich for lunch, and for dinner chicken.\n" +
                        "Paciente: En la cena un vaso de leche.");
        Assert.Equal((2.0, (string?)null, (Meal?)Meal.Breakfast), (Assert.Single(r.Foods, f => f.Item == "egg").Quantity!.Value, r.Foods.First(f => f.Item == "egg").Unit, r.Foods.First(f => f.Item == "egg").Meal));
        var toast = Assert.Single(r.Foods, f => f.Item == "toast");
        Assert.Equal((1.0, "slice", Meal.Breakfast), (toast.Quantity!.Value, toast.Unit, toast.Meal!.Value));
        Assert.Equal(Meal.Lunch, Assert.Single(r.Foods, f => f.Item == "turkey sandwich").Meal);
        Assert.Equal(Meal.Dinner, Assert.Single(r.Foods, f => f.Item == "chicken").Meal);
        var milk = Assert.Single(r.Foods, f => f.Item == "milk");
        Assert.Equal((1.0, "glass", Meal.Dinner), (milk.Quantity!.Value, milk.Unit, milk.Meal!.Value));
    }

    [Fact]
    public void Spans_point_at_the_words_in_the_transcript()
    {
        const string transcript = "Nurse: Hi.\nPatient: I took my Tylenol and had no headache.";
        var r = Extract(transcript);
        var m = Medication(r, "acetaminophen");
        Assert.Equal("Tylenol", transcript.Substring(m.Span.Start, m.Span.Length));
        var s = Symptom(r, "headache");
        Assert.Equal("headache", transcript.Substring(s.Span.Start, s.Span.Length));
        Assert.Equal(EmbeddedExtractor.ExtractorName, m.Extractor);
    }

    [Fact]
    public void Unlabelled_text_is_the_patients_with_lower_confidence()
    {
        var unlabelled = Medication(Extract("I took my metformin."), "metformin");
        var labelled = Medication(Extract("Patient: I took my metformin."), "metformin");
        Assert.True(unlabelled.Confidence < labelled.Confidence);
        Assert.InRange(unlabelled.Confidence, 0, 1);
    }

    [Fact]
    public void Calls_with_nothing_to_extract_give_nothing()
    {
        var r = Extract("Nurse: Just confirming your appointment on Friday.\nPatient: Yes, thank you, I'll be there.");
        Assert.Empty(r.Medications);
        Assert.Empty(r.Foods);
        Assert.Empty(r.Symptoms);
    }

    public static TheoryData<string> HostileInputs() => new()
    {
        "",
        "\0\u0001\u0002\u001b[31m",
        "Patient:",
        ":::::",
        "Patient: metformin 99999999999999999999999999999999 mg every 99999999999 hours",
        "Patient: " + new string('9', 10_000) + " mg",
        "Patient: a a a a a a half half half of of of the the",
        "Nurse: ?\nPatient: No",
        "Patient: \ud800\udfff\uffff pain is a 1e308 out of 10",
        string.Concat(Enumerable.Repeat("Patient: I took 500 mg of metformin twice a day, no headache, two eggs for breakfast.\nNurse: Any fever?\n", 9_000)),
        new string('x', 1_000_000),
        new string(',', 1_000_000),
    };

    [Theory]
    [MemberData(nameof(HostileInputs))]
    public void Hostile_input_never_throws_and_spans_stay_inside(string transcript)
    {
        var r = Extract(transcript);
        foreach (var span in r.Medications.Select(m => m.Span).Concat(r.Foods.Select(f => f.Span)).Concat(r.Symptoms.Select(s => s.Span)))
            Assert.InRange(span.Start + span.Length, 0, transcript.Length);
        Assert.All(r.Medications, m => Assert.True(m.DoseValue is null or <= NumberWordsLimit));
    }

    private const double NumberWordsLimit = 100_000;

    [Fact]
    public void Extraction_is_deterministic_and_independent_of_earlier_calls()
    {
        const string transcript = "Daughter: Mom skipped her Synthroid today, she was feeling nauseous.\nPatient: I had oatmeal.";
        var first = Extract(transcript);
        Extract("Patient: I take metformin 500 mg twice a day. No fever.");
        var second = new EmbeddedExtractor().Extract(transcript);
        Assert.Equal(CallLogsDescribe(first), CallLogsDescribe(second));
        Assert.Equal(MedicationStatus.Skipped, Medication(first, "levothyroxine").Status);
    }

    private static string CallLogsDescribe(ExtractionResult r) => string.Join(";",
        r.Medications.Select(m => m.ToString()).Concat(r.Foods.Select(f => f.ToString())).Concat(r.Symptoms.Select(s => s.ToString())));

    [Fact]
    public void Transcript_parser_reads_labels_case_and_accent_insensitively_and_continues_unlabelled_lines()
    {
        var turns = TranscriptParser.Parse("intro text\nENFERMERA: ¿Cómo está?\nPaciente: Bien.\nsecond line\nTime: 3 pm\nHija: Sí.");
        Assert.Equal([SpeakerRole.Unlabelled, SpeakerRole.Clinician, SpeakerRole.Patient, SpeakerRole.Family], turns.Select(t => t.Role));
        Assert.Contains("Time: 3 pm", "intro text\nENFERMERA: ¿Cómo está?\nPaciente: Bien.\nsecond line\nTime: 3 pm\nHija: Sí."[turns[2].ContentStart..turns[2].ContentEnd]);
    }

    [Fact]
    public void Lexicons_ship_the_promised_sizes()
    {
        var lexicon = Lexicon.Shipped;
        Assert.True(lexicon.DrugCount >= 150, $"{lexicon.DrugCount} drugs");
        Assert.True(lexicon.FoodCount >= 150, $"{lexicon.FoodCount} foods");
        Assert.True(lexicon.SymptomCount >= 70, $"{lexicon.SymptomCount} symptoms");
    }
}
