using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth sample-user --gateway URL [--email E] [--password P] [--days N]`: what the README's first command
/// runs once the local stack is up. It registers a sample person through the API (or signs in when the account exists),
/// sends the last N days of their health metrics through POST /api/v1/health-metrics/ (so they travel the whole pipeline:
/// topic, insights topology, aggregates, cache invalidation), and prints a token and the recommendations URL.
/// Re-running it is harmless: every metric of a past day has a fixed id and fixed content (a retry), and today's new
/// readings have ids of their own.</summary>
internal static class SampleUserVerb
{
    public const string DefaultEmail = "sample.person@streamhealth.local";
    /// <summary>Local stack only, like the dev key: printed by up.sh.</summary>
    public const string DefaultPassword = "Sample-person-1";

    public static async Task<int> RunAsync(string[] argv)
    {
        var args = new Args(argv);
        var gateway = args.Get("--gateway") ?? throw new UsageException("sample-user needs --gateway URL (e.g. http://127.0.0.1:8080)");
        var email = args.Get("--email") ?? DefaultEmail;
        var password = args.Get("--password") ?? DefaultPassword;
        var days = args.GetInt("--days", 14);
        if (days is < 1 or > 60) throw new UsageException($"--days {days}: must be 1-60");
        using var http = new HttpClient { BaseAddress = new Uri(gateway), Timeout = TimeSpan.FromSeconds(30) };

        var registered = await http.PostAsJsonAsync("/api/v1/users/register", new { email, password });
        if (registered.StatusCode is not (HttpStatusCode.Created or HttpStatusCode.Conflict))
            return Fail("register", registered);
        var signIn = await http.PostAsJsonAsync("/api/v1/auth/token", new { grant_type = "password", email, password });
        if (!signIn.IsSuccessStatusCode) return Fail("sign in", signIn);
        var token = JsonDocument.Parse(await signIn.Content.ReadAsStringAsync()).RootElement;
        var userId = token.GetProperty("user_id").GetString()!;
        var accessToken = token.GetProperty("access_token").GetString()!;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);

        // The profile the rules personalise on (age band 40-64, female thresholds); UTC, as the sample days are.
        var profile = await http.PutAsJsonAsync($"/api/v1/users/{userId}/profile",
            new { time_zone = "UTC", sex = "female", date_of_birth = "1979-04-12", medical_history = "sample person: none" });
        if (!profile.IsSuccessStatusCode) return Fail("profile", profile);

        var metrics = SampleMetrics(userId, days, DateTimeOffset.UtcNow);
        var refused = 0;
        // A few at a time: the gateway answers each after the broker's ack.
        await Parallel.ForEachAsync(metrics, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (metric, ct) =>
        {
            using var response = await http.PostAsJsonAsync("/api/v1/health-metrics/", metric, ct);
            if (response.StatusCode != HttpStatusCode.Accepted)
            {
                Interlocked.Increment(ref refused);
                Console.Error.WriteLine($"sample-user: POST health metric {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
            }
        });
        Console.WriteLine($"""
              sample person {email} (password {password}), user id {userId}: {metrics.Count - refused} metrics of the last {days} days sent
                token            {accessToken}
                recommendations  curl -s -H 'Authorization: Bearer {accessToken[..16]}…' {gateway.TrimEnd('/')}/api/v1/recommendations/{userId}?days=7
                                 (the full token is above; it lives {token.GetProperty("expires_in").GetInt32() / 60} min — sign in again at POST /api/v1/auth/token)
            """);
        return refused == 0 ? 0 : 1;
    }

    private static int Fail(string step, HttpResponseMessage response)
    {
        Console.Error.WriteLine($"sample-user: {step} answered {(int)response.StatusCode}: {response.Content.ReadAsStringAsync().Result}");
        return 1;
    }

    /// <summary>A person who walks too little, sleeps about six hours and drinks too little water: the recommendations have
    /// something to say. Past days are fixed by the date (same ids, same values on every run); today's hours so far too.</summary>
    internal static List<object> SampleMetrics(string userId, int days, DateTimeOffset now)
    {
        var list = new List<object>(days * 40);
        var today = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        for (var d = days - 1; d >= 0; d--)
        {
            var day = today.AddDays(-d);
            var random = new Random(day.Year * 1000 + day.DayOfYear);
            var dayKey = day.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
            void Add(string type, double value, string unit, DateTimeOffset at, int n)
            {
                if (at > now.AddMinutes(-1)) return;   // not ahead of the clock
                list.Add(new
                {
                    user_id = userId, type, value = Math.Round(value, 1), unit, recorded_at = at.ToString("O", CultureInfo.InvariantCulture),
                    metric_id = $"sample-{userId[..8]}-{dayKey}-{type}-{n}",
                });
            }
            Add("sleep_hours", 5.6 + random.NextDouble() * 1.0, "h", day.AddHours(7), 0);
            for (var h = 8; h < 22; h += 2) Add("steps", 300 + random.Next(0, 500), "steps", day.AddHours(h), h);
            for (var h = 0; h < 24; h++) Add("heart_rate", (h < 7 ? 62 : 74) + random.NextDouble() * 10, "bpm", day.AddHours(h).AddMinutes(15), h);
            for (var h = 9; h < 21; h += 4) Add("water_ml", 250 + random.Next(0, 150), "ml", day.AddHours(h).AddMinutes(30), h);
            // A function of the calendar day, never of how many days ago it was: a re-run on a later day sends each day's metric
            // again with the same id and value (a retry), where a value counted from today was a new value under an old id (409,
            // and `up` stopped). n = 1: the ids of the earlier formula's values stay theirs.
            var dayNumber = (int)(day.UtcDateTime - DateTime.UnixEpoch).TotalDays;
            Add("weight", 82.0 - 0.02 * (dayNumber % 28) + random.NextDouble() * 0.4, "kg", day.AddHours(7).AddMinutes(5), 1);
        }
        return list;
    }
}
