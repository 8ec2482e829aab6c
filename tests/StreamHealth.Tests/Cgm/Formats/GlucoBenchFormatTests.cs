using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The GlucoBench/iglu layout (id,time,gl): several people in one file, the person on every row; a path that
/// takes one person's export refuses it.</summary>
public sealed class GlucoBenchFormatTests
{
    private static string Sample(string name) => Path.Combine(Repo.SharedData, "cgm", name);

    [Fact]
    public void D1NAMO_is_detected_and_read_with_each_rows_person()
    {
        using var reader = CgmFormats.Open(Sample("dubosson2018_t1d_9_subjects.csv"));
        Assert.Equal(CgmFormat.GlucoBench, reader.Format);
        Assert.Equal("glucobench_csv", reader.Format.Name());
        Assert.True(reader.TryRead(out var first));
        Assert.Equal("001", reader.PersonId);
        Assert.True(CgmTime.TryParseIso("2014-10-01T19:14:00"u8, out var expected));
        Assert.Equal((expected, 185.4, CgmEventType.EgvRead), (first.TimeMs, first.GlucoseMgDl, first.EventType));
        var rows = new Dictionary<string, int> { ["001"] = 1 };
        while (reader.TryRead(out _)) rows[reader.PersonId!] = rows.GetValueOrDefault(reader.PersonId!) + 1;
        Assert.Equal(["001", "002", "003", "004", "005", "006", "007", "008", "009"], rows.Keys.Order());
        Assert.Equal(File.ReadLines(Sample("dubosson2018_t1d_9_subjects.csv")).Count() - 1, rows.Values.Sum());
    }

    [Fact]
    public void Hall_with_its_extra_column_reads_and_NA_readings_are_skipped_and_counted()
    {
        var file = "id,time,gl,diagnosis\n\"a\",2020-01-01 00:00:00,100,\"x\"\n\"a\",2020-01-01 00:05:00,NA,\"x\"\n\"b\",2020-01-01 00:10:00,,\"x\"\n\"b\",2020-01-01 00:15:00,120,\"x\"\n";
        using var reader = CgmFormats.Open(new MemoryStream(Encoding.UTF8.GetBytes(file)));
        var people = new List<(string?, double)>();
        while (reader.TryRead(out var row)) people.Add((reader.PersonId, row.GlucoseMgDl));
        Assert.Equal([("a", 100.0), ("b", 120.0)], people);
        Assert.Equal(new SkippedRows("readings without a glucose value (NA)", 2, 3), Assert.Single(reader.Skipped));
    }

    [Fact]
    public void A_file_of_several_people_is_refused_where_one_persons_export_is_read_and_one_person_is_accepted()
    {
        using var hall = File.OpenRead(Sample("hall2018_19_subjects.csv"));
        var e = Assert.Throws<MultiplePeopleException>(() => CgmFormats.ReadFileOrder(hall, out _));
        Assert.Equal(19, e.People);
        Assert.StartsWith("glucobench_csv the file holds the readings of 19 people (ids \"1636-69-001\", \"1636-69-026\",", e.Message);
        using var converted = new MemoryStream();
        Assert.Throws<MultiplePeopleException>(() => CgmConverter.Convert(new MemoryStream(File.ReadAllBytes(Sample("dubosson2018_t1d_9_subjects.csv"))), converted));

        var one = "id,time,gl\n7,2020-01-01 00:00:00,100\n7,2020-01-01 00:05:00,101\n";
        Assert.Equal(2, CgmFormats.ReadFileOrder(new MemoryStream(Encoding.UTF8.GetBytes(one)), out var format).Count);
        Assert.Equal(CgmFormat.GlucoBench, format);
    }
}
