using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Forecast;

/// <summary>`streamhealth forecast evaluate` as a user runs it: a real shared file through the built host and the shipped
/// model; every bad input is one line on stderr and exit code 2, nothing on stdout.</summary>
public sealed class ForecastEvaluateVerbTests : IDisposable
{
    private static readonly string Hall = Path.Combine(Repo.SharedData, "cgm", "hall2018_19_subjects.csv");
    private readonly string _dir = Directory.CreateTempSubdirectory("streamhealth-evaluate-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string StdOut, string StdErr) Evaluate(params string[] args) =>
        Repo.Run("dotnet", [ChildHost.HostDll, "forecast", "evaluate", .. args], timeoutMs: 120_000);

    [Fact]
    public void One_Hall_person_gets_the_table_of_the_model_and_the_baselines_and_the_same_figures_on_a_second_run()
    {
        var (code, stdout, stderr) = Evaluate(Hall, "--people", "1636-69-001", "--seed", "3", "--per-person");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("model glucose-forecaster-", lines[0]);
        Assert.Contains("10 Monte Carlo samples, seed 3", lines[0]);
        Assert.StartsWith("1 person, ", lines[1]);
        var windows = int.Parse(lines[1].Split(' ')[2]);
        Assert.True(windows > 1_000, lines[1]);
        Assert.Equal("all windows", lines[2]);
        Assert.StartsWith("method             windows  sqrtMedMSE  medMAE  RMSE@30  RMSE@60  calErr  cov50  cov90  bias@60", lines[3]);
        var model = lines[4].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("model", model[0]);
        Assert.Equal(windows, int.Parse(model[1]));
        // A 90 % band covers more than a 50 % band, and both are fractions.
        Assert.InRange(double.Parse(model[7], System.Globalization.CultureInfo.InvariantCulture), 0, 1);
        Assert.True(double.Parse(model[8], System.Globalization.CultureInfo.InvariantCulture) > double.Parse(model[7], System.Globalization.CultureInfo.InvariantCulture));
        Assert.StartsWith("last value", lines[5]);
        Assert.Contains("person 1636-69-001", lines);
        Assert.Equal("", stderr);
        Assert.Equal(stdout, Evaluate(Hall, "--people", "1636-69-001", "--seed", "3", "--per-person").StdOut);   // deterministic
    }

    [Fact]
    public void Readings_left_out_are_counted_with_the_first_line_instead_of_disappearing()
    {
        // 150 five-minute readings of one person; two a sensor cannot report (1e308 and 0 mg/dL) on lines 52 and 81.
        var file = Path.Combine(_dir, "absurd.csv");
        var start = new DateTime(2024, 1, 1);
        File.WriteAllLines(file, ["id,time,gl", .. Enumerable.Range(0, 150).Select(i =>
            $"p1,{start.AddMinutes(5 * i):yyyy-MM-dd HH:mm:ss},{(i == 50 ? "1e308" : i == 79 ? "0" : (120 + i % 7).ToString())}")]);
        var (code, stdout, stderr) = Evaluate(file);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("left out: absurd.csv: 2 reading(s) with a glucose no sensor reports (outside (0, 1000] mg/dL; first at line 52)", lines[2]);
        // The two gaps of 10 min are interpolated (≤ 15 min), so the series stays one run of 150 steps: 150 − 108 + 1 windows.
        Assert.StartsWith("1 person, 43 windows", lines[1]);
    }

    [Fact]
    public void Bad_input_is_one_line_and_exit_code_2()
    {
        var garbage = Path.Combine(_dir, "garbage.csv");
        File.WriteAllText(garbage, "hello,world\n1,2\n");
        var shortFile = Path.Combine(_dir, "short.csv");
        File.WriteAllLines(shortFile, ["id,time,gl", .. Enumerable.Range(0, 100).Select(i => $"p1,2024-01-01 {i * 5 / 60:00}:{i * 5 % 60:00}:00,{120 + i % 7}")]);
        (string[] Args, string Error)[] cases =
        [
            (["/nonexistent/x.csv"], "streamhealth: /nonexistent/x.csv: no such file"),
            ([garbage], $"streamhealth: {garbage}: unrecognised CGM export: tried "),
            ([shortFile], "streamhealth: no window to evaluate: person p1 has no run of 108 contiguous 5-minute steps (96 in + 12 out; gaps over 15 min split the series); the longest is 100 steps"),
            ([Hall, "--people", "1636-69-001,nobody"], "streamhealth: --people: no person \"nobody\" in hall2018_19_subjects.csv (its 19 people: 1636-69-001, "),
            ([Hall, "--samples", "x"], "streamhealth: option --samples = 'x' is not a non-negative number"),
            ([], "streamhealth: usage: streamhealth forecast evaluate FILE..."),
        ];
        foreach (var (args, error) in cases)
        {
            var (code, stdout, stderr) = Evaluate(args);
            Assert.True(code == 2, $"{string.Join(' ', args)}: exit {code}\n{stdout}\n{stderr}");
            Assert.StartsWith(error, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
            Assert.Equal("", stdout);
        }
    }
}
