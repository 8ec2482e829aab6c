using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using CallCompleted = StreamHealth.Schemas.Avro.CallLogs.CallCompleted;
using CallKey = StreamHealth.Schemas.Avro.Common.CallKey;
using CallLogOrigin = StreamHealth.Schemas.Avro.CallLogs.CallLogOrigin;

namespace StreamHealth.CallLogs.Ingest;

/// <summary>What one poll of a provider's listing did.</summary>
public sealed record PollResult(bool Complete, int Listed, int Noticed, int Known, int HeldBack, string? Failure);

/// <summary>The polling connector for providers whose <see cref="CdcMode"/> is polling or hybrid: every
/// <see cref="CallProviderEndpoint.PollIntervalMs"/> it reads the provider's listing (<c>GET /calls?completed_since=…</c>, page by
/// page) and puts a <see cref="CallCompleted"/> notice (origin polling) on calllogs.raw for each call not yet taken up, exactly
/// as a webhook would; the fetch worker does the rest.
/// <list type="bullet">
/// <item>No skip, no repeat across restarts: a call is recorded in the ledger (<see cref="CallLedger"/>) after its notice is
/// acknowledged, and the cursor (calllogs.poll_cursors) moves only after a whole listing was taken up. A poll lists from the
/// cursor less <see cref="CallFetchOptions.PollLookbackMs"/>, so calls the provider lists late are found; the ledger removes
/// what that overlap, a repeated or overlapping page, or out-of-order pages list again. A crash between a notice's
/// acknowledgement and its ledger row repeats that one notice, and the fetch worker, which fetches only calls without a
/// fetched_at, does not fetch it twice.</item>
/// <item>Hybrid: calls that ended less than <see cref="CallFetchOptions.HybridGraceMs"/> ago are left to the webhook, and the
/// cursor never passes them; any call a webhook notice has brought is in the ledger by then (the fetch worker records it), so
/// the poller adds only the ones whose webhook never came.</item>
/// <item>One poller per provider across all hosts: each poll runs under a PostgreSQL advisory lock held for as long as its
/// session lives (<see cref="CallLedger.TryLeaseAsync"/>); a host that dies loses it and another takes over.</item>
/// <item>A failed listing (down, slow, malformed) keeps the cursor and waits twice as long each time, jittered, up to
/// <see cref="CallFetchOptions.PollMaxBackoffMs"/>; what it had already taken up stays taken.</item>
/// </list></summary>
public sealed class CallPoller : ISinkHealthSource, IDisposable
{
    public const string ProcessorName = "calllogs-poll";
    /// <summary>Most pages one poll reads: a listing longer than this is a provider bug (or a look-back far too long).</summary>
    public const int MaxPagesPerPoll = 1_000;
    /// <summary>How far ahead of our clock a provider's may be (the platform's Input:MaxAheadSeconds default).</summary>
    public static readonly TimeSpan FutureSkew = TimeSpan.FromMinutes(5);

