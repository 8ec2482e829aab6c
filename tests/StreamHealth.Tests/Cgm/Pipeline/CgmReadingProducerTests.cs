using System.Globalization;
using System.Text;
using StreamHealth.Cgm.Pipeline;

namespace StreamHealth.Tests.Cgm.Pipeline;

public sealed class CgmReadingProducerTests
{
    /// <summary>A Clarity export across the October fall-back: wall-clock 01:00–01:55 happens twice.</summary>
    private static MemoryStream ClarityAcrossFallBack(out int readings)
    {
        var text = new StringBuilder(
            "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID," +
            "Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),Glucose Rate of Change (mg/dL/min)," +
            "Transmitter Time (Long Integer),Transmitter ID\n");
        var wall = new DateTime(2026, 10, 25, 0, 2, 10);
        readings = 0;
        var fellBack = false;
        for (var i = 0; i < 48; i++)   // 4 h of 5-minute readings; the clock goes back one hour after 01:57
        {
            if (!fellBack && wall == new DateTime(2026, 10, 25, 2, 2, 10))
            {
                wall = wall.AddHours(-1);
                fellBack = true;
            }
            text.Append(CultureInfo.InvariantCulture, $"{i + 1},{wall:yyyy-MM-dd HH:mm:ss},EGV,,,,iOS G7,{120 + i},,,,,{1000 + 300 * i},ABC\n");
            wall = wall.AddMinutes(5);
            readings++;
        }
        return new MemoryStream(Encoding.UTF8.GetBytes(text.ToString()));
    }

    [Fact]
    public void An_upload_across_a_daylight_saving_fall_back_streams_readings_on_one_continuous_clock()
    {
        using var file = ClarityAcrossFallBack(out var rows);
        var parsed = CgmReadingProducer.ReadFile(file, "dst-user");
        Assert.Equal(1, parsed.ClockShiftsCorrected);
        Assert.Equal(rows, parsed.Readings.Count);
        var times = parsed.Readings.Select(CgmReadings.EventTimeMs).ToList();
        // Strictly increasing by 5 minutes: no repeated hour (fake duplicates) and no gap.
        for (var i = 1; i < times.Count; i++) Assert.Equal(5 * 60_000, times[i] - times[i - 1]);
        // The original time keeps the wall clock the export wrote (01:02:10 appears twice).
        var wallClock = parsed.Readings.Select(r => r.original_time_unix_ms!.Value).ToList();
        Assert.Equal(2, wallClock.Count(t => t == new DateTime(2026, 10, 25, 1, 2, 10)));
        // Values stay with their readings, in file order.
        Assert.Equal(Enumerable.Range(0, rows).Select(i => 120.0 + i), parsed.Readings.Select(r => r.glucose_mg_dl));
        // Every reading gets its own deterministic id.
        Assert.Equal(rows, parsed.Readings.Select(r => r.reading_id).Distinct().Count());
        file.Position = 0;
        Assert.Equal(parsed.Readings.Select(r => r.reading_id), CgmReadingProducer.ReadFile(file, "dst-user").Readings.Select(r => r.reading_id));
    }
}
