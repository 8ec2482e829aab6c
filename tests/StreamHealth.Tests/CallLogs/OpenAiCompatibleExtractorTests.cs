using System.Text.Json.Nodes;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Configuration;
using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.LlmExtraction;
using StreamHealth.Runtime.Configuration;
using static StreamHealth.Tests.CallLogs.FakeChatEndpoint;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The OpenAI-compatible extractor against <see cref="FakeChatEndpoint"/> on 127.0.0.1 (nothing here reaches the
/// internet: every extractor's BaseUrl is the fake's loopback address). Counts are asserted, never elapsed times.</summary>
public sealed class OpenAiCompatibleExtractorTests : IAsyncLifetime
{
    private const string Model = "test-model";
    private const string Metformin = "Nurse: Did you take your medicines?\nPatient: Yes, my Glucophage 500 mg this morning. No headache though, and toast for breakfast.";

    private FakeChatEndpoint _endpoint = null!;

    public async Task InitializeAsync()
    {
        _endpoint = await FakeChatEndpoint.StartAsync();
        _endpoint.Label(Metformin,
            medications: [Medication("metformin", 500, "mg", "every morning", "taken", "Glucophage 500 mg")],
            foods: [Food("toast", null, null, "breakfast", "toast")],
            symptoms: [Symptom("headache", false, null, null, "headache")]);
    }

    public async Task DisposeAsync() => await _endpoint.DisposeAsync();

    private ExtractorOptions Options(Action<ExtractorOptions>? change = null)
    {
        var options = new ExtractorOptions
        {
            Kind = ExtractorOptions.OpenAi, BaseUrl = _endpoint.BaseUrl, Model = Model, ApiKey = "test-key",
            BatchSize = 4, MaxBatchWaitMs = 200, RequestTimeoutMs = 10_000, MaxAttempts = 3, InitialBackoffMs = 1, MaxBackoffMs = 5,
            RequestsPerSecond = 1000, Burst = 1000,
        };
        change?.Invoke(options);
        Assert.True(new Uri(options.BaseUrl).IsLoopback, "a test's endpoint must be the local fake");
        return options;
    }

    private static void AssertFellBack(string transcript, ExtractionResult result)
    {
        var embedded = new EmbeddedExtractor().Extract(transcript);
        Assert.Equal(EmbeddedExtractor.ExtractorName, result.Extractor);
        Assert.NotEmpty(result.Medications);
        Assert.All(result.Medications, m => Assert.Equal(EmbeddedExtractor.ExtractorName, m.Extractor));
        Assert.All(result.Symptoms, s => Assert.Equal(EmbeddedExtractor.ExtractorName, s.Extractor));
        Assert.Equal(Describe(embedded), Describe(result));
    }

    private static string Describe(ExtractionResult r) => string.Join("; ",
        r.Medications.Select(m => $"M {m.GenericName}|{m.DoseValue}|{m.DoseUnit}|{m.Frequency}|{m.Status}|{m.Span}|{m.Extractor}")
            .Concat(r.Foods.Select(f => $"F {f.Item}|{f.Quantity}|{f.Unit}|{f.Meal}|{f.Span}|{f.Extractor}"))
            .Concat(r.Symptoms.Select(s => $"S {s.Name}|{s.Present}|{s.Severity}|{s.Onset}|{s.Span}|{s.Extractor}")));

    [Fact]
    public void A_valid_answer_becomes_entries_with_spans_located_in_the_transcript_and_the_models_name()
    {
        using var extractor = new OpenAiCompatibleExtractor(Options());
        var result = extractor.Extract(Metformin);

        Assert.Equal("openai:" + Model, extractor.Name);
        Assert.Equal(extractor.Name, result.Extractor);
        var medication = Assert.Single(result.Medications);
        Assert.Equal(("metformin", 500.0, "mg", "every morning", MedicationStatus.Taken), (medication.GenericName, medication.DoseValue!.Value,
            medication.DoseUnit, medication.Frequency, medication.Status));
        Assert.Equal(new TranscriptSpan(Metformin.IndexOf("Glucophage 500 mg", StringComparison.Ordinal), "Glucophage 500 mg".Length), medication.Span);
        Assert.Equal("Glucophage 500 mg", Metformin.Substring(medication.Span.Start, medication.Span.Length));
        Assert.Equal(0.9, medication.Confidence);
        Assert.Equal(extractor.Name, medication.Extractor);
        var food = Assert.Single(result.Foods);
        Assert.Equal(("toast", Meal.Breakfast, extractor.Name), (food.Item, food.Meal!.Value, food.Extractor));
        var symptom = Assert.Single(result.Symptoms);
        Assert.False(symptom.Present);
        Assert.Equal("headache", Metformin.Substring(symptom.Span.Start, symptom.Span.Length));

        // The request: the strict JSON schema as response_format, the key as a bearer token, the transcript in the user message.
        var body = Assert.Single(_endpoint.RequestBodies);
        Assert.Equal(Model, (string?)body["model"]);
        Assert.Equal("json_schema", (string?)body["response_format"]!["type"]);
        Assert.True((bool)body["response_format"]!["json_schema"]!["strict"]!);
        Assert.Equal("object", (string?)body["response_format"]!["json_schema"]!["schema"]!["type"]);
        Assert.Equal("Bearer test-key", Assert.Single(_endpoint.Authorizations));
        Assert.Equal([Metformin], Assert.Single(_endpoint.Batches));
        Assert.Equal((1, 0, 1), (extractor.Extracted, extractor.Fallbacks, extractor.Requests));
    }

    [Fact]
    public void Concurrent_callers_share_requests_of_at_most_BatchSize_transcripts()
    {
        // 12 stream threads each blocked in Extract at once: 3 requests of 4, each answer routed to its own caller.
        const int callers = 12;
        var transcripts = Enumerable.Range(0, callers).Select(i => $"Patient: I took {i + 1} tablets of my ibuprofen today.").ToArray();
        foreach (var t in transcripts)
            _endpoint.Label(t, medications: [Medication("ibuprofen", double.Parse(t.Split(' ')[3]), "tablets", null, "taken", t[9..])]);
        using var extractor = new OpenAiCompatibleExtractor(Options(o => o.MaxBatchWaitMs = 5_000));
        var results = new ExtractionResult[callers];
        var threads = Enumerable.Range(0, callers).Select(i => new Thread(() => results[i] = extractor.Extract(transcripts[i]))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Equal(3, _endpoint.Requests); // ceil(12 / 4)
        Assert.All(_endpoint.Batches, b => Assert.Equal(4, b.Count));
        Assert.Equal(transcripts.Order(), _endpoint.Batches.SelectMany(b => b).Order());
        for (var i = 0; i < callers; i++)
        {
            var medication = Assert.Single(results[i].Medications);
            Assert.Equal(i + 1, medication.DoseValue);
            Assert.Equal(transcripts[i][9..], transcripts[i].Substring(medication.Span.Start, medication.Span.Length));
        }
    }

    [Fact]
    public void ExtractAll_packs_a_set_into_ceil_N_over_BatchSize_requests_and_asks_a_repeated_transcript_once()
    {
        // 12 items, 11 distinct: call 0 again as the fourth, so it shares the first batch with the first (asked once, answered twice).
        var distinct = Enumerable.Range(0, 11).Select(i => $"Patient: call {i}, nothing new.").ToList();
        var transcripts = distinct.Take(3).Append(distinct[0]).Concat(distinct.Skip(3)).ToList();
        // A long window: batches close by filling, never by a timer, so a slow machine cannot split them.
        using var extractor = new OpenAiCompatibleExtractor(Options(o => o.MaxBatchWaitMs = 5_000));
        var results = extractor.ExtractAll(transcripts);

        Assert.Equal(12, results.Count);
        Assert.All(results, r => Assert.Equal(extractor.Name, r.Extractor));
        Assert.Equal(3, _endpoint.Requests); // ceil(12 / 4)
        Assert.Equal(distinct.Order(), _endpoint.Batches.SelectMany(b => b).Order());
    }

    [Fact]
    public void A_cached_transcript_makes_no_request_and_the_cache_is_bounded()
    {
        using var extractor = new OpenAiCompatibleExtractor(Options(o => { o.CacheEntries = 2; o.MaxBatchWaitMs = 0; }));
        var first = extractor.Extract(Metformin);
        var again = extractor.Extract(Metformin);
        Assert.Equal(1, _endpoint.Requests);
        Assert.Equal(1, extractor.CacheHits);
        Assert.Same(first, again);

        // Two other transcripts push Metformin out of a two-entry cache: asked again.
        extractor.Extract("Patient: call one.");
        extractor.Extract("Patient: call two.");
        extractor.Extract(Metformin);
        Assert.Equal(4, _endpoint.Requests);
    }

    [Fact]
    public void The_cache_drops_the_least_recently_used_and_keys_by_model_and_transcript()
    {
        var cache = new ExtractionCache(2);
        var a = ExtractionCache.KeyOf("m", "a");
        var b = ExtractionCache.KeyOf("m", "b");
        var c = ExtractionCache.KeyOf("m", "c");
        cache.Put(a, ExtractionResult.Empty);
        cache.Put(b, ExtractionResult.Empty);
        Assert.True(cache.TryGet(a, out _)); // a is now the most recent
        cache.Put(c, ExtractionResult.Empty);
        Assert.True(cache.TryGet(a, out _));
        Assert.False(cache.TryGet(b, out _));
        Assert.Equal(2, cache.Count);
        Assert.NotEqual(ExtractionCache.KeyOf("m", "a"), ExtractionCache.KeyOf("other-model", "a"));
        Assert.NotEqual(ExtractionCache.KeyOf("m1", "a"), ExtractionCache.KeyOf("m", "1a"));
    }

    [Theory]
    [InlineData(Faults.Status500)]
    [InlineData(Faults.Status429)]
    [InlineData(Faults.NotJson)]
    public void A_failing_endpoint_is_tried_MaxAttempts_times_then_the_embedded_extractor_answers(Faults fault)
    {
        _endpoint.Fault = fault;
        using var extractor = new OpenAiCompatibleExtractor(Options());
        var result = extractor.Extract(Metformin);

        Assert.Equal(3, _endpoint.Requests);
        Assert.Equal((2, 1L, 0L), (extractor.Retries, extractor.Fallbacks, extractor.Extracted));
        AssertFellBack(Metformin, result);
    }

    [Fact]
    public void A_request_that_does_not_answer_in_time_is_abandoned_retried_then_falls_back()
    {
        _endpoint.Fault = Faults.Hang;
        using var extractor = new OpenAiCompatibleExtractor(Options(o => { o.RequestTimeoutMs = 200; o.MaxAttempts = 2; }));
        var result = extractor.Extract(Metformin);

        Assert.Equal(2, _endpoint.Requests);
        AssertFellBack(Metformin, result);
    }

    [Fact]
    public void A_transient_failure_then_a_good_answer_uses_the_good_answer()
    {
        _endpoint.Fault = Faults.Status500;
        _endpoint.FaultyRequests = 2;
        using var extractor = new OpenAiCompatibleExtractor(Options());
        var result = extractor.Extract(Metformin);

        Assert.Equal(3, _endpoint.Requests);
        Assert.Equal(extractor.Name, Assert.Single(result.Medications).Extractor);
        Assert.Equal(0, extractor.Fallbacks);
    }

    [Fact]
    public void A_refused_request_is_not_retried()
    {
        _endpoint.Fault = Faults.Status400;
        using var extractor = new OpenAiCompatibleExtractor(Options());
        AssertFellBack(Metformin, extractor.Extract(Metformin));
        Assert.Equal(1, _endpoint.Requests);
    }

    [Theory]
    [InlineData(Faults.NoContent)]
    [InlineData(Faults.ContentNotJson)]
    [InlineData(Faults.BadStatus)]
    [InlineData(Faults.ConfidenceOutOfRange)]
    [InlineData(Faults.BadDoseUnit)]
    [InlineData(Faults.ExtraField)]
    [InlineData(Faults.EvidenceNotInTranscript)]
    [InlineData(Faults.ExtraTranscript)]
    [InlineData(Faults.MissingTranscript)]
    [InlineData(Faults.DuplicateTranscript)]
    public void An_answer_that_breaks_the_schema_or_the_transcript_is_never_used(Faults fault)
    {
        _endpoint.Fault = fault;
        using var extractor = new OpenAiCompatibleExtractor(Options(o => { o.MaxAttempts = 2; o.BatchSize = 2; o.MaxBatchWaitMs = 5_000; }));
        var results = extractor.ExtractAll([Metformin, "Patient: I feel fine today."]);

        Assert.Equal(2, _endpoint.Requests);
        Assert.Equal(2, extractor.RejectedAnswers);
        AssertFellBack(Metformin, results[0]);
        Assert.Equal(EmbeddedExtractor.ExtractorName, results[1].Extractor);
        // A rejected answer is not cached either: the next call asks again (and now gets a good answer).
        _endpoint.Fault = Faults.None;
        Assert.All(extractor.ExtractAll([Metformin, "Patient: I feel fine today."]), r => Assert.Equal(extractor.Name, r.Extractor));
        Assert.Equal(3, _endpoint.Requests);
    }

    [Fact]
    public async Task The_rate_limiter_lets_one_request_through_per_token()
    {
        // A bucket of one token, replenished by hand: the rate is checked by counting requests per token, not by timing. (A manual
        // replenish adds the tokens the elapsed time is worth, capped at the bucket's size: one, as each call is 5 ms after the last.)
        using var limiter = new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = 1, TokensPerPeriod = 1, ReplenishmentPeriod = TimeSpan.FromMilliseconds(1), AutoReplenishment = false,
            QueueLimit = 100, QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
        using var extractor = new OpenAiCompatibleExtractor(Options(o => { o.BatchSize = 1; o.MaxConcurrentRequests = 8; o.RequestTimeoutMs = 60_000; }),
            null, null, limiter);
        var pending = Enumerable.Range(0, 5).Select(i => extractor.ExtractAsync($"Patient: call {i}.")).ToList();

        for (var granted = 1; granted <= 5; granted++)
        {
            if (granted > 1)
            {
                Thread.Sleep(5);
                Assert.True(limiter.TryReplenish());
            }
            // The granted requests reach the endpoint; the others wait in the limiter's queue.
            WaitUntil(() => limiter.GetStatistics()!.CurrentQueuedCount == 5 - granted && _endpoint.Requests == granted,
                () => $"queued {limiter.GetStatistics()!.CurrentQueuedCount}, requests {_endpoint.Requests}");
            Assert.Equal(granted, _endpoint.Requests);
        }
        var results = await Task.WhenAll(pending);
        Assert.Equal(5, _endpoint.Requests);
        Assert.All(results, r => Assert.Equal(extractor.Name, r.Extractor));
    }

    [Fact]
    public async Task Disposing_answers_every_waiting_caller_with_the_embedded_extractor()
    {
        // One request hangs at the endpoint, one batch waits for a request slot, one waits in the queue: none is left blocked.
        _endpoint.Fault = Faults.Hang;
        var extractor = new OpenAiCompatibleExtractor(Options(o => { o.BatchSize = 1; o.MaxConcurrentRequests = 1; o.RequestTimeoutMs = 60_000; }));
        var waiting = new[] { Metformin, "Patient: I took my metformin 500 mg twice today.", "Patient: metformin 850 mg, skipped it." }
            .Select(extractor.ExtractAsync).ToList();
        WaitUntil(() => _endpoint.Requests == 1, () => $"requests {_endpoint.Requests}");
        extractor.Dispose();

        var results = await Task.WhenAll(waiting).WaitAsync(TimeSpan.FromSeconds(30)); // a bound on a hang, not a timed assertion
        Assert.All(results, r => Assert.Equal(EmbeddedExtractor.ExtractorName, r.Extractor));
        Assert.Equal(3, extractor.Fallbacks);
        Assert.Equal(1, _endpoint.Requests);
    }

    [Fact]
    public void The_settings_rate_becomes_a_token_bucket_of_Burst_tokens()
    {
        using var limiter = OpenAiCompatibleExtractor.CreateLimiter(Options(o => { o.RequestsPerSecond = 0.01; o.Burst = 3; }));
        for (var i = 0; i < 3; i++) Assert.True(limiter.AttemptAcquire().IsAcquired);
        Assert.False(limiter.AttemptAcquire().IsAcquired); // the next token is 100 s away
    }

    [Fact]
    public void Settings_default_to_the_embedded_extractor_and_name_a_bad_value()
    {
        var none = new ConfigurationBuilder().Build();
        Assert.IsType<EmbeddedExtractor>(ExtractorOptions.Load(none).Create());

        static ConfigurationException Bad(params (string Key, string Value)[] settings) => Assert.Throws<ConfigurationException>(() =>
            ExtractorOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(
                settings.Select(s => KeyValuePair.Create("CallLogs:Extractor:" + s.Key, (string?)s.Value))).Build()));
        Assert.Contains("CallLogs:Extractor:Kind = 'gpt'", Bad(("Kind", "gpt")).Message);
        Assert.Contains("CallLogs:Extractor:BaseUrl", Bad(("Kind", "openai"), ("Model", "m")).Message);
        Assert.Contains("CallLogs:Extractor:Model", Bad(("Kind", "openai"), ("BaseUrl", "http://127.0.0.1:1/v1")).Message);
        Assert.Contains("CallLogs:Extractor:BatchSize = 0", Bad(("Kind", "openai"), ("BaseUrl", "http://127.0.0.1:1/v1"), ("Model", "m"), ("BatchSize", "0")).Message);
        Assert.Contains("240000", Bad(("Kind", "openai"), ("BaseUrl", "http://127.0.0.1:1/v1"), ("Model", "m"), ("RequestTimeoutMs", "100000")).Message);

        var openAi = ExtractorOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["CallLogs:Extractor:Kind"] = "openai", ["CallLogs:Extractor:BaseUrl"] = _endpoint.BaseUrl, ["CallLogs:Extractor:Model"] = "m",
        }).Build()).Create();
        using var disposable = (IDisposable)openAi;
        Assert.Equal("openai:m", Assert.IsType<OpenAiCompatibleExtractor>(openAi).Name);
    }

    private static void WaitUntil(Func<bool> condition, Func<string>? state = null)
    {
        // A bound on waiting for the other side, not an assertion on time.
        var giveUp = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < giveUp, "the condition did not become true in 30 s: " + state?.Invoke());
            Thread.Sleep(10);
        }
    }
}

