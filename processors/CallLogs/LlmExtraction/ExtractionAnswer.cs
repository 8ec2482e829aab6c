using System.Text.Json;
using Json.Schema;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.CallLogs.LlmExtraction;

/// <summary>What the model is asked (<see cref="SystemPrompt"/>, a strict JSON schema as <c>response_format</c>) and how its answer
/// is checked before any of it is used. The schema is the first gate (JSON Schema 2020-12, evaluated by JsonSchema.Net: types,
/// enums of status, meal, dose unit, frequency and severity forms, confidence 0-1, no extra fields); the code then checks what a
/// schema cannot: every string passes the platform's text rule (<see cref="InputRules.CheckText"/>), each transcript of the batch answered exactly once (no index out of range, none twice, none missing), and
/// every entry's <c>evidence</c> quoted from its own transcript, which gives the entry's span. One failed check rejects the
/// whole answer: a model that breaks the contract in one place is not trusted in the others.</summary>
public static class ExtractionAnswer
{
    /// <summary>Part of the cache key: a change of prompt or schema must not serve answers to the old one.</summary>
    public const string PromptVersion = "calllogs-extract-1";

    public const string SystemPrompt = """
        You read transcripts of health check-in calls between a nurse (or voice agent) and a patient, and list the PATIENT's own
        medications, foods and symptoms. Speaker labels start turns ("Nurse:", "Patient:", "Daughter:", Spanish labels too);
        a family member may report the patient's symptoms, but their own symptoms are not the patient's; a nurse's suggestion
        is at most status "mentioned". Read negation ("no headaches" is a symptom with present=false), corrections ("five
        hundred, sorry, two fifty" means 250) and numbers in words, in English or Spanish.
        Answer one object per transcript, with its "index" as given. For every entry:
        - medications: generic_name (lowercase generic, e.g. "metformin" for Glucophage), dose_value and dose_unit
          (mg, mcg, g, ml, units, puffs, tablets, drops) or null, frequency ("once daily", "twice daily", "three times daily",
          "four times daily", "at bedtime", "every morning", "as needed", "weekly", "every other day", "every N hours") or null,
          status (taken, skipped, stopped, mentioned).
        - foods: item (singular English name), quantity and unit (singular serving word: slice, cup, glass, bowl, ...) or null,
          meal (breakfast, lunch, dinner, snack) or null.
        - symptoms: name (normalised English, e.g. "headache"), present (false when denied), severity ("mild", "moderate",
          "severe" or a pain score "N/10") or null, onset ("today", "this morning", "last night", "yesterday", "N days ago",
          "N weeks ago", "last week") or null.
        - confidence from 0 to 1, and evidence: the shortest exact, character-for-character quote of the transcript that names
          the entry (e.g. "metformin" or "dolor de cabeza"); it must occur in that transcript.
        A transcript with nothing to extract gets empty lists.
        """;

    private static readonly string[] DoseUnitValues =
        [DoseUnits.Milligrams, DoseUnits.Micrograms, DoseUnits.Grams, DoseUnits.Millilitres, DoseUnits.Units, DoseUnits.Puffs, DoseUnits.Tablets, DoseUnits.Drops];

    private static readonly string[] FrequencyValues =
        [Frequencies.OnceDaily, Frequencies.TwiceDaily, Frequencies.ThreeTimesDaily, Frequencies.FourTimesDaily, Frequencies.AtBedtime,
         Frequencies.EveryMorning, Frequencies.AsNeeded, Frequencies.Weekly, Frequencies.EveryOtherDay];

    /// <summary>The answer's JSON schema, in the form OpenAI's strict structured outputs accept (every property required, nullable
    /// as a type list, no additional properties), also used to check the answer here.</summary>
    public static readonly string SchemaJson = BuildSchema();

    private static readonly JsonSchema Schema = JsonSchema.FromText(SchemaJson);

