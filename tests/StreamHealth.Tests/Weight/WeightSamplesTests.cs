using StreamHealth.Host.Samples;

namespace StreamHealth.Tests.Weight;

/// <summary>The local stack's sample weigh-ins are always recent: the cohort's year ends within the coming week, whenever `up` runs.</summary>
public sealed class WeightSamplesTests
{
    [Theory]
    [InlineData("2026-12-04T22:00:00Z")]
    [InlineData("2027-03-01T00:00:00Z")]
    [InlineData("2028-02-29T23:59:59Z")]
    [InlineData("2026-01-05T00:00:00Z")]
    public void The_cohort_starts_on_a_Monday_and_its_year_ends_within_the_coming_week(string nowText)
    {
        var now = DateTimeOffset.Parse(nowText, System.Globalization.CultureInfo.InvariantCulture);
        var start = DateTimeOffset.FromUnixTimeMilliseconds(WeightSamples.CohortStartUnixMs(now));
        Assert.Equal((DayOfWeek.Monday, TimeSpan.Zero), (start.DayOfWeek, start.TimeOfDay));
        var end = start.AddDays(365);
        Assert.InRange(end, now, now.AddDays(7));
        // The same start for the rest of that week: a restarted `up` sends the same measurements.
        var sameWeek = start.AddDays(358 + 6).AddHours(23);
        Assert.Equal(start.ToUnixTimeMilliseconds(), WeightSamples.CohortStartUnixMs(sameWeek));
    }
}
