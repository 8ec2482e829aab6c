namespace StreamHealth.CallLogs.Extraction;

public enum SpeakerRole { Patient, Clinician, Family, Unlabelled }

/// <summary>One speaker's turn: the text after the label, [ContentStart, ContentEnd) in the transcript.</summary>
public readonly record struct TranscriptTurn(SpeakerRole Role, int ContentStart, int ContentEnd);

/// <summary>
/// The accepted transcript format: plain text, one or more lines; a line that starts with a speaker label and a colon
/// ("Nurse: …", "Patient: …", "Daughter: …", "Paciente: …", "Enfermera: …", "Hija: …") opens a turn, a line without a
/// known label continues the current turn. Labels are matched case- and accent-insensitively on their first word
/// (<see cref="RoleOf"/>): patient, clinician (nurse, agent, doctor, pharmacist, …) or family/caregiver. Text before
/// any label, or a transcript with no labels at all, is <see cref="SpeakerRole.Unlabelled"/>: treated as the patient's
/// with lower confidence. An unknown label ("Time: 3 pm") is ordinary text. The parser never throws and never drops
/// text: control characters, empty input and megabytes of text are all just turns; the caller limits size.
/// </summary>
public static class TranscriptParser
{
    private const int MaxLabelChars = 32;

    public static List<TranscriptTurn> Parse(string transcript)
    {
        var turns = new List<TranscriptTurn>();
        var role = SpeakerRole.Unlabelled;
        var turnStart = -1;
        var lineStart = 0;
        while (lineStart <= transcript.Length)
        {
            var lineEnd = transcript.IndexOf('\n', lineStart);
            if (lineEnd < 0) lineEnd = transcript.Length;
            if (TryLabel(transcript, lineStart, lineEnd, out var labelledRole, out var contentStart))
            {
                if (turnStart >= 0) turns.Add(new TranscriptTurn(role, turnStart, lineStart));
                role = labelledRole;
                turnStart = contentStart;
            }
            else if (turnStart < 0) turnStart = lineStart;
            lineStart = lineEnd + 1;
        }
        if (turnStart >= 0 && turnStart < transcript.Length) turns.Add(new TranscriptTurn(role, turnStart, transcript.Length));
        return turns;
    }

    private static bool TryLabel(string text, int lineStart, int lineEnd, out SpeakerRole role, out int contentStart)
    {
        role = SpeakerRole.Unlabelled;
        contentStart = lineStart;
        var i = lineStart;
        while (i < lineEnd && char.IsWhiteSpace(text[i])) i++;
        var labelStart = i;
        var limit = Math.Min(lineEnd, labelStart + MaxLabelChars);
        var colon = -1;
        for (var j = labelStart; j < limit; j++)
        {
            var c = text[j];
            if (c == ':') { colon = j; break; }
            if (!char.IsLetter(c) && c != ' ' && c != '.' && c != '\'' && c != '-') return false;
        }
        if (colon <= labelStart) return false;
        var wordEnd = labelStart;
        while (wordEnd < colon && char.IsLetter(text[wordEnd])) wordEnd++;
        var found = RoleOf(text.AsSpan(labelStart, wordEnd - labelStart));
        if (found is null) return false;
        role = found.Value;
        contentStart = colon + 1;
        return true;
    }

    /// <summary>The role a label's first word names, or null when it names none.</summary>
    public static SpeakerRole? RoleOf(ReadOnlySpan<char> labelWord)
    {
        Span<char> folded = stackalloc char[Math.Min(labelWord.Length, MaxLabelChars)];
        TextFolding.Fold(labelWord[..folded.Length], folded);
        return folded switch
        {
            "patient" or "paciente" or "pt" or "client" or "member" or "caller" => SpeakerRole.Patient,
            "nurse" or "enfermera" or "enfermero" or "agent" or "agente" or "doctor" or "doctora" or "dr" or "clinician"
                or "coordinator" or "navigator" or "pharmacist" or "rn" or "np" or "lpn" or "coach" or "staff" or "medico" or "medica"
                => SpeakerRole.Clinician,
            "daughter" or "son" or "wife" or "husband" or "caregiver" or "carer" or "mother" or "father" or "mom" or "dad"
                or "granddaughter" or "grandson" or "sister" or "brother" or "spouse" or "partner" or "family" or "niece" or "nephew"
                or "hija" or "hijo" or "esposa" or "esposo" or "cuidador" or "cuidadora" or "madre" or "padre" or "nieta" or "nieto"
                or "hermana" or "hermano" or "familiar" => SpeakerRole.Family,
            _ => null,
        };
    }
}
