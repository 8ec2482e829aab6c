using System.Text;
using BenchmarkDotNet.Attributes;
using StreamHealth.CallLogs.Extraction;

namespace StreamHealth.Benchmarks.CallLogs;

/// <summary>Cost of the embedded extractor (issue 17 asks for at least 1,000 transcripts/s per core), on one thread.
/// Transcripts/s = 1e9 / (ns per op).</summary>
/// <remarks><see cref="LabelledTranscript"/>: each op is one transcript of the committed labelled set
/// (benchmarks/data/calllogs/checkins-labelled.jsonl, 225 check-ins written for the purpose, median 74 characters), the set
/// in file order per invoke. Those are short calls; <see cref="WholeSetAsOneCall"/> is every labelled transcript joined into
/// one call of 19 KB, near a 30-minute conversation's ~25 KB (what the extraction's 64 KiB limit is sized for), so a long
/// transcript's cost is measured too, not extrapolated.</remarks>
[MemoryDiagnoser]
public class ExtractionBenchmarks
{
    /// <summary>The labelled set's size (OperationsPerInvoke needs a constant; the setup checks the file still has this many).</summary>
    private const int TranscriptsPerInvoke = 225;
    private readonly EmbeddedExtractor _extractor = new();
    private string[] _transcripts = [];
    private string _longCall = "";

    [GlobalSetup]
    public void Setup()
    {
        _transcripts = ExtractionScorer.ReadLabelled(Path.Combine(RepoPaths.Root, "benchmarks", "data", "calllogs", "checkins-labelled.jsonl"))
            .Select(c => c.Transcript).ToArray();
        if (_transcripts.Length != TranscriptsPerInvoke)
            throw new InvalidOperationException($"{_transcripts.Length} labelled transcripts, the benchmark counts {TranscriptsPerInvoke} per invoke");
        var joined = new StringBuilder();
        foreach (var t in _transcripts) joined.Append(t).Append('\n');
        _longCall = joined.ToString();
        if (_extractor.Extract(_longCall).Medications.Count == 0)
            throw new InvalidOperationException("the joined call yields no medications: the benchmark would time the wrong path");
        Console.WriteLine($"// {_transcripts.Length} labelled transcripts, {_transcripts.Sum(t => t.Length):N0} characters; joined call {_longCall.Length:N0} characters");
    }

    /// <summary>One labelled transcript: turns, folding, lexicon look-ups, attribute rules, the result.</summary>
    [Benchmark(OperationsPerInvoke = TranscriptsPerInvoke)]
    public int LabelledTranscript()
    {
        var entries = 0;
        foreach (var t in _transcripts)
        {
            var r = _extractor.Extract(t);
            entries += r.Medications.Count + r.Foods.Count + r.Symptoms.Count;
        }
        return entries;
    }

    /// <summary>The whole labelled set as one long call.</summary>
    [Benchmark]
    public int WholeSetAsOneCall()
    {
        var r = _extractor.Extract(_longCall);
        return r.Medications.Count + r.Foods.Count + r.Symptoms.Count;
    }
}