    private static string BuildSchema()
    {
        static string Enum(IEnumerable<string> values, bool nullable) =>
            "[" + string.Join(",", values.Select(v => JsonSerializer.Serialize(v)).Concat(nullable ? ["null"] : [])) + "]";
        var frequencyPattern = "^(" + string.Join("|", FrequencyValues) + "|every ([1-9]|1[0-9]|2[0-4]) hours)$";
        const string evidence = """{"type":"string","minLength":1,"maxLength":500}""";
        const string confidence = """{"type":"number","minimum":0,"maximum":1}""";
        return """
            {"type":"object","additionalProperties":false,"required":["transcripts"],
             "properties":{"transcripts":{"type":"array","items":{"type":"object","additionalProperties":false,
               "required":["index","medications","foods","symptoms"],
               "properties":{
                 "index":{"type":"integer","minimum":0},
                 "medications":{"type":"array","items":{"type":"object","additionalProperties":false,
                   "required":["generic_name","dose_value","dose_unit","frequency","status","confidence","evidence"],
                   "properties":{"generic_name":{"type":"string","minLength":1,"maxLength":100},
                     "dose_value":{"type":["number","null"],"exclusiveMinimum":0,"maximum":100000},
                     "dose_unit":{"enum":DOSE_UNITS},
                     "frequency":{"type":["string","null"],"pattern":FREQUENCY_PATTERN},
                     "status":{"enum":["taken","skipped","stopped","mentioned"]},
                     "confidence":CONFIDENCE,"evidence":EVIDENCE}}},
                 "foods":{"type":"array","items":{"type":"object","additionalProperties":false,
                   "required":["item","quantity","unit","meal","confidence","evidence"],
                   "properties":{"item":{"type":"string","minLength":1,"maxLength":100},
                     "quantity":{"type":["number","null"],"exclusiveMinimum":0,"maximum":10000},
                     "unit":{"type":["string","null"],"minLength":1,"maxLength":40},
                     "meal":{"enum":["breakfast","lunch","dinner","snack",null]},
                     "confidence":CONFIDENCE,"evidence":EVIDENCE}}},
                 "symptoms":{"type":"array","items":{"type":"object","additionalProperties":false,
                   "required":["name","present","severity","onset","confidence","evidence"],
                   "properties":{"name":{"type":"string","minLength":1,"maxLength":100},
                     "present":{"type":"boolean"},
                     "severity":{"type":["string","null"],"pattern":"^(mild|moderate|severe|([0-9]|10)/10)$"},
                     "onset":{"type":["string","null"],"pattern":"^(today|this morning|last night|yesterday|last week|[1-9][0-9]? (days|weeks) ago)$"},
                     "confidence":CONFIDENCE,"evidence":EVIDENCE}}}}}}}}
            """.Replace("DOSE_UNITS", Enum(DoseUnitValues, true)).Replace("FREQUENCY_PATTERN", JsonSerializer.Serialize(frequencyPattern))
               .Replace("CONFIDENCE", confidence).Replace("EVIDENCE", evidence);
    }

    /// <summary>The user message: the batch as a JSON array of {index, transcript}.</summary>
    public static string UserMessage(IReadOnlyList<string> transcripts)
    {
        var items = new object[transcripts.Count];
        for (var i = 0; i < transcripts.Count; i++) items[i] = new { index = i, transcript = transcripts[i] };
        return JsonSerializer.Serialize(new { transcripts = items });
    }

    /// <summary>The model's answer (the assistant message's content) for <paramref name="transcripts"/>, checked; entries carry
    /// <paramref name="extractorName"/>. Null with <paramref name="error"/> when any check fails.</summary>
    public static ExtractionResult[]? Read(string content, IReadOnlyList<string> transcripts, string extractorName, out string? error)
    {
        JsonDocument document;
        try { document = JsonDocument.Parse(content); }
        catch (JsonException e) { error = "the answer is not JSON: " + e.Message; return null; }
        using (document)
        {
            var evaluation = Schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            if (!evaluation.IsValid)
            {
                var first = (evaluation.Details ?? []).Where(d => d.Errors is { Count: > 0 })
                    .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")).FirstOrDefault();
                error = "the answer does not match the schema: " + (first ?? "invalid");
                return null;
            }
            // Free text goes to topics and PostgreSQL: the platform's one text rule (no control characters, no unpaired surrogates).
            if (CheckStrings(document.RootElement, "") is { } badText) { error = badText; return null; }
            var results = new ExtractionResult?[transcripts.Count];
            foreach (var answer in document.RootElement.GetProperty("transcripts").EnumerateArray())
            {
                // The schema's "integer" takes 1e10 and 2.0 too: read it as an int or refuse it.
                if (!answer.GetProperty("index").TryGetInt32(out var index) || index >= transcripts.Count) { error = $"the answer has transcript index {answer.GetProperty("index").GetRawText()}; the batch has {transcripts.Count}"; return null; }
                if (results[index] is not null) { error = $"the answer has transcript index {index} twice"; return null; }
                results[index] = ReadOne(answer, transcripts[index], extractorName, out error);
                if (results[index] is null) { error = $"transcript {index}: {error}"; return null; }
            }
            for (var i = 0; i < results.Length; i++)
                if (results[i] is null) { error = $"the answer has no transcript index {i}"; return null; }
            error = null;
            return results!;
        }
    }

