using StreamHealth.CallLogs.Extraction;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.Host.Samples;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The local stack's sample call provider read by the product's own provider client: what `up` relies on to show
/// check-ins (a listing the poller accepts, transcripts the fetch worker accepts, calls the extractor finds entries in).</summary>
public sealed class CallSamplesTests
{
    [Fact]
    public async Task The_sample_provider_lists_and_serves_calls_the_pipeline_accepts()
    {
        await using var samples = await CallSamples.StartAsync(new TestLogs());
        using var stop = new CancellationTokenSource();
        // No gateway: the backfill only, then the first live call after 0.2 s.
        var run = samples.RunAsync("", TimeSpan.FromMilliseconds(200), stop.Token);
        var endpoint = samples.Endpoint;
        Assert.Equal((CdcMode.Hybrid, CallSamples.Provider), (endpoint.CdcMode, "local-dev"));
        using var client = new CallProviderClient(CallSamples.Provider, endpoint, TimeSpan.FromSeconds(10));

        CallPage? page = null;
        StreamTestKit.WaitFor(() => (page = client.ListAsync(DateTimeOffset.UtcNow.AddHours(-1), 100, null, CancellationToken.None).Result.Page)
            is { Calls.Count: > CallSamples.BackfillCalls }, TimeSpan.FromSeconds(30), () => $"listing: {page?.Calls.Count}");
        await stop.CancelAsync();
        await run;
        Assert.Null(page!.NextPageToken);
        // The backfill spans the last hour, the live calls are now.
        Assert.InRange(page.Calls.Min(c => c.CompletedAt), DateTimeOffset.UtcNow.AddMinutes(-51), DateTimeOffset.UtcNow.AddMinutes(-49));
        var extractor = new EmbeddedExtractor();
        foreach (var listed in page.Calls)
        {
            var fetched = await client.FetchAsync(listed.CallId, CancellationToken.None);
            Assert.Equal(FetchOutcome.Fetched, fetched.Outcome);
            Assert.Equal(listed.PatientId, fetched.Call!.PatientId);
            var entries = extractor.Extract(fetched.Call.Transcript);
            Assert.True(entries.Medications.Count + entries.Foods.Count + entries.Symptoms.Count >= 2, fetched.Call.Transcript);
        }
        // Without the token the provider refuses, as a real one does.
        using var stranger = new CallProviderClient(CallSamples.Provider, new CallProviderEndpoint { BaseUrl = endpoint.BaseUrl, ApiToken = "wrong" },
            TimeSpan.FromSeconds(10));
        Assert.Equal(FetchOutcome.Unavailable, (await stranger.FetchAsync(page.Calls[0].CallId, CancellationToken.None)).Outcome);
    }
}
