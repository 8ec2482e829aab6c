using System.Diagnostics;
using System.Net.Http.Headers;

namespace StreamHealth.Benchmarks.Streams;

/// <summary>Load harness for POST /quick_plot on loopback: the real gateway (Kestrel, separate process, Release)
/// gets a 2-day Dexcom Clarity export (the first 576 readings of ../shared/data/cgm/Clarity_Export_synthetic.csv
/// with its header and metadata rows) as a multipart upload and answers with the SVG fan chart: upload, detect,
/// parse, resample, 10 Monte Carlo samples through ONNX Runtime, mixture quantiles, render. Closed loop, one
/// request at a time; the first request (model load) is reported separately. Each request's window is the same
/// file, so to time the model and not the cache every request moves the readings by a whole number of days.</summary>
public static class QuickPlotHarness
{
    public static int Run(int requests, string sharedData)
    {
        var root = RepoPaths.Root;
        var gatewayDll = Path.Combine(root, "gateway", "bin", "Release", "net10.0", "StreamHealth.Gateway.dll");
        if (!File.Exists(gatewayDll)) throw new FileNotFoundException("build the gateway in Release first", gatewayDll);
        var lines = File.ReadAllLines(Path.Combine(sharedData, "cgm", "Clarity_Export_synthetic.csv"));
        var header = lines.Take(11).ToArray();     // column header + patient/device/alert rows
        var readings = lines.Skip(11).Take(576).ToArray();   // 2 days of 5-minute readings

        const string url = "http://127.0.0.1:18081";
        var psi = new ProcessStartInfo("dotnet", [gatewayDll, "--urls", url])
        {
            WorkingDirectory = Path.Combine(root, "gateway"), RedirectStandardOutput = true, RedirectStandardError = true,
        };
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        // The local-only credentials (dev key with every scope, dev signing key) are read in Development only.
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        using var gateway = Process.Start(psi)!;
        gateway.OutputDataReceived += (_, _) => { };
        gateway.ErrorDataReceived += (_, _) => { };
        gateway.BeginOutputReadLine();
        gateway.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(url) };
            http.DefaultRequestHeaders.Add("X-Api-Key", "dev-key-change-me");
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                try { if (http.GetAsync("/openapi/v1.json").Result.IsSuccessStatusCode) break; }
                catch (AggregateException) when (DateTime.UtcNow < deadline) { Thread.Sleep(250); }
            }
            byte[] File2Days(int shiftDays) => System.Text.Encoding.UTF8.GetBytes(string.Join('\n', header.Concat(readings.Select(l => Shift(l, shiftDays)))));
            (double Ms, int Status, int Bytes) Post(byte[] body)
            {
                using var form = new MultipartFormDataContent();
                form.Add(new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("text/csv") } }, "file", "export.csv");
                var sw = Stopwatch.StartNew();
                using var response = http.PostAsync("/quick_plot", form).Result;
                var svg = response.Content.ReadAsByteArrayAsync().Result;
                return (sw.Elapsed.TotalMilliseconds, (int)response.StatusCode, svg.Length);
            }
            var first = Post(File2Days(0));
            for (var i = 1; i <= 20; i++) Post(File2Days(i));   // warm-up: JIT of every path
            var results = Enumerable.Range(0, requests).Select(i => Post(File2Days(1000 + i))).ToList();
            var ok = results.Where(r => r.Status == 200).Select(r => r.Ms).Order().ToArray();
            Console.WriteLine($"POST /quick_plot, 2-day Dexcom Clarity export ({readings.Length} readings, {File2Days(0).Length / 1024} KiB), closed loop, gateway process on loopback:");
            Console.WriteLine($"  first request (model load + JIT): {first.Ms:F0} ms, status {first.Status}, SVG {first.Bytes / 1024} KiB");
            Console.WriteLine($"  {ok.Length}/{results.Count} ok: p50 {P(ok, 0.50):F1} ms, p90 {P(ok, 0.90):F1} ms, p99 {P(ok, 0.99):F1} ms, max {ok[^1]:F1} ms");
            return ok.Length == results.Count ? 0 : 1;
        }
        finally
        {
            gateway.Kill(entireProcessTree: true);
        }
    }

    // Moves a Clarity row's timestamp by whole days (column 2, "yyyy-MM-dd HH:mm:ss").
    private static string Shift(string line, int days)
    {
        var f = line.Split(',');
        if (f.Length > 1 && DateTime.TryParse(f[1], System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out var t))
            f[1] = t.AddDays(days).ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
        // Different values too, so no two requests share a window (the gateway caches forecasts by window).
        if (f.Length > 7 && int.TryParse(f[7], out var g)) f[7] = (g + days % 7).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return string.Join(',', f);
    }

    private static double P(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
}
