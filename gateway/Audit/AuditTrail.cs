using System.Threading.Channels;
using Npgsql;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Audit;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Gateway.Audit;

/// <summary>Audits every request to an endpoint whose access rule is not public, so every personal-data endpoint, present
/// and future, is audited without code of its own: after the answer (or the 401/403 that refused it: failed attempts
/// are the rows that matter most) one <see cref="AuditEntry"/> goes to the <see cref="AuditWriter"/>. Only who, whose,
/// what and the status are recorded, never request or response content.</summary>
public static class AuditTrail
{
    /// <summary>Outermost, so that the status recorded is the one answered, whatever answered it (the authorization
    /// middleware's 401/403, the rate limiter's 429, the exception handler's 503).</summary>
    public static void UseAuditTrail(this WebApplication app)
    {
        var writer = app.Services.GetRequiredService<AuditWriter>();
        app.Use(async (http, next) =>
        {
            if (http.GetEndpoint()?.Metadata.GetMetadata<AccessRule>() is not { Kind: not AccessKind.Public } rule)
            {
                await next(http);
                return;
            }
            var failed = false;
            try
            {
                await next(http);
            }
            catch
            {
                failed = true;
                throw;
            }
            finally
            {
                await writer.EnqueueAsync(Entry(http, rule, failed ? StatusCodes.Status500InternalServerError : http.Response.StatusCode));
            }
        });
    }

    internal static AuditEntry Entry(HttpContext http, AccessRule rule, int status)
    {
        var user = http.User;
        var actor = user.PersonalUserId() is not null || user.IsService() ? user.OwnerKey()
            : rule.Kind == AccessKind.Signed && http.Items.TryGetValue(Access.SignedCallerItem, out var signer) && signer is string signedBy ? signedBy
            : "anonymous";
        var subject = rule switch
        {
            { Source: SubjectSource.Route } => http.GetRouteValue(rule.Subject!) as string,
            { Source: SubjectSource.Body } => http.Items.TryGetValue(Access.SubjectItem, out var authorized) ? authorized as string : null,
            // What a person's own token stores or reads through a caller rule is that person's.
            { Kind: AccessKind.Caller } => user.PersonalUserId(),
            // The patient a verified webhook names (when it names one).
            { Kind: AccessKind.Signed } => http.Items.TryGetValue(Access.SubjectItem, out var patient) ? patient as string : null,
            _ => null,
        } ?? "";
        var method = http.Request.Method;
        var action = HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) ? "read"
            : HttpMethods.IsDelete(method) ? "delete"
            : "write";
        // The path without its query string: a query may carry a person's search terms.
        var pattern = (http.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "";
        return new AuditEntry(DateTime.UtcNow, actor, subject, action, $"{method} {pattern} {http.Request.PathBase}{http.Request.Path}", status);
    }
}

/// <summary>The single writer of a gateway's audit entries: a bounded queue (<see cref="AuditOptions.QueueCapacity"/>)
/// that requests wait on when it is full (back-pressure, never a dropped entry), written in batches, each one
/// transaction of <see cref="AuditLog.AppendAsync"/>. A batch waits up to <see cref="AuditOptions.BatchLingerMilliseconds"/>
/// after its first entry for more: under load a transaction (its lock, chain-end read and commit) then carries hundreds of
/// rows rather than a few. While PostgreSQL is down the batch is retried with back-off (0.1 s
/// doubling to 30 s) and kept, so memory stays bounded by the queue plus one batch. On shutdown it drains after the
/// server has stopped taking requests (StoppedAsync), retrying until the host's shutdown timeout.</summary>
public sealed class AuditWriter(NpgsqlDataSource db, int capacity, ILogger<AuditWriter> log, int lingerMilliseconds = 0) : IHostedLifecycleService, IAsyncDisposable
{
    public const int BatchSize = 500;
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromSeconds(30);

    private readonly Channel<AuditEntry> _queue = Channel.CreateBounded<AuditEntry>(new BoundedChannelOptions(capacity)
    {
        FullMode = BoundedChannelFullMode.Wait, SingleReader = true,
    });
    /// <summary>Cancelled when a drain runs out of time: the entries still held are then reported lost.</summary>
    private readonly CancellationTokenSource _abandon = new();
    private Task _loop = Task.CompletedTask;
    private long _written;
    private volatile bool _draining;
    private long _nextWitnessTicks;
    /// <summary>How often the chain's head is logged as a witness.</summary>
    public static readonly TimeSpan WitnessInterval = TimeSpan.FromMinutes(1);
    private int _disposed;

