using System.Text;
using Microsoft.Extensions.Configuration;
using StreamHealth.CallLogs.Ingest;
using StreamHealth.Runtime.Streams;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;
using CallCompleted = StreamHealth.Schemas.Avro.CallLogs.CallCompleted;
using CallLog = StreamHealth.Schemas.Avro.CallLogs.CallLog;
using CallLogOrigin = StreamHealth.Schemas.Avro.CallLogs.CallLogOrigin;

namespace StreamHealth.Tests.CallLogs;

/// <summary>The polling connector on real parts (embedded Kafka, the registry and the ledger on PostgreSQL) against a fake
/// provider's listing that misbehaves as providers do: duplicate pages, out-of-order pages, calls listed late, a listing that
/// fails half-way, transcripts that appear late. Each test has its own provider name (its own cursor and ledger rows), its own
/// fake provider and its own raw topic.</summary>
public sealed class CallPollerTests(CallFetchWorkerFixture f) : IClassFixture<CallFetchWorkerFixture>
{
    private const string Token = "poll-test-token-0123456789";

    /// <summary>A clock the test moves (the hybrid grace and the horizon are read from it).</summary>
    private sealed class TestClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private sealed record Setup(string Name, FakeCallProvider Provider, string Raw, CallFetchOptions Options) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Provider.DisposeAsync();
    }

    private async Task<Setup> NewProviderAsync(CdcMode mode, int pageSize = 10)
    {
        var name = $"poll-{Guid.NewGuid():N}"[..17];
        var provider = await FakeCallProvider.StartAsync(name, "unused-webhook-secret-0123456789abcdef");
        provider.ApiToken = Token;
        var raw = f.Kafka.NewTopic("raw", 1);
        f.Kafka.Cluster.CreateTopic(Topics.DeadLetterOf(raw), 1);
        var options = new CallFetchOptions
        {
            Providers = { [name] = new CallProviderEndpoint { BaseUrl = provider.BaseUrl, ApiToken = Token, CdcMode = mode, PollIntervalMs = 200 } },
            RequestTimeoutMs = 2_000, MaxAttempts = 3, InitialBackoffMs = 50, MaxBackoffMs = 200, RetryBudgetMs = 8_000, OutagePauseMs = 500,
            PollPageSize = pageSize, PollLookbackMs = 60 * 60_000, HybridGraceMs = 5 * 60_000, PollMaxBackoffMs = 1_000,
        };
        return new Setup(name, provider, raw, options);
    }

    private CallPoller Poller(Setup s, TimeProvider? clock = null) =>
        new(s.Options, s.Raw, f.Kafka.BootstrapServers, f.Ledger, f.Registry.Connection, f.Logs, clock);

    /// <summary>A fetch worker of the setup's raw topic, writing to a calls topic of its own.</summary>
    private (string Calls, CallFetchWorker Worker) FetchWorker(Setup s)
    {
        var calls = f.Kafka.NewTopic("calls", 1);
        return (calls, new CallFetchWorker(s.Options, new CallFetchNames(s.Raw, calls, "fetch-" + Guid.NewGuid().ToString("N")),
            f.Kafka.BootstrapServers, f.Ledger, f.Registry.Connection, f.Logs).Start());
    }

    private List<CallCompleted> Notices(Setup s, IEnumerable<string> callIds, int atLeast, int seconds = 30) =>
        f.Drain(s.Raw, callIds, found => found.Count >= atLeast, seconds).ConvertAll(m => f.Registry.Read<CallCompleted>(s.Raw, m.Value));

    private static List<string> Calls(FakeCallProvider provider, string prefix, int count, DateTimeOffset firstEnd)
    {
        var ids = new List<string>();
        for (var i = 0; i < count; i++)
        {
            var id = $"{prefix}-{i:D3}-{Guid.NewGuid():N}"[..(prefix.Length + 12)];
            // Ended one minute apart, in an order unrelated to the ids.
            provider.CompleteCall(id, "patient-" + (i % 3), firstEnd.AddMinutes((i * 7) % count));
            ids.Add(id);
        }
        return ids;
    }

    [Fact]
    public async Task Each_listed_call_is_noticed_once_through_repeated_and_out_of_order_pages()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling, pageSize: 4);
        var now = DateTimeOffset.UtcNow;
        var ids = Calls(s.Provider, "page", 11, now.AddMinutes(-40));
        s.Provider.RepeatPages = true;
        s.Provider.ListByCallId = true;
        using var poller = Poller(s);

        var first = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.True(first.Complete, first.Failure);
        // Every page twice: 22 calls listed, 11 noticed.
        Assert.Equal((22, 11, 0), (first.Listed, first.Noticed, first.Known));
        var notices = Notices(s, ids, atLeast: 11);
        Assert.Equal(ids.Order(StringComparer.Ordinal), notices.Select(n => n.call_id).Order(StringComparer.Ordinal));
        var one = Assert.Single(notices, n => n.call_id == ids[3]);
        Assert.Equal((CallLogOrigin.CALL_LOG_ORIGIN_POLLING, "poll:" + ids[3], s.Name, "patient-0"), (one.origin, one.event_id, one.provider, one.patient_id));
        Assert.Equal(now.AddMinutes(-40 + 21 % 11).ToUnixTimeMilliseconds(), AvroTime.ToUnixMs(one.event_time_unix_ms));

        // The next poll lists them again (the look-back) and notices nothing.
        var second = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 0, 11), (second.Complete, second.Noticed, second.Known));
        Assert.Equal(11, Notices(s, ids, atLeast: 11, seconds: 4).Count);
        // The cursor is the latest end time taken up.
        Assert.Equal(now.AddMinutes(-30).ToUnixTimeMilliseconds(), (await f.Ledger.CursorAsync(s.Name, CancellationToken.None))!.Value.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task A_restart_after_a_listing_failed_half_way_neither_skips_nor_repeats_a_call()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling, pageSize: 5);
        var ids = Calls(s.Provider, "restart", 13, DateTimeOffset.UtcNow.AddMinutes(-50));
        s.Provider.ListingFailsAfterPages = 1;
        using (var before = Poller(s))
        {
            var failed = await before.PollOnceAsync(s.Name, CancellationToken.None);
            Assert.False(failed.Complete);
            Assert.Contains("answered HTTP 502 to its call listing", failed.Failure);
            Assert.Equal(5, failed.Noticed);
        }
        // The cursor did not move past what the failed poll had not seen.
        Assert.Null(await f.Ledger.CursorAsync(s.Name, CancellationToken.None));

        s.Provider.ListingFailsAfterPages = null;
        var later = Calls(s.Provider, "later", 4, DateTimeOffset.UtcNow.AddMinutes(-20));
        using var after = Poller(s);
        var resumed = await after.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 12, 5), (resumed.Complete, resumed.Noticed, resumed.Known));
        var all = ids.Concat(later).ToList();
        var notices = Notices(s, all, atLeast: all.Count);
        Assert.Equal(all.Order(StringComparer.Ordinal), notices.Select(n => n.call_id).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_call_the_provider_lists_late_is_found_by_the_look_back()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling);
        var now = DateTimeOffset.UtcNow;
        var early = Calls(s.Provider, "early", 3, now.AddMinutes(-10));
        var late = $"late-{Guid.NewGuid():N}"[..13];
        // It ended before the calls the first poll takes up, but the listing shows it only afterwards.
        s.Provider.CompleteUnlisted(late, "patient-late", now.AddMinutes(-30));
        using var poller = Poller(s);
        Assert.Equal(3, (await poller.PollOnceAsync(s.Name, CancellationToken.None)).Noticed);
        s.Provider.List(late);
        var second = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 1, 3), (second.Complete, second.Noticed, second.Known));
        Assert.Equal(4, Notices(s, [.. early, late], atLeast: 4).Count);
    }

    [Fact]
    public async Task A_call_dated_far_in_the_future_is_taken_up_for_the_extraction_to_refuse_and_does_not_move_the_cursor()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling);
        var now = DateTimeOffset.UtcNow;
        var (future, soon, normal) = ($"y2999-{Guid.NewGuid():N}"[..14], $"skew-{Guid.NewGuid():N}"[..13], $"ok-{Guid.NewGuid():N}"[..11]);
        s.Provider.CompleteCall(future, "patient-1", new DateTimeOffset(2999, 1, 1, 0, 0, 0, TimeSpan.Zero));
        // A provider clock two minutes ahead: held back until it is no longer in the future.
        s.Provider.CompleteCall(soon, "patient-2", now.AddMinutes(2));
        s.Provider.CompleteCall(normal, "patient-3", now.AddMinutes(-10));
        using var poller = Poller(s);
        var poll = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 2, 1), (poll.Complete, poll.Noticed, poll.HeldBack));
        Assert.Equal([normal, future], Notices(s, [future, soon, normal], atLeast: 2).Select(n => n.call_id));
        Assert.Equal(now.AddMinutes(-10).ToUnixTimeMilliseconds(), (await f.Ledger.CursorAsync(s.Name, CancellationToken.None))!.Value.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task Hybrid_takes_up_only_calls_whose_webhook_never_came_and_leaves_recent_ones_to_the_webhook()
    {
        await using var s = await NewProviderAsync(CdcMode.Hybrid);
        var clock = new TestClock(DateTimeOffset.UtcNow);
        var (viaWebhook, missed, recent) = ($"hook-{Guid.NewGuid():N}"[..13], $"miss-{Guid.NewGuid():N}"[..13], $"new-{Guid.NewGuid():N}"[..12]);
        s.Provider.CompleteCall(viaWebhook, "patient-1", clock.Now.AddMinutes(-20));
        s.Provider.CompleteCall(missed, "patient-2", clock.Now.AddMinutes(-15));
        s.Provider.CompleteCall(recent, "patient-3", clock.Now.AddMinutes(-1));
        // The webhook brought this one: the fetch worker recorded it.
        await f.Ledger.MarkFetchedAsync(s.Name, viaWebhook, clock.Now.AddMinutes(-20), polled: false, CancellationToken.None);
        using var poller = Poller(s, clock);

        var first = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 1, 1, 1), (first.Complete, first.Noticed, first.Known, first.HeldBack));
        Assert.Equal([missed], Notices(s, [viaWebhook, missed, recent], atLeast: 1).Select(n => n.call_id));

        // Its webhook never came either: once the grace has passed, the poller takes it up.
        clock.Now = clock.Now.AddMinutes(6);
        var second = await poller.PollOnceAsync(s.Name, CancellationToken.None);
        Assert.Equal((true, 1, 0, 2), (second.Complete, second.Noticed, second.HeldBack, second.Known));
        Assert.Equal([missed, recent], Notices(s, [viaWebhook, missed, recent], atLeast: 2).Select(n => n.call_id));
    }

    [Fact]
    public async Task Polled_calls_reach_calllogs_calls_once_even_when_a_webhook_and_a_poll_both_bring_one()
    {
        await using var s = await NewProviderAsync(CdcMode.Hybrid);
        var (calls, worker) = FetchWorker(s);
        using var _ = worker;
        var ids = Calls(s.Provider, "both", 6, DateTimeOffset.UtcNow.AddMinutes(-30));
        // The webhook's notices of the first three (a new event id each, as the gateway produces them)...
        f.SendTo(s.Raw, [.. ids.Take(3).Select(id => new CallCompleted
        {
            event_time_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.AddMinutes(-25).ToUnixTimeMilliseconds()), event_id = "evt-" + id,
            call_id = id, provider = s.Name, received_at_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()),
            origin = CallLogOrigin.CALL_LOG_ORIGIN_WEBHOOK,
        })]);
        WaitFor(() => worker.Fetched >= 3, TimeSpan.FromSeconds(60), () => $"webhook notices not fetched; logs:\n{f.Logs}");
        // ...and the poller, which now takes up the other three only.
        using var poller = Poller(s).Start();
        WaitFor(() => worker.Fetched >= 6, TimeSpan.FromSeconds(60), () => $"polled notices not fetched ({poller.Noticed} noticed); logs:\n{f.Logs}");
        // A notice repeated after a crash (the ledger row was lost with it) is committed without a fetch.
        f.SendTo(s.Raw, new CallCompleted
        {
            event_time_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.AddMinutes(-25).ToUnixTimeMilliseconds()), event_id = "poll:" + ids[4],
            call_id = ids[4], provider = s.Name, received_at_unix_ms = AvroTime.FromUnixMs(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()),
            origin = CallLogOrigin.CALL_LOG_ORIGIN_POLLING,
        });
        WaitFor(() => worker.AlreadyFetched >= 1, TimeSpan.FromSeconds(60), () => $"the repeated notice was not skipped; logs:\n{f.Logs}");

        var logs = f.Drain(calls, ids, found => found.Count >= 6).ConvertAll(m => f.Registry.Read<CallLog>(calls, m.Value));
        Assert.Equal(ids.Order(StringComparer.Ordinal), logs.Select(l => l.call_id).Order(StringComparer.Ordinal));
        Assert.Equal(3, logs.Count(l => l.origin == CallLogOrigin.CALL_LOG_ORIGIN_POLLING));
        Assert.All(ids, id => Assert.Equal(1, s.Provider.FetchesOf(id)));
        Assert.Equal(3, poller.Noticed);
    }

    [Fact]
    public async Task A_transcript_that_appears_late_is_waited_for_and_not_dead_lettered()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling);
        var (calls, worker) = FetchWorker(s);
        using var _ = worker;
        var callId = $"slowtx-{Guid.NewGuid():N}"[..15];
        s.Provider.CompleteCall(callId, "patient-9", DateTimeOffset.UtcNow.AddSeconds(-5), transcript: "Patient: the transcript came late.");
        s.Provider.HoldTranscript(callId);
        using var poller = Poller(s);
        Assert.Equal(1, (await poller.PollOnceAsync(s.Name, CancellationToken.None)).Noticed);

        WaitFor(() => worker.Pauses >= 1 && s.Provider.FetchesOf(callId) >= 2, TimeSpan.FromSeconds(60), () => $"no wait for the transcript; logs:\n{f.Logs}");
        s.Provider.ReleaseTranscript(callId);
        var log = f.Registry.Read<CallLog>(calls, Assert.Single(f.Drain(calls, [callId], found => found.Count >= 1)).Value);
        Assert.Equal("Patient: the transcript came late.", log.transcript);
        Assert.Empty(f.Drain(Topics.DeadLetterOf(s.Raw), [callId], _ => true, seconds: 3));
        Assert.Contains($"does not know call {callId} (HTTP 404): the call ended at", f.Logs.Text);
    }

    [Fact]
    public async Task Two_hosts_polling_one_provider_notice_each_call_once()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling, pageSize: 3);
        var ids = Calls(s.Provider, "lease", 9, DateTimeOffset.UtcNow.AddMinutes(-30));
        using (var a = Poller(s).Start())
        using (var b = Poller(s).Start())
        {
            WaitFor(() => a.Polls + b.Polls >= 6, TimeSpan.FromSeconds(60), () => $"{a.Polls} + {b.Polls} polls; logs:\n{f.Logs}");
            var more = Calls(s.Provider, "lease2", 5, DateTimeOffset.UtcNow.AddMinutes(-10));
            ids.AddRange(more);
            var polls = a.Polls + b.Polls;
            WaitFor(() => a.Polls + b.Polls >= polls + 4, TimeSpan.FromSeconds(60), () => $"{a.Polls} + {b.Polls} polls; logs:\n{f.Logs}");
            Assert.Equal(ids.Count, a.Noticed + b.Noticed);
        }
        var notices = Notices(s, ids, atLeast: ids.Count, seconds: 30);
        Assert.Equal(ids.Order(StringComparer.Ordinal), notices.Select(n => n.call_id).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_listing_outage_backs_off_and_loses_nothing()
    {
        await using var s = await NewProviderAsync(CdcMode.Polling);
        var ids = Calls(s.Provider, "down", 4, DateTimeOffset.UtcNow.AddMinutes(-30));
        s.Provider.ListingOutage = true;
        using var poller = Poller(s);
        poller.StallAfter = TimeSpan.FromMilliseconds(500);
        poller.Start();
        WaitFor(() => poller.Failures >= 3, TimeSpan.FromSeconds(60), () => $"{poller.Failures} failed polls; logs:\n{f.Logs}");
        // /health sees it: a listing failing for longer than StallAfter, with the provider's answer.
        WaitFor(() => poller.Health() is { Stalled: true, Lag: 1 }, TimeSpan.FromSeconds(30), () => $"health: {poller.Health()}");
        Assert.Contains("answered HTTP 503 to its call listing", poller.Health().LastError);
        Assert.Equal(0, poller.Noticed);
        // Interval 200 ms, backoff doubling to 1 s: far fewer listings than 200 ms polling would make in the same time.
        var listings = s.Provider.Listings;
        Thread.Sleep(3_000);
        Assert.InRange(s.Provider.Listings - listings, 1, 8);
        s.Provider.ListingOutage = false;
        WaitFor(() => poller.Noticed >= 4, TimeSpan.FromSeconds(60), () => $"nothing noticed after the outage; logs:\n{f.Logs}");
        WaitFor(() => poller.Health() is { Stalled: false, Lag: 0 }, TimeSpan.FromSeconds(30), () => $"health: {poller.Health()}");
        Assert.Equal(4, Notices(s, ids, atLeast: 4).Count);
        Assert.Contains("answered HTTP 503 to its call listing", f.Logs.Text);
    }
}

