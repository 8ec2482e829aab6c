using StreamHealth.Forecast.Inference;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Schemas;

namespace StreamHealth.Host;

/// <summary>streamhealth &lt;verb&gt; [args]: one process per deployable part; see README.md.</summary>
public static class StreamHealthCli
{
    public static async Task<int> Main(string[] args)
    {
        try
        {
            return args.FirstOrDefault() switch
            {
                "kafka" => await KafkaVerb.RunAsync(args[1..]),
                "up" => await UpVerb.RunAsync(args[1..]),
                "run" => await RunVerb.RunAsync(args[1..]),
                "forecast" => await ForecastVerb.RunAsync(args[1..]),
                "migrate" => await MigrateVerb.RunAsync(),
                "dump" => await DumpVerb.RunAsync(args[1..]),
                "schemas" => SchemasVerb.Run(args[1..]),
                "sample-user" => await SampleUserVerb.RunAsync(args[1..]),
                "audit" => await AuditVerb.RunAsync(args[1..]),
                "sensors" => await SensorsVerb.RunAsync(args[1..]),
                "calllogs" => await CallLogsVerb.RunAsync(args[1..]),
                "replay" => ReplayVerb.Replay(args[1..]),
                "reset-sink" => ReplayVerb.ResetSink(args[1..]),
                "lag" => ReplayVerb.Lag(args[1..]),
                "dlq" => ReplayVerb.DeadLetters(args[1..]),
                "sink" => ReplayVerb.Sink(args[1..]),
                _ => Usage(),
            };
        }
        catch (Exception e) when (e is ConfigurationException or UnknownTopicException or UsageException or ForecastModelException
                                   or StreamHealth.Runtime.Tools.ReplayException)
        {
            // A mistake the user can fix: one line naming the setting, never a stack trace.
            Console.Error.WriteLine($"streamhealth: {e.Message}");
            return 2;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("""
            usage: streamhealth <verb>
              kafka [--bootstrap-file PATH]    start the embedded Kafka (librdkafka mock cluster) with every topic; Ctrl-C stops
              up [--bootstrap-file PATH]       embedded Kafka + migrations + Redis check + sample producers; Ctrl-C stops
              run --topology NAME[,NAME] [--source TOPIC] [--app ID] [--host-id ID]
                                               a processing host: stream threads, tasks, RocksDB state; SIGTERM stops gracefully
                  [--kill-in-flush N]          (key-sum only, tests) SIGKILL itself inside the Nth store flush with writes
              forecast [--host-id ID]          a member of the CGM forecast consumer group (ONNX Runtime) with its sinks
              forecast evaluate FILE... [--people ID,ID] [--per-person] [--model PATH] [--samples N] [--seed S]
                                               the shipped model, last value and linear regression on GlucoBench windows of CGM exports
              migrate                          apply PostgreSQL migrations (idempotent)
              dump TOPIC [--max N] [--since ISO-8601] [--follow] [--bootstrap HOST:PORT]
                                               print a topic as JSON lines (key, value, headers, timestamp)
              replay TOPIC --from-offset N | --from-time T [--to-offset M | --to-time T2] --into topic:NAME | group:NAME
                     [--rate R] [--dry-run]   copy the range onto a topic (key, value, headers, timestamp; at up to R/s), or set an
                                               inactive group's offsets to its start so its consumers reprocess it
              reset-sink NAME --to-time T [--dry-run]
                                               restart a sink's (inactive) group at T: it re-materialises its table from there
              sink NAME --group G --table SCHEMA.T [--topic T]
                                               run one registered sink under group G into table T (created like its own) until caught up
              lag [--group G [--topic T]]      committed offset, end offset and lag per group and partition
              dlq replay TOPIC.dlq [--to TOPIC] [--where-error TEXT] [--dry-run]
                                               re-produce dead letters (their key, value, headers) onto their source topic
              schemas check [DIR]              are the schemas (compiled, or DIR/*.avsc) compatible with the registered ones
                                               (the subject's level at SchemaRegistry:Url, old readers keep reading, enum symbols append-only)
              schemas register                 register every topic's Avro key and value schema at SchemaRegistry:Url
              sample-user --gateway URL [--email E] [--password P] [--days N]
                                               register (or sign in) a sample person through the gateway, send N days (14) of their
                                               health metrics through the API, print a token and the recommendations URL
              audit verify [--from-seq N] [--witness SEQ:HASH]
                                               walk the hash chain of the personal-data audit trail (audit.events): OK with the row
                                               count, or the first broken seq and why (changed row, deleted row; with a witness the
                                               gateway logged, the newest rows deleted or a re-hashed tail); exit 0/1
              audit prune [--older-than-days N]
                                               delete audit rows older than N days (default Audit:RetentionDays, 2557 ≈ 7 years),
                                               recording where the chain was cut so verify still passes
              sensors nab DIR [--per-series]   the sensors' streaming anomaly detector over a Numenta Anomaly Benchmark layout
                                               (DIR/data, DIR/labels/combined_windows.json), scored with NAB's three profiles
              calllogs extract-check [FILE] [--misses] [--repeat N] [--extractor embedded|openai]
                                               the embedded call-log extractor on the labelled check-ins (default
                                               benchmarks/data/calllogs/checkins-labelled.jsonl): P/R/F1 per kind and part, throughput
            configuration: streamhealth.json beside the binary, overridden by STREAMHEALTH_Section__Key variables
            """);
        return 2;
    }
}
