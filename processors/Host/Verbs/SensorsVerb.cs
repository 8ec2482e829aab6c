using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Anomalies;
using StreamHealth.Sensors.Anomalies.Nab;
using StreamHealth.Sensors.Districts;
using StreamHealth.Sensors.Predictions;
using StreamHealth.Sensors.Simulation;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth sensors nab DIR`: the sensors' streaming anomaly detector, run reading by reading over every
/// series of a Numenta Anomaly Benchmark layout, scored with NAB's rules under its three profiles.
/// `streamhealth sensors simulate`: the simulated water network's readings and ground truth, to files and/or sensors.readings.</summary>
internal static class SensorsVerb
{
    private const string Usage = "usage: streamhealth sensors nab DIR [--per-series] | sensors simulate [--days N] [--districts N] [--meters N] " +
                                 "[--step-seconds N] [--seed N] [--start ISO-8601] [--out DIR] [--produce] | sensors predict-check [--days N] [--seed N] [--nab DIR] | " +
                                 "sensors leaks-check [--days N] [--seeds N|A,B,…] [--districts N] [--misses]";

    public static async Task<int> RunAsync(string[] argv) => argv.FirstOrDefault() switch
    {
        "nab" => Nab(argv[1..], Console.Out),
        "simulate" => await SimulateAsync(argv[1..]),
        "predict-check" => PredictCheck(argv[1..], Console.Out),
        "leaks-check" => LeaksCheck(argv[1..], Console.Out),
        _ => throw new UsageException(Usage),
    };

    internal static async Task<int> SimulateAsync(string[] argv)
    {
        var args = new Args(argv, "--produce");
        if (args.Positional.Count != 0) throw new UsageException(Usage);
        var days = args.GetInt("--days", 7);
        DateTimeOffset start;
        if (args.Get("--start") is { } startText)
        {
            if (!DateTimeOffset.TryParse(startText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out start))
                throw new UsageException($"--start = '{startText}': not an ISO-8601 date-time");
        }
        else start = DateTimeOffset.UtcNow.AddDays(-days);   // recent data, ending now: the event-time rule accepts it
        SimulationOptions options;
        NetworkSimulator simulator;
        try
        {
            options = new SimulationOptions
            {
                Days = days, Districts = args.GetInt("--districts", 3), MetersPerDistrict = args.GetInt("--meters", 4),
                StepSeconds = args.GetInt("--step-seconds", 60), Seed = args.GetInt("--seed", 1), StartUnixMs = start.ToUnixTimeMilliseconds(),
            };
            simulator = new NetworkSimulator(options);
        }
        catch (ArgumentOutOfRangeException e) { throw SettingError(e); }
        var outDir = args.Get("--out");
        if (outDir is null && !args.Has("--produce")) throw new UsageException("sensors simulate: give --out DIR, --produce, or both");

        StreamWriter? csv = null;
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            var json = new JsonSerializerOptions { WriteIndented = true };
            File.WriteAllText(Path.Combine(outDir, "network.json"), JsonSerializer.Serialize(simulator.Nodes, json));
            File.WriteAllText(Path.Combine(outDir, "events.json"), JsonSerializer.Serialize(simulator.Events, json));
            csv = new StreamWriter(Path.Combine(outDir, "readings.csv"), append: false, new UTF8Encoding(false));
            csv.WriteLine("node_id,district_id,metric,time,value,unit,reading_id");
        }
        IProducer<byte[], byte[]>? producer = null;
        SchemaRegistryConnection? registry = null;
        var settings = StreamHealthOptions.Load();
        if (args.Has("--produce"))
        {
            if (string.IsNullOrEmpty(settings.Kafka.BootstrapServers))
                throw new ConfigurationException("Kafka:BootstrapServers is empty: --produce needs a running cluster (`streamhealth kafka` or `up`)");
            registry = SchemaRegistryConnection.Connect(settings.SchemaRegistry);
            await registry.EnsureReachableAsync();
            // The topology dead-letters readings of nodes the registry does not have: the network is registered first.
            await using (var postgres = Npgsql.NpgsqlDataSource.Create(settings.Postgres.ConnectionString))
                await StreamHealth.Sensors.Network.NodeRegistry.RegisterAsync(postgres, simulator.RegisteredNodes);
            producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
            {
                BootstrapServers = settings.Kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 5, QueueBufferingMaxMessages = 1_000_000,
            }).Build();
        }
        var count = 0L;
        var failed = 0L;
        try
        {
            var keys = registry?.SerDes<StreamHealth.Schemas.Avro.Common.SensorKey>();
            var values = registry?.SerDes<StreamHealth.Schemas.Avro.Sensors.SensorReading>();
            var keyContext = new SerializationContext(MessageComponentType.Key, Topics.SensorsReadings);
            var valueContext = new SerializationContext(MessageComponentType.Value, Topics.SensorsReadings);
            foreach (var r in simulator.Readings())
            {
                count++;
                csv?.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{r.NodeId},{r.DistrictId},{r.Metric},{DateTimeOffset.FromUnixTimeMilliseconds(r.TimeUnixMs):yyyy-MM-ddTHH:mm:ssZ},{r.Value:R},{r.Unit},{r.ReadingId}"));
                if (producer is null) continue;
                var message = new Message<byte[], byte[]>
                {
                    Key = keys!.Serialize(new StreamHealth.Schemas.Avro.Common.SensorKey { node_id = r.NodeId }, keyContext),
                    Value = values!.Serialize(r.ToAvro(), valueContext),
                };
                producer.ProduceBlocking(Topics.SensorsReadings, message, report => { if (report.Error.IsError) Interlocked.Increment(ref failed); });
            }
            if (producer is not null && producer.Flush(TimeSpan.FromMinutes(2)) > 0)
                throw new UsageException("sensors simulate: the cluster did not acknowledge every reading within 2 minutes");
            if (failed > 0) throw new UsageException($"sensors simulate: {failed} readings were not delivered (see the cluster's log)");
        }
        finally
        {
            csv?.Dispose();
            producer?.Dispose();
            registry?.Dispose();
        }
        Console.WriteLine($"simulated {simulator.Nodes.Count} nodes in {options.Districts} districts over {days} days from {start:yyyy-MM-ddTHH:mm}Z: " +
                          $"{count:N0} readings, {simulator.Events.Count} injected events" +
                          (outDir is null ? "" : $"; {Path.Combine(outDir, "readings.csv")}, events.json (ground truth), network.json") +
                          (producer is null ? "" : $"; produced onto {Topics.SensorsReadings}"));
        return 0;
    }

    /// <summary>The flow predictions (Holt-Winters, daily season) against the seasonal-naive forecast on each simulated district's
    /// inflow and, with --nab, on NAB's real series (those with a daily cycle are the ones the issue's bar is about).</summary>
    internal static int PredictCheck(string[] argv, TextWriter output)
    {
        var args = new Args(argv);
        if (args.Positional.Count != 0) throw new UsageException(Usage);
        var days = args.GetInt("--days", 30);
        // Five days at least: 70 % of them must hold three daily seasons to fit the model.
        if (days < 5) throw new UsageException($"--days = {days}: predict-check needs at least 5 days");
        NetworkSimulator simulator;
        try { simulator = new NetworkSimulator(new SimulationOptions { Days = days, Seed = args.GetInt("--seed", 1), StartUnixMs = 1_780_272_000_000 }); }
        catch (ArgumentOutOfRangeException e) { throw SettingError(e); }
        var scores = new List<(string Source, PredictionScore Score)>();
        var nabHourly = new Dictionary<string, double[]>();
        // One run of the simulator for every district's inflow.
        var inflows = simulator.Readings().Where(r => r.Metric == "flow" && r.NodeId.EndsWith("-inflow", StringComparison.Ordinal))
            .GroupBy(r => r.NodeId).ToDictionary(g => g.Key, g => g.Select(r => (r.TimeUnixMs, r.Value)).ToList());
        foreach (var district in simulator.Nodes.Where(n => n.Kind == "inflow"))
            scores.Add(("simulator", PredictionCheck.Score($"{district.NodeId} flow (L/s)", PredictionCheck.Hourly(inflows[district.NodeId]))));
        if (args.Get("--nab") is { } nab)
        {
            IReadOnlyList<NabSeries> corpus;
            try { corpus = NabCorpus.Load(nab); }
            catch (InvalidDataException e) { throw new UsageException(e.Message); }
            foreach (var series in corpus.Where(c => c.Name.StartsWith("real", StringComparison.Ordinal)))
            {
                var hourly = PredictionCheck.Hourly(series.Timestamps.Select((t, i) => (PredictionCheck.NabTime(t), series.Values[i])));
                if (hourly.Length < 5 * PredictionCheck.Season) continue;
                scores.Add(("NAB", PredictionCheck.Score(series.Name, hourly)));
                nabHourly[series.Name] = hourly;
            }
        }
        output.WriteLine($"flow predictions: Holt-Winters (additive, damped trend, a daily or weekly season) fitted on the first {PredictionCheck.TrainingFraction:P0} of each");
        output.WriteLine("hourly series, then 24 h ahead from every midnight of the rest, against the seasonal-naive forecast (the same hour the day");
        output.WriteLine("before); MASE scaled by the training part's seasonal-naive MAE; relative MAE = model / seasonal naive on the same forecasts");
        output.WriteLine();
        output.WriteLine("| source | series | hours | daily ACF | season (h) | forecasts | MASE model | MASE seasonal naive | relative MAE | 80 % covered | 95 % covered |");
        output.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (source, s) in scores)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {source} | {s.Series} | {s.Hours} | {s.DailyAutocorrelation:F2} | {s.SeasonHours} | {s.Forecasts} | {s.ModelMase:F3} | {s.SeasonalNaiveMase:F3} | {s.RelativeMae:F3} | {s.Coverage80:P0} | {s.Coverage95:P0} |"));
        var daily = scores.Where(x => x.Source == "NAB" && x.Score.DailyAutocorrelation >= DailySeasonality).ToList();
        output.WriteLine();
        output.WriteLine($"simulator: {scores.Count(x => x.Source == "simulator" && x.Score.BeatsSeasonalNaive)}/{scores.Count(x => x.Source == "simulator")} series beat seasonal naive" +
                         (args.Get("--nab") is null ? "" : $"; NAB real series with a daily cycle (ACF at 24 h ≥ {DailySeasonality}): {daily.Count(x => x.Score.BeatsSeasonalNaive)}/{daily.Count}"));

        // The pipeline's predictor, fed as the district analysis feeds it, on the same simulated network.
        var simulation = new SimulationOptions { Days = days, Seed = args.GetInt("--seed", 1), StartUnixMs = 1_780_272_000_000 };
        var streaming = FlowPredictionCheck.Run(simulation);
        var unfiltered = FlowPredictionCheck.Run(simulation, excludeUnusable: false).ToDictionary(x => x.NodeId);
        output.WriteLine();
        output.WriteLine($"the pipeline's predictor (NodePredictor: {NodePredictor.HistoryHours / 24} days of hourly flow, daily season, refitted daily), a forecast from every " +
                         "midnight from day 4, against the hour's true mean flow; relative MAE = model / seasonal naive (the same hour the day before); " +
                         "\"all hours\": fed every hour, \"excluding\": without the hours of bursts the district analysis detected and of windows its " +
                         "quality rules found unusable (as the pipeline feeds it)");
        output.WriteLine();
        output.WriteLine("| node | kind | forecasts | MAE model (L/s) | MAE seasonal naive (L/s) | relative MAE, excluding | relative MAE, all hours | 80 % covered | 95 % covered |");
        output.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var x in streaming)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {x.NodeId} | {x.Kind} | {x.Forecasts} | {x.ModelMae:F3} | {x.NaiveMae:F3} | {x.RelativeMae:F3} | {(unfiltered.TryGetValue(x.NodeId, out var u) ? u.RelativeMae : double.NaN):F3} | {x.Coverage80:P0} | {x.Coverage95:P0} |"));
        // And on NAB's real series with a daily cycle, hour by hour as the pipeline would see them.
        var nabScores = new List<FlowPredictionScore>();
        foreach (var (source, score) in scores.Where(x => x.Source == "NAB" && x.Score.DailyAutocorrelation >= DailySeasonality))
            if (nabHourly.TryGetValue(score.Series, out var hourly) && FlowPredictionCheck.Score(score.Series, hourly) is { } streamed)
                nabScores.Add(streamed);
        foreach (var x in nabScores)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {x.NodeId} | NAB | {x.Forecasts} | {x.ModelMae:G4} | {x.NaiveMae:G4} | {x.RelativeMae:F3} | | {x.Coverage80:P0} | {x.Coverage95:P0} |"));
        output.WriteLine();
        output.WriteLine($"the pipeline's predictor: {streaming.Count(x => x.RelativeMae < 1)}/{streaming.Count} nodes beat seasonal naive " +
                         $"(inflows {streaming.Count(x => x.Kind == "inflow" && x.RelativeMae < 1)}/{streaming.Count(x => x.Kind == "inflow")})" +
                         (nabScores.Count == 0 ? "" : $"; NAB real series with a daily cycle: {nabScores.Count(x => x.RelativeMae < 1)}/{nabScores.Count}"));
        return 0;
    }

    /// <summary>Leak detection and data quality (<see cref="DistrictAnalyzer"/>) on the simulator against its ground truth:
    /// per seed a run of --days over --districts, windowed in process as the topology would, each district's analyser fed in
    /// the order its windows close.</summary>
    internal static int LeaksCheck(string[] argv, TextWriter output)
    {
        var args = new Args(argv, "--misses");
        if (args.Positional.Count != 0) throw new UsageException(Usage);
        var days = args.GetInt("--days", 30);
        if (days < 5) throw new UsageException($"--days = {days}: leaks-check needs at least 5 days (events start after day 2, a background leak takes up to 3)");
        var districts = args.GetInt("--districts", 3);
        int[] seeds;
        var seedsText = args.Get("--seeds") ?? "5";
        if (seedsText.Contains(','))
        {
            seeds = seedsText.Split(',').Select(t => int.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new UsageException($"--seeds = '{seedsText}': '{t}' is not an integer")).ToArray();
        }
        else if (int.TryParse(seedsText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var count) && count is >= 1 and <= 1000)
            seeds = Enumerable.Range(1, count).ToArray();
        else throw new UsageException($"--seeds = '{seedsText}': a count (1-1000) or a comma-separated list of seeds");

        var clock = Stopwatch.StartNew();
        var runs = new List<LeakCheckRun>();
        foreach (var seed in seeds)
        {
            try { runs.Add(LeakCheck.Run(new SimulationOptions { Days = days, Districts = districts, Seed = seed, StartUnixMs = 1_780_272_000_000 })); }
            catch (ArgumentOutOfRangeException e) { throw SettingError(e); }
        }
        var s = LeakCheck.Score(runs);
        var seconds = clock.Elapsed.TotalSeconds;
        string Delay(TimeSpan? d) => LeakCheck.Format(d);
        output.WriteLine($"leaks-check: seeds {string.Join(",", seeds)} × {days} days × {districts} districts from 2026-06-01 ({runs.Sum(r => r.Windows):N0} windows, " +
                         $"{runs.Sum(r => r.LateDropped):N0} readings late beyond the grace dropped, {seconds:0} s; largest state {s.StateBytesMax:N0} bytes)");
        output.WriteLine();
        output.WriteLine("| leak kind | injected | detected | within bar | bar | median delay | max delay | started less than the bar before the end (not scored) |");
        output.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var l in s.Leaks)
            output.WriteLine($"| {l.Kind} | {l.Injected} | {l.Detected} | {l.WithinBar} | {(l.Kind == "burst" ? "15 min" : "3 d")} | {Delay(l.MedianDelay)} | {Delay(l.MaxDelay)} | {l.StartedTooLate} |");
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"leak anomalies: {s.LeakAnomalies}, true (overlapping an injected leak in their district) {s.TruePositives}, precision {s.Precision:0.000} (bar 0.9); false ones during a sensor fault: {s.FalseOverlappingFaults}"));
        output.WriteLine();
        output.WriteLine("| sensor fault | injected | flagged by quality | median delay | max delay | reported as a leak |");
        output.WriteLine("|---|---|---|---|---|---|");
        foreach (var f in s.Faults)
            output.WriteLine($"| {f.Kind} | {f.Injected} | {f.Flagged} | {Delay(f.MedianDelay)} | {Delay(f.MaxDelay)} | {f.ReportedAsLeak} |");
        output.WriteLine();
        output.WriteLine("minutes flagged on series with no fault within an hour (of " + $"{runs.Sum(r => r.MinuteVerdicts):N0} minute verdicts): " +
                         string.Join(", ", s.CleanMinutesFlagged.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:P3}"))));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"residual anomalies: {s.ResidualAnomalies} ({s.ResidualOverlappingEvents} overlapping an injected leak or fault in their district); " +
            $"non-revenue water {s.MeanNonRevenuePercent:0.0} % of inflow on average over the days, completeness {s.MeanCompleteness:P1}"));
        if (args.Has("--misses") && s.Misses.Count > 0)
        {
            output.WriteLine();
            foreach (var m in s.Misses) output.WriteLine("- " + m);
        }
        return 0;
    }

    /// <summary>A simulator setting out of range, named as its option (SimulationOptions.StepSeconds → --step-seconds).</summary>
    private static UsageException SettingError(ArgumentOutOfRangeException e)
    {
        var option = e.ParamName switch
        {
            nameof(SimulationOptions.MetersPerDistrict) => "meters",
            { } name => string.Concat(name.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "-" : "") + char.ToLowerInvariant(c) : c.ToString())),
            null => "?",
        };
        return new UsageException($"--{option}: {e.Message.Split(" (Parameter")[0]}");
    }

    /// <summary>A series "has daily seasonality" when its training part's autocorrelation at 24 hours is at least this.</summary>
    internal const double DailySeasonality = 0.3;

    internal static int Nab(string[] argv, TextWriter output)
    {
        var args = new Args(argv, "--per-series");
        if (args.Positional.Count != 1) throw new UsageException(Usage);
        IReadOnlyList<NabSeries> corpus;
        try { corpus = NabCorpus.Load(args.Positional[0]); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }

        var clock = Stopwatch.StartNew();
        var readings = 0L;
        var scores = new double[corpus.Count][];
        for (var s = 0; s < corpus.Count; s++)
        {
            var series = corpus[s];
            // NAB hands its detectors each file's minimum and maximum before the first reading (inputMin, inputMax);
            // the rest period is a quarter of NAB's probation, so it scales with the series as NAB's own detectors'.
            var detector = new ContextNoveltyDetector(new ContextNoveltyOptions
            {
                Minimum = series.Values.Min(),
                Maximum = series.Values.Max(),
                RestReadings = NabScorer.ProbationLength(series.Values.Length) / 4,
            });
            scores[s] = new double[series.Values.Length];
            for (var i = 0; i < series.Values.Length; i++) scores[s][i] = detector.Update(series.Values[i]);
            readings += series.Values.Length;
        }
        var detectSeconds = clock.Elapsed.TotalSeconds;

        output.WriteLine($"NAB: {corpus.Count} series, {readings:N0} readings, {corpus.Sum(c => c.Windows.Length)} anomaly windows ({args.Positional[0]})");
        output.WriteLine($"detector: context novelty (streaming, one pass, range = the file's min and max as NAB gives), {readings / Math.Max(detectSeconds, 1e-9):N0} readings/s");
        output.WriteLine();
        output.WriteLine("| profile | score | raw | threshold | windows detected | false-positive readings |");
        output.WriteLine("|---|---|---|---|---|---|");
        var results = NabProfile.All.Select(p => NabScorer.Score(corpus, scores, p)).ToList();
        foreach (var r in results)
            output.WriteLine($"| {r.Profile.Name} | {r.Normalized:F1} | {r.Raw:F2} | {r.Threshold:G6} | {r.WindowsDetected}/{r.Windows} | {r.FalsePositiveReadings} |");
        output.WriteLine();
        output.WriteLine("NAB scoreboard, full corpus, standard profile: ARTime 74.9, Numenta HTM 70.5, CAD OSE 69.9, KNN CAD 58.0, Relative Entropy 54.6, Windowed Gaussian 39.6, random 11.0, null 0");
        if (args.Has("--per-series"))
        {
            var standard = results[0];
            output.WriteLine();
            output.WriteLine($"per series at the standard threshold {standard.Threshold:G6}:");
            for (var s = 0; s < corpus.Count; s++)
            {
                var one = NabScorer.ScoreAt([corpus[s]], [scores[s]], NabProfile.Standard, standard.Threshold);
                output.WriteLine($"  {corpus[s].Name}: raw {one.Raw:+0.00;-0.00}, windows {one.WindowsDetected}/{one.Windows}, false-positive readings {one.FalsePositiveReadings}");
            }
        }
        return 0;
    }
}
