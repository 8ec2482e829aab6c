using Microsoft.Extensions.Logging;
using Npgsql;

namespace StreamHealth.Runtime.Storage;

/// <summary>Runs the time series' retention every <c>interval</c>: streamhealth.enforce_retention() (whole partitions past their
/// table's keep, on PostgreSQL without TimescaleDB; a hypertable's policy is Timescale's own job) and each workload's own pruning
/// statement (e.g. resolved anomalies 30 days after resolution). A failure is logged and tried again next time: retention is late,
/// never a reason to stop a host.</summary>
public sealed class RetentionJob : IDisposable
{
    public const string EnforceSql = "SELECT count(*) FROM streamhealth.enforce_retention()";

    private readonly NpgsqlDataSource _db;
    private readonly IReadOnlyList<string> _statements;
    private readonly ILogger _log;
    private readonly Timer _timer;

    public RetentionJob(NpgsqlDataSource db, TimeSpan interval, IReadOnlyList<string> pruneStatements, ILogger log)
    {
        _db = db;
        _statements = [EnforceSql, .. pruneStatements];
        _log = log;
        _timer = new Timer(_ => RunOnce(), null, TimeSpan.FromSeconds(30), interval);
    }

    public void RunOnce()
    {
        foreach (var sql in _statements)
        {
            try
            {
                using var command = _db.CreateCommand(sql);
                var removed = command.ExecuteScalar();
                if (removed is long n && n > 0) _log.LogInformation("retention: {Statement} removed {Count}", sql, n);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                _log.LogWarning("retention: {Statement} failed ({Error}); trying again at the next interval", sql, e.Message);
            }
        }
    }

    public void Dispose() => _timer.Dispose();
}
