using Npgsql;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Tests.Gateway.Contract;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Insights;

/// <summary>`streamhealth sample-user` (what up.sh runs) against the whole stack: a person registered through the API,
/// their metrics through POST /api/v1/health-metrics/ into PostgreSQL; run again, nothing is refused or stored twice.</summary>
public sealed class SampleUserVerbTests(GatewayStackFixture f) : IClassFixture<GatewayStackFixture>
{
    [Fact]
    public async Task The_sample_person_is_registered_and_their_metrics_travel_the_pipeline_and_a_rerun_is_a_retry()
    {
        var email = $"sample-{Guid.NewGuid():N}@example.org";
        var first = SampleUser("--email", email, "--days", "3");
        Assert.True(first.ExitCode == 0, first.StdErr);
        var userId = await ScalarAsync<string>("SELECT user_id FROM identity.users WHERE email = $1", email);
        // What up.sh shows: the token and the person's recommendations URL.
        Assert.Contains($"{f.BaseUrl}/api/v1/recommendations/{userId}?days=7", first.StdOut);
        Assert.Matches(@"token\s+eyJ[\w-]+\.[\w-]+\.[\w-]+", first.StdOut);
        // Two full days of 36 records (sleep, 7 step counts, 24 heart rates, 3 waters, a weight) and today's so far: none in the
        // first quarter hour after midnight UTC (the first heart rate is at 00:15; a run at 00:05 sent exactly 72).
        var expected = long.Parse(System.Text.RegularExpressions.Regex.Match(first.StdOut, @"(\d+) metrics of the last 3 days sent").Groups[1].Value);
        Assert.InRange(expected, 2 * 36, 3 * 36);
        WaitFor(() => Count(userId) >= expected, TimeSpan.FromSeconds(60), () => $"stored {Count(userId)} of {expected}");

        var again = SampleUser("--email", email, "--days", "3");
        Assert.True(again.ExitCode == 0, again.StdErr);
        await Task.Delay(2_000);
        // Every id stored once; a re-run within the same minute may add the readings of the minute that passed, no more.
        Assert.InRange(Count(userId), expected, expected + 2);
        Assert.Equal(0L, await ScalarAsync<long>(
            "SELECT count(*) FROM streamhealth.dead_letters WHERE position(convert_to($1, 'UTF8') in record_key) > 0", userId));
    }

    [Fact]
    public async Task A_wrong_password_for_an_existing_account_fails_with_the_reason()
    {
        var email = $"sample-{Guid.NewGuid():N}@example.org";
        Assert.Equal(0, SampleUser("--email", email, "--days", "1").ExitCode);
        var wrong = SampleUser("--email", email, "--password", "Other-password-9", "--days", "1");
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains("sign in answered 400", wrong.StdErr);
        var usage = SampleUser("--days", "0");
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("--days 0: must be 1-60", usage.StdErr);
        await Task.CompletedTask;
    }

    private (int ExitCode, string StdOut, string StdErr) SampleUser(params string[] args) =>
        Repo.Run("dotnet", [ChildHost.HostDll, "sample-user", "--gateway", f.BaseUrl, .. args], timeoutMs: 120_000);

    private long Count(string userId)
    {
        using var cmd = f.Postgres.CreateCommand("SELECT count(*) FROM streamhealth.health_metrics WHERE user_id = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = userId });
        return (long)cmd.ExecuteScalar()!;
    }

    private async Task<T> ScalarAsync<T>(string sql, string value)
    {
        await using var cmd = f.Postgres.CreateCommand(sql);
        cmd.Parameters.Add(new NpgsqlParameter { Value = value });
        return (T)(await cmd.ExecuteScalarAsync())!;
    }
}

/// <summary>The sample person's metrics are a function of their calendar day, so `up` run again on a later day repeats them.</summary>
public sealed class SampleMetricsTests
{
    [Fact]
    public void A_later_day_sends_each_shared_metric_with_the_same_id_and_value()
    {
        var today = new DateTimeOffset(2026, 12, 4, 23, 50, 0, TimeSpan.Zero);
        static Dictionary<string, string> ById(DateTimeOffset now) =>
            StreamHealth.Host.Verbs.SampleUserVerb.SampleMetrics("0123456789abcdef", 7, now)
                .Select(m => System.Text.Json.JsonSerializer.SerializeToElement(m))
                .ToDictionary(e => e.GetProperty("metric_id").GetString()!, e => e.GetRawText());
        var first = ById(today);
        var later = ById(today.AddDays(1).AddMinutes(20));
        var shared = first.Keys.Intersect(later.Keys).ToList();
        Assert.True(shared.Count >= 5 * 36, $"{shared.Count} shared ids");
        Assert.All(shared, id => Assert.Equal(first[id], later[id]));
    }
}