    public AuditWriter(NpgsqlDataSource db, StreamHealthOptions options, ILogger<AuditWriter> log)
        : this(db, options.Audit.QueueCapacity, log, options.Audit.BatchLingerMilliseconds) { }

    /// <summary>Entries written to audit.events by this writer so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Queues one entry; waits while the queue is full.</summary>
    public async ValueTask EnqueueAsync(AuditEntry entry)
    {
        try
        {
            await _queue.Writer.WriteAsync(entry);
        }
        catch (ChannelClosedException)
        {
            // A request answered after the drain began: there is no writer left to take it.
            log.LogError("audit entry after shutdown not recorded: {Actor} {Action} {Resource} {Outcome}", entry.Actor, entry.Action, entry.Resource, entry.Outcome);
        }
    }

    public void Start()
    {
        if (_loop.IsCompleted) _loop = Task.Run(RunAsync);
    }

    /// <summary>Stops taking entries and writes every queued one; gives up (logging how many are lost) when
    /// <paramref name="ct"/> fires.</summary>
    public async Task DrainAsync(CancellationToken ct)
    {
        _draining = true;
        _queue.Writer.TryComplete();
        await using var registration = ct.Register(_abandon.Cancel);
        await _loop;
    }

    private async Task RunAsync()
    {
        var batch = new List<AuditEntry>(BatchSize);
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync())
        {
            // Not while draining: shutdown writes what is queued at once.
            if (lingerMilliseconds > 0 && reader.Count < BatchSize && !_draining)
                await Task.Delay(lingerMilliseconds);
            while (batch.Count < BatchSize && reader.TryRead(out var entry)) batch.Add(entry);
            await WriteAsync(batch);
            batch.Clear();
        }
    }

    private async Task WriteAsync(List<AuditEntry> batch)
    {
        var delay = FirstRetry;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var head = await AuditLog.AppendAsync(db, batch, _abandon.Token);
                Interlocked.Add(ref _written, batch.Count);
                LogWitness(head);
                if (attempt > 1) log.LogInformation("audit: {Count} held entries written after {Attempts} attempts", batch.Count, attempt);
                return;
            }
            catch (Exception e) when (!_abandon.IsCancellationRequested)
            {
                log.LogWarning("audit: {Count} entries not written yet ({Error}: {Message}); retrying in {DelayMs} ms, {Queued} more queued",
                    batch.Count, e.GetType().Name, e.Message, (int)delay.TotalMilliseconds, _queue.Reader.Count);
            }
            catch (Exception)
            {
                var lost = batch.Count + _queue.Reader.Count;
                log.LogError("audit: shutdown timed out with PostgreSQL unreachable; {Lost} audit entries were not recorded", lost);
                while (_queue.Reader.TryRead(out _)) { }
                return;
            }
            try
            {
                await Task.Delay(delay, _abandon.Token);
            }
            catch (OperationCanceledException) { }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestRetry.Ticks));
        }
    }

    // The chain alone cannot show its newest rows deleted: a witness of its head, once a minute, in the logs (kept apart from
    // PostgreSQL), is what `streamhealth audit verify --witness` checks the chain against.
    private void LogWitness(AuditLog.Witness? head)
    {
        var now = Environment.TickCount64;
        if (head is null || now < _nextWitnessTicks) return;
        _nextWitnessTicks = now + (long)WitnessInterval.TotalMilliseconds;
        log.LogInformation("audit chain witness {Witness}: `streamhealth audit verify --witness` with it finds newer rows deleted", head.ToString());
    }

    public Task StartingAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StartAsync(CancellationToken ct)
    {
        Start();
        return Task.CompletedTask;
    }
    public Task StartedAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken ct) => Task.CompletedTask;
    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
    /// <summary>After every StopAsync, the server's included: no request can enqueue any more.</summary>
    public Task StoppedAsync(CancellationToken ct) => DrainAsync(ct);

    /// <summary>Idempotent: the container disposes this once as itself and once as the hosted service.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _queue.Writer.TryComplete();
        _abandon.Cancel();
        await _loop;
        // _abandon is not disposed: a drain's registration on the host's shutdown token may still fire after this (its
        // continuation can run after ours), and Cancel on a disposed source throws on a timer thread, killing the process.
        // A source without a timer holds nothing that needs disposing.
    }
}