/// <summary>The listing page and the polling settings, checked without a network.</summary>
public sealed class CallPollParsingTests
{
    private static readonly CallProviderClient Client = new("acme", new CallProviderEndpoint { BaseUrl = "http://127.0.0.1:9", ApiToken = "t" }, TimeSpan.FromSeconds(1));

    [Theory]
    [InlineData("""[]""", "no calls array")]
    [InlineData("""{"calls": [{"completed_at": "2026-12-01T10:00:00Z"}]}""", "call 0: call_id is required")]
    [InlineData("""{"calls": [{"call_id": "a b", "completed_at": "2026-12-01T10:00:00Z"}]}""", "call 0: call_id = 'a b': must be")]
    [InlineData("""{"calls": [{"call_id": "c1"}]}""", "call c1: completed_at missing or not an ISO 8601 time")]
    [InlineData("""{"calls": [{"call_id": "c1", "completed_at": "yesterday"}]}""", "call c1: completed_at missing")]
    [InlineData("""{"calls": [], "next_page_token": "p1"}""", "next_page_token repeats this page's token 'p1'")]
    [InlineData("""{"calls": [""", "not JSON")]
    public void A_malformed_page_is_refused_naming_the_problem(string body, string reason)
    {
        var result = Client.ParsePage(Encoding.UTF8.GetBytes(body), pageToken: "p1");
        Assert.Equal(FetchOutcome.Refused, result.Outcome);
        Assert.Contains(reason, result.Reason);
    }