    private readonly CallFetchOptions _options;
    private readonly string _rawTopic;
    private readonly CallLedger _ledger;
    private readonly TimeProvider _clock;
    private readonly ILogger _log;
    private readonly AvroSerDes<CallKey> _keys;
    private readonly AvroSerDes<CallCompleted> _notices;
    private readonly Lazy<IProducer<byte[], byte[]>> _producer;
    private readonly Dictionary<string, (CallProviderClient Client, CallProviderEndpoint Endpoint)> _polled = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private long _polls, _noticed, _failures, _lastCompleteUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), _lastErrorUnixMs;
    private int _failingProviders;
    private string? _lastError;

    public CallPoller(CallFetchOptions options, string rawTopic, string bootstrapServers, CallLedger ledger, SchemaRegistryConnection registry,
        ILoggerFactory logs, TimeProvider? clock = null)
    {
        options.Validate();
        _options = options;
        _rawTopic = rawTopic;
        _ledger = ledger;
        _clock = clock ?? TimeProvider.System;
        _log = logs.CreateLogger("StreamHealth.CallLogs." + ProcessorName);
        _keys = registry.SerDes<CallKey>();
        _notices = registry.SerDes<CallCompleted>();
        _producer = new(() => new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrapServers, EnableIdempotence = true, LingerMs = 1, ClientId = ProcessorName, MessageTimeoutMs = 30_000,
        }).Build());
        foreach (var (name, endpoint) in options.Providers)
            if (endpoint.CdcMode != CdcMode.Webhook)
                _polled[name] = (new CallProviderClient(name, endpoint, TimeSpan.FromMilliseconds(options.RequestTimeoutMs)), endpoint);
    }

    /// <summary>Polls that read a whole listing.</summary>
    public long Polls => Interlocked.Read(ref _polls);
    /// <summary>Notices put on calllogs.raw (each acknowledged).</summary>
    public long Noticed => Interlocked.Read(ref _noticed);
    /// <summary>Polls that ended early (listing failed or malformed, Kafka or PostgreSQL unavailable).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    public TimeSpan StallAfter { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>The poller's progress for /health, as a sink's: notices put on calllogs.raw, whether a provider's listing is failing
    /// (Lag 1 while one is: its calls wait), the last complete poll and the last reason. Stalled: a listing has kept failing for
    /// <see cref="StallAfter"/> (a provider down, or a page it keeps sending malformed), so its calls are not being taken up.</summary>
    public SinkHealth Health()
    {
        var failing = Volatile.Read(ref _failingProviders);
        var lastComplete = Interlocked.Read(ref _lastCompleteUnixMs);
        return new SinkHealth(ProcessorName, "provider listings", ProcessorName, failing, Noticed, 0, false, lastComplete,
            Volatile.Read(ref _lastError), Interlocked.Read(ref _lastErrorUnixMs),
            failing > 0 && _clock.GetUtcNow().ToUnixTimeMilliseconds() - lastComplete >= (long)StallAfter.TotalMilliseconds);
    }

    public CallPoller Start()
    {
        _loop = Task.Run(() => RunAsync(_stop.Token));
        return this;
    }

    private async Task RunAsync(CancellationToken stop)
    {
        var due = _polled.Keys.ToDictionary(name => name, _ => _clock.GetUtcNow(), StringComparer.Ordinal);
        var failuresInRow = _polled.Keys.ToDictionary(name => name, _ => 0, StringComparer.Ordinal);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                foreach (var (name, (_, endpoint)) in _polled)
                {
                    if (_clock.GetUtcNow() < due[name]) continue;
                    var ok = await PollLeasedAsync(name, stop);
                    failuresInRow[name] = ok ? 0 : failuresInRow[name] + 1;
                    Volatile.Write(ref _failingProviders, failuresInRow.Values.Count(n => n > 0));
                    due[name] = _clock.GetUtcNow() + NextWait(endpoint.PollIntervalMs, failuresInRow[name]);
                }
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1_000, _polled.Values.Min(p => p.Endpoint.PollIntervalMs))), stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            _log.LogCritical(e, "{Poller} stopped", ProcessorName);
        }
    }

    /// <summary>The interval after a good poll; after n failed ones in a row, interval × 2^n drawn uniformly from its upper half
    /// (jittered so that hosts do not retry together) and capped.</summary>
    private TimeSpan NextWait(int intervalMs, int failuresInRow)
    {
        if (failuresInRow == 0) return TimeSpan.FromMilliseconds(intervalMs);
        var ceiling = Math.Min((double)_options.PollMaxBackoffMs, intervalMs * Math.Pow(2, Math.Min(failuresInRow, 20)));
        return TimeSpan.FromMilliseconds(ceiling * (0.5 + 0.5 * Random.Shared.NextDouble()));
    }

    /// <summary>One poll under the provider's lease; false when it failed (not when another host holds the lease).</summary>
    private async Task<bool> PollLeasedAsync(string provider, CancellationToken stop)
    {
        Npgsql.NpgsqlConnection? lease;
        try
        {
            lease = await _ledger.TryLeaseAsync(provider, stop);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            Interlocked.Increment(ref _failures);
            _log.LogWarning("{Poller}: PostgreSQL unavailable for {Provider}'s polling lease ({Reason}); next poll later", ProcessorName, provider, e.Message);
            return false;
        }
        if (lease is null)
        {
            _log.LogDebug("{Poller}: another host polls {Provider}", ProcessorName, provider);
            return true;
        }
        try
        {
            var result = await PollOnceAsync(provider, stop);
            return result.Complete;
        }
        finally
        {
            await CallLedger.ReleaseLeaseAsync(lease);
        }
    }

    /// <summary>Reads the provider's whole listing once and takes up every call not yet taken up (the loop calls it under the
    /// provider's lease; tests call it directly).</summary>
    public async Task<PollResult> PollOnceAsync(string provider, CancellationToken stop)
    {
        var (client, endpoint) = _polled[provider];
        int listed = 0, noticed = 0, known = 0, heldBack = 0;
        PollResult Failed(string why)
        {
            Interlocked.Increment(ref _failures);
            Volatile.Write(ref _lastError, $"{provider}: {why}");
            Interlocked.Exchange(ref _lastErrorUnixMs, _clock.GetUtcNow().ToUnixTimeMilliseconds());
            _log.LogWarning("{Poller}: {Provider}: {Reason}; cursor kept, {Noticed} calls taken up before", ProcessorName, provider, why, noticed);
            return new PollResult(false, listed, noticed, known, heldBack, why);
        }

        var now = _clock.GetUtcNow();
        DateTimeOffset? stored;
        try
        {
            stored = await _ledger.CursorAsync(provider, stop);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            return Failed("PostgreSQL unavailable reading the cursor: " + e.Message);
        }
        var lookback = TimeSpan.FromMilliseconds(_options.PollLookbackMs);
        // A provider's first poll starts one look-back ago: calls older than that predate the connector.
        var cursor = stored ?? now - lookback;
        // Calls that end after the horizon are left for a later poll (in hybrid mode the webhook's grace; in both a provider's
        // clock a little ahead of ours). A call dated further ahead than any clock skew is a bad record: it is taken up now, so
        // that the extraction dead-letters it naming its time (never held back for good, which would lose it in silence), and
        // it does not move the cursor, which would skip the calls still to come.
        var horizon = endpoint.CdcMode == CdcMode.Hybrid ? now - TimeSpan.FromMilliseconds(_options.HybridGraceMs) : now;
        var absurdAfter = now + FutureSkew;
        var since = cursor - lookback;
        var newCursor = cursor;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string? token = null;
        for (var pages = 0; ; pages++)
        {
            if (pages == MaxPagesPerPoll) return Failed($"the listing has more than {MaxPagesPerPoll} pages of {_options.PollPageSize}");
            var page = await client.ListAsync(since, _options.PollPageSize, token, stop);
            if (page.Outcome != FetchOutcome.Fetched) return Failed(page.Reason!);
            var fresh = new List<ListedCall>();
            foreach (var call in page.Page!.Calls)
            {
                listed++;
                if (!seen.Add(call.CallId)) continue;
                if (call.CompletedAt > horizon && call.CompletedAt <= absurdAfter) heldBack++;
                else fresh.Add(call);
            }
            HashSet<string> inLedger;
            try
            {
                inLedger = await _ledger.KnownAsync(provider, fresh.ConvertAll(c => c.CallId), stop);
            }
            catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
            {
                return Failed("PostgreSQL unavailable reading the ledger: " + e.Message);
            }
            // Oldest first, so the notices on calllogs.raw follow the calls' order within a page.
            fresh.Sort(static (a, b) => a.CompletedAt.CompareTo(b.CompletedAt));
            foreach (var call in fresh)
            {
                if (call.CompletedAt > newCursor && call.CompletedAt <= absurdAfter) newCursor = call.CompletedAt;
                if (inLedger.Contains(call.CallId))
                {
                    known++;
                    continue;
                }
                if (await NoticeAsync(provider, call, now, stop) is { } failure) return Failed(failure);
                noticed++;
                Interlocked.Increment(ref _noticed);
            }
            token = page.Page.NextPageToken;
            if (token is null) break;
        }
        try
        {
            if (newCursor > cursor || stored is null) await _ledger.AdvanceCursorAsync(provider, newCursor, stop);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            return Failed("PostgreSQL unavailable moving the cursor: " + e.Message);
        }
        Interlocked.Increment(ref _polls);
        Interlocked.Exchange(ref _lastCompleteUnixMs, _clock.GetUtcNow().ToUnixTimeMilliseconds());
        if (noticed > 0)
            _log.LogInformation("{Poller}: {Provider}: {Noticed} new calls of {Listed} listed ({Known} already taken up, {HeldBack} held back)",
                ProcessorName, provider, noticed, listed, known, heldBack);
        return new PollResult(true, listed, noticed, known, heldBack, null);
    }

    /// <summary>Puts the call's notice on calls.raw and records it in the ledger; the failure's reason, or null.</summary>
    private async Task<string?> NoticeAsync(string provider, ListedCall call, DateTimeOffset now, CancellationToken stop)
    {
        if (call.PatientId is not null && InputRules.CheckId("patient_id", call.PatientId) is { } badPatient)
            // The fetched call names the patient as well; the fetch worker dead-letters the call if neither is usable.
            _log.LogWarning("{Poller}: {Provider} listed call {CallId} with {Reason}; the notice leaves it out", ProcessorName, provider, call.CallId, badPatient);
        var notice = new CallCompleted
        {
            event_time_unix_ms = AvroTime.FromUnixMs(call.CompletedAt.ToUnixTimeMilliseconds()),
            // Stable per call: a repeated notice of the poller's is recognisably the same notice.
            event_id = "poll:" + call.CallId, call_id = call.CallId, provider = provider,
            patient_id = call.PatientId is not null && InputRules.IsValidId(call.PatientId) ? call.PatientId : null,
            received_at_unix_ms = AvroTime.FromUnixMs(now.ToUnixTimeMilliseconds()), origin = CallLogOrigin.CALL_LOG_ORIGIN_POLLING,
        };
        try
        {
            await _producer.Value.ProduceAsync(_rawTopic, new Message<byte[], byte[]>
            {
                Key = _keys.Serialize(new CallKey { call_id = call.CallId }, new SerializationContext(MessageComponentType.Key, _rawTopic)),
                Value = _notices.Serialize(notice, new SerializationContext(MessageComponentType.Value, _rawTopic)),
            }, stop);
        }
        catch (Exception e) when (e is ProduceException<byte[], byte[]> || ConfluentWire.IsRegistryUnavailable(e))
        {
            return $"the notice of call {call.CallId} was not acknowledged on {_rawTopic}: {e.Message}";
        }
        try
        {
            await _ledger.MarkNoticedAsync(provider, call.CallId, call.CompletedAt, stop);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            // The notice is out: the next poll may notice the call again, and the fetch worker fetches it once.
            return $"PostgreSQL unavailable recording call {call.CallId} ({e.Message})";
        }
        return null;
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _loop?.Wait(TimeSpan.FromSeconds(30));
        }
        catch (AggregateException) { }
        if (_producer.IsValueCreated)
        {
            _producer.Value.Flush(TimeSpan.FromSeconds(5));
            _producer.Value.Dispose();
        }
        foreach (var (client, _) in _polled.Values) client.Dispose();
        _stop.Dispose();
    }
}