/// <summary>The answer's checks on their own (pure: no endpoint).</summary>
public sealed class ExtractionAnswerTests
{
    private const string Transcript = "Patient: Took my Metformin. No headache.";

    private static string Answer(string index, string evidence) => $$"""
        {"transcripts":[{"index":{{index}},"medications":[{"generic_name":"Metformin","dose_value":null,"dose_unit":null,"frequency":null,
          "status":"taken","confidence":0.7,"evidence":"{{evidence}}"}],"foods":[],"symptoms":[]}]}
        """;

    [Fact]
    public void Evidence_gives_the_span_and_a_differently_cased_quote_is_found_at_its_place()
    {
        var exact = ExtractionAnswer.Read(Answer("0", "Metformin"), [Transcript], "openai:m", out var error);
        Assert.Null(error);
        var medication = Assert.Single(Assert.Single(exact!).Medications);
        Assert.Equal((new TranscriptSpan(17, 9), "metformin", "openai:m"), (medication.Span, medication.GenericName, medication.Extractor));
        var cased = ExtractionAnswer.Read(Answer("0", "took my metformin"), [Transcript], "openai:m", out error);
        Assert.Null(error);
        Assert.Equal(new TranscriptSpan(9, 17), Assert.Single(Assert.Single(cased!).Medications).Span);
    }

    [Theory]
    [InlineData("1e10", "Metformin", "index")]
    [InlineData("2.5", "Metformin", "schema")]
    [InlineData("-1", "Metformin", "schema")]
    [InlineData("0", "Metformin 500 mg", "does not occur")]
    [InlineData("0", "Metformin\\u0000", "control character")]
    public void A_bad_index_or_an_invented_quote_refuses_the_whole_answer(string index, string evidence, string why)
    {
        Assert.Null(ExtractionAnswer.Read(Answer(index, evidence), [Transcript], "openai:m", out var error));
        Assert.Contains(why, error);
    }
}