    private static ExtractionResult? ReadOne(JsonElement answer, string transcript, string extractor, out string? error)
    {
        error = null;
        var medications = new List<MedicationEntry>();
        foreach (var m in answer.GetProperty("medications").EnumerateArray())
        {
            if (Span(m, transcript, out error) is not { } span) return null;
            medications.Add(new MedicationEntry(m.GetProperty("generic_name").GetString()!.Trim().ToLowerInvariant(), Number(m, "dose_value"),
                Text(m, "dose_unit"), Text(m, "frequency"), ParseStatus(m.GetProperty("status").GetString()!), m.GetProperty("confidence").GetDouble(),
                span, extractor));
        }
        var foods = new List<FoodEntry>();
        foreach (var f in answer.GetProperty("foods").EnumerateArray())
        {
            if (Span(f, transcript, out error) is not { } span) return null;
            foods.Add(new FoodEntry(f.GetProperty("item").GetString()!.Trim().ToLowerInvariant(), Number(f, "quantity"), Text(f, "unit"),
                Text(f, "meal") is { } meal ? System.Enum.Parse<Meal>(meal, ignoreCase: true) : null, f.GetProperty("confidence").GetDouble(), span, extractor));
        }
        var symptoms = new List<SymptomEntry>();
        foreach (var s in answer.GetProperty("symptoms").EnumerateArray())
        {
            if (Span(s, transcript, out error) is not { } span) return null;
            symptoms.Add(new SymptomEntry(s.GetProperty("name").GetString()!.Trim().ToLowerInvariant(), s.GetProperty("present").GetBoolean(),
                Text(s, "severity"), Text(s, "onset"), s.GetProperty("confidence").GetDouble(), span, extractor));
        }
        return new ExtractionResult(medications, foods, symptoms);
    }

    /// <summary>The evidence's place in the transcript: its first occurrence, exact, else ignoring case (a model may capitalise a
    /// quote that starts its sentence). A quote that does not occur is an invented entry, and rejects the answer.</summary>
    private static TranscriptSpan? Span(JsonElement entry, string transcript, out string? error)
    {
        var evidence = entry.GetProperty("evidence").GetString()!;
        var at = transcript.IndexOf(evidence, StringComparison.Ordinal);
        if (at < 0) at = transcript.IndexOf(evidence, StringComparison.OrdinalIgnoreCase);
        if (at < 0)
        {
            error = $"evidence \"{(evidence.Length > 60 ? evidence[..60] + "…" : evidence)}\" does not occur in the transcript";
            return null;
        }
        error = null;
        return new TranscriptSpan(at, evidence.Length);
    }

    private static string? CheckStrings(JsonElement e, string path)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String: return InputRules.CheckText(path, e.GetString(), 500);
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                    if (CheckStrings(p.Value, path + "/" + p.Name) is { } bad) return bad;
                return null;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in e.EnumerateArray())
                    if (CheckStrings(item, path + "/" + i++) is { } bad) return bad;
                return null;
            default: return null;
        }
    }

    private static string? Text(JsonElement e, string name) => e.GetProperty(name) is { ValueKind: JsonValueKind.String } v ? v.GetString() : null;

    private static double? Number(JsonElement e, string name) => e.GetProperty(name) is { ValueKind: JsonValueKind.Number } v ? v.GetDouble() : null;

    private static MedicationStatus ParseStatus(string status) => status switch
    {
        "taken" => MedicationStatus.Taken,
        "skipped" => MedicationStatus.Skipped,
        "stopped" => MedicationStatus.Stopped,
        _ => MedicationStatus.Mentioned,
    };
}
