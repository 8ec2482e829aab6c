using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using StreamHealth.Benchmarks.Kafka;
using StreamHealth.Benchmarks.Weight;

// dotnet run -c Release -- [BenchmarkDotNet args]      e.g. --filter '*Serde*'
// dotnet run -c Release -- kafka-throughput [messages] (load harness against the embedded Kafka)
// dotnet run -c Release -- stream-loop [records] [paced/s] [seconds] [commit ms] (whole stream loop, one thread)
// dotnet run -c Release -- weight-api [requests/s] [seconds] (POST /api/weight/process on loopback)
// dotnet run -c Release -- insights-api [people] [seconds] [posts/s] [wrk connections] (recommendations uncached/cached, POST health metrics; needs wrk and the dev services)
// dotnet run -c Release -- weights-loop [users]          (weights topology end to end, one thread)
// dotnet run -c Release -- quick-plot [requests]      (POST /quick_plot with a 2-day Dexcom file, gateway process on loopback)
// dotnet run -c Release -- cgm-loop [copies]          (CGM window topology end to end, one thread, Hall 2018 × copies)
// dotnet run -c Release -- sensors-loop [districts] [days]  (sensors windowed metrics end to end, one thread, simulated network)
// dotnet run -c Release -- sensors-api [nodes] [seconds] [requests/s]  (GET /api/v1/nodes/{id}/metrics from the cache, open loop; needs the dev services)
// dotnet run -c Release -- call-webhook [seconds] [webhooks/s]  (POST /webhooks/call-completed signed, 202 after acks=all, open loop;
//                                                      BENCH_PG, BENCH_REDIS_PORT: a PostgreSQL and Redis of the local stack)
// dotnet run -c Release -- call-e2e [seconds] [calls/s]  (signed webhook → gateway → fetch worker → extraction → check-in and entry
//                                                      rows in PostgreSQL, open loop; latency p50/p99/max; BENCH_PG, BENCH_REDIS_PORT)
// dotnet run -c Release -- weight-accuracy [users] [seed]  (synthetic cohort: Kalman filter vs rolling median and EMA)
// dotnet run -c Release -- forecast-loop [requests] [model.onnx] [batch sizes] [rates/s] [seconds] [intra-op threads] [max wait ms]
//                                                      (forecast consumer end to end: throughput and latency per MaxBatchSize)
// The stream harnesses run Streamiz through StreamHost with its defaults; HARNESS_THREADS, HARNESS_COMMIT_MS,
// HARNESS_MAX_POLL, HARNESS_FETCH_WAIT_MS and HARNESS_LOG change them (Streams/HarnessHost.cs).
// dotnet run -c Release -- replay [weights]  (issue 18: N weight results replayed into a new group and table through the built
//                                          `streamhealth replay` and `sink`, timed, the table compared row for row; BENCH_PG a fresh database)
// dotnet run -c Release -- soak [requests/s] [seconds]  (mixed valid and hostile traffic against a running stack, then
//                                                      lag 0, stored = accepted, no 5xx; SOAK_* settings in SoakHarness)
return args.FirstOrDefault() switch
{
    "kafka-throughput" => EmbeddedKafkaThroughput.Run(args.Length > 1 ? int.Parse(args[1]) : 150_000),
    "stream-loop" => StreamHealth.Benchmarks.Streams.StreamLoopHarness.Run(
        args.Length > 1 ? int.Parse(args[1]) : 200_000, args.Length > 2 ? int.Parse(args[2]) : 10_000, args.Length > 3 ? int.Parse(args[3]) : 10,
        args.Length > 4 ? int.Parse(args[4]) : 1_000),
    "weight-api" => StreamHealth.Benchmarks.Streams.WeightApiHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 500, args.Length > 2 ? int.Parse(args[2]) : 20),
    "insights-api" => StreamHealth.Benchmarks.Insights.InsightsApiHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 200, args.Length > 2 ? int.Parse(args[2]) : 20,
        args.Length > 3 ? int.Parse(args[3]) : 1000, args.Length > 4 ? int.Parse(args[4]) : 64),
    "weights-loop" => StreamHealth.Benchmarks.Streams.WeightLoopHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 1_000),
    "quick-plot" => StreamHealth.Benchmarks.Streams.QuickPlotHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 200,
        Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data"))),
    "cgm-loop" => StreamHealth.Benchmarks.Streams.CgmLoopHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 6,
        Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data"))),
    "sensors-api" => StreamHealth.Benchmarks.Sensors.SensorsApiHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 500, args.Length > 2 ? int.Parse(args[2]) : 30,
        args.Length > 3 ? int.Parse(args[3]) : 1_000),
    "call-webhook" => StreamHealth.Benchmarks.CallLogs.CallWebhookHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 30,
        args.Length > 2 ? int.Parse(args[2]) : 200),
    "call-e2e" => StreamHealth.Benchmarks.CallLogs.CallEndToEndHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 30,
        args.Length > 2 ? int.Parse(args[2]) : 100),
    "sensors-loop" => StreamHealth.Benchmarks.Streams.SensorsLoopHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 3, args.Length > 2 ? int.Parse(args[2]) : 2),
    "weight-accuracy" => WeightAccuracy.Run(args.Length > 1 ? int.Parse(args[1]) : 1_000,
        args.Length > 2 ? int.Parse(args[2]) : StreamHealth.Weight.Samples.SyntheticWeightCohort.DefaultSeed),
    "forecast-loop" => StreamHealth.Benchmarks.Streams.ForecastLoopHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 50_000,
        args.Length > 2 ? args[2] : StreamHealth.Forecast.ForecastOptions.DefaultModelPath,
        Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data")),
        StreamHealth.Benchmarks.Streams.ForecastLoopHarness.ParseList(args.Length > 3 ? args[3] : null, [16, 64, 256, 1024]),
        StreamHealth.Benchmarks.Streams.ForecastLoopHarness.ParseList(args.Length > 4 ? args[4] : null, [2_000, 5_000, 10_000]),
        args.Length > 5 ? int.Parse(args[5]) : 5, args.Length > 6 ? int.Parse(args[6]) : 1, args.Length > 7 ? int.Parse(args[7]) : 10),
    "replay" => StreamHealth.Benchmarks.Streams.ReplayHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 100_000),
    "soak" => StreamHealth.Benchmarks.Streams.SoakHarness.Run(args.Length > 1 ? int.Parse(args[1]) : 200, args.Length > 2 ? int.Parse(args[2]) : 600),
    _ => Run(args),
};

static int Run(string[] args)
{
    // In-process: BenchmarkDotNet's generated projects would inherit this repo's central package
    // management and warnings-as-errors; running in this process measures the same Release code.
    var config = DefaultConfig.Instance.AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance));
    BenchmarkSwitcher.FromAssembly(typeof(EmbeddedKafkaThroughput).Assembly).Run(args, config);
    return 0;
}