    [Fact]
    public void A_good_page_is_read()
    {
        var result = Client.ParsePage("""{"calls": [{"call_id": "c1", "patient_id": "p-1", "completed_at": "2026-12-01T10:00:00+01:00"}], "next_page_token": null}"""u8, null);
        Assert.Equal(FetchOutcome.Fetched, result.Outcome);
        Assert.Null(result.Page!.NextPageToken);
        Assert.Equal(new ListedCall("c1", "p-1", new DateTimeOffset(2026, 12, 1, 9, 0, 0, TimeSpan.Zero)), Assert.Single(result.Page.Calls));
    }

    [Theory]
    [InlineData("hybrid", null)]
    [InlineData("Polling", null)]
    [InlineData("sometimes", "CallLogs:Fetch:Providers:acme:CdcMode")]
    public void Cdc_mode_is_read_from_settings(string mode, string? error)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["CallLogs:Fetch:Providers:acme:BaseUrl"] = "https://calls.example.org", ["CallLogs:Fetch:Providers:acme:ApiToken"] = "t0k3n",
            ["CallLogs:Fetch:Providers:acme:CdcMode"] = mode,
        }).Build();
        if (error is null)
            Assert.Equal(Enum.Parse<CdcMode>(mode, ignoreCase: true), CallFetchOptions.Load(configuration).Providers["acme"].CdcMode);
        else
            Assert.Contains(error, Assert.Throws<StreamHealth.Runtime.Configuration.ConfigurationException>(() => CallFetchOptions.Load(configuration)).Message);
    }

    [Fact]
    public void A_grace_longer_than_the_look_back_is_refused()
    {
        var options = new CallFetchOptions { HybridGraceMs = 3_600_000, PollLookbackMs = 3_600_000 };
        Assert.Contains("need 0 <= grace < look-back", Assert.Throws<ArgumentException>(() => options.Validate()).Message);
    }
}
