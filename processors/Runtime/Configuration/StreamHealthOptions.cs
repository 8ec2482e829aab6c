using Microsoft.Extensions.Configuration;
using StackExchange.Redis;
using StreamHealth.Runtime.Kafka;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.Configuration;

/// <summary>Kafka connection. An empty <see cref="BootstrapServers"/> means "start the embedded cluster".</summary>
public sealed class KafkaOptions
{
    public const string Section = "Kafka";
    public string BootstrapServers { get; set; } = "";
    public KafkaFlavor Flavor { get; set; } = KafkaFlavor.Embedded;
    public int EmbeddedBrokers { get; set; } = 1;
    /// <summary>Per-topic overrides, keyed by catalogue topic name (e.g. "weights.raw").</summary>
    public Dictionary<string, TopicOptions> Topics { get; set; } = new(StringComparer.Ordinal);

    public BrokerCapabilities Capabilities => BrokerCapabilities.For(Flavor);

    public IReadOnlyDictionary<string, int> PartitionOverrides =>
        Topics.Where(t => t.Value.Partitions > 0).ToDictionary(t => t.Key, t => t.Value.Partitions);

    internal void Validate(List<string> errors)
    {
        if (EmbeddedBrokers is < 1 or > 16)
            errors.Add($"{Section}:EmbeddedBrokers = {EmbeddedBrokers}: must be 1-16");
        foreach (var (name, topic) in Topics)
        {
            if (!Schemas.Topics.TryGet(name, out _))
                errors.Add($"{Section}:Topics:{name}: unknown topic name; known topics: {Schemas.Topics.KnownNames}");
            else if (topic.Partitions is < 0 or > 256)
                errors.Add($"{Section}:Topics:{name}:Partitions = {topic.Partitions}: must be 1-256");
        }
        foreach (var server in BootstrapServers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var colon = server.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(server.AsSpan(colon + 1), out var port) || !OptionChecks.IsPort(port))
                errors.Add($"{Section}:BootstrapServers = {BootstrapServers}: '{server}' is not host:port with a port 1-65535");
        }
    }
}

public sealed class TopicOptions
{
    public int Partitions { get; set; }
}

/// <summary>PostgreSQL (TimescaleDB in production) that the sinks and gateway use.</summary>
public sealed class PostgresOptions
{
    public const string Section = "Postgres";
    public string Host { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 55432;
    public string Database { get; set; } = "streamhealth";
    public string Username { get; set; } = "postgres";
    public string Password { get; set; } = "";
    public int MaxPoolSize { get; set; } = 32;

    /// <summary>Statements run twice on a connection are prepared (Npgsql auto-prepare): the time-series tables have a
    /// partition per month, and planning a query over ~190 partitions costs milliseconds each time, several times its
    /// execution (measured on the recommendations read, RESULTS "Insights API"); a prepared statement's generic plan
    /// prunes partitions when it runs instead.</summary>
    public string ConnectionString =>
        $"Host={Host};Port={Port};Database={Database};Username={Username};Password={Password};Maximum Pool Size={MaxPoolSize};No Reset On Close=true;" +
        "Max Auto Prepare=64;Auto Prepare Min Usages=2";

    internal void Validate(List<string> errors)
    {
        if (!OptionChecks.IsPort(Port)) errors.Add($"{Section}:Port = {Port}: not a TCP port (1-65535)");
        if (string.IsNullOrWhiteSpace(Host)) errors.Add($"{Section}:Host is empty");
        if (string.IsNullOrWhiteSpace(Database)) errors.Add($"{Section}:Database is empty");
        if (MaxPoolSize < 1) errors.Add($"{Section}:MaxPoolSize = {MaxPoolSize}: must be at least 1");
    }
}

/// <summary>Redis that holds each user's latest state (write-through cache).</summary>
public sealed class RedisOptions
{
    public const string Section = "Redis";
    public string Host { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 56379;

    /// <summary>abortConnect=false: a process starts without Redis and reconnects by itself. FailFast: while disconnected,
    /// a command fails at once with RedisConnectionException (as StackExchange.Redis 1.x did) instead of waiting
    /// syncTimeout in the backlog that 2.x and later queue it in (measured with 3.4.35: 2-3 s), so the gateway
    /// answers from PostgreSQL or 503 and a sink pauses without holding a request that long.</summary>
    public ConfigurationOptions ConnectionOptions()
    {
        var options = ConfigurationOptions.Parse($"{Host}:{Port},abortConnect=false,connectTimeout=2000,syncTimeout=2000");
        options.BacklogPolicy = BacklogPolicy.FailFast;
        return options;
    }

    internal void Validate(List<string> errors)
    {
        if (!OptionChecks.IsPort(Port)) errors.Add($"{Section}:Port = {Port}: not a TCP port (1-65535)");
        if (string.IsNullOrWhiteSpace(Host)) errors.Add($"{Section}:Host is empty");
    }
}

/// <summary>Where stream tasks keep their RocksDB state stores.</summary>
public sealed class StateOptions
{
    public const string Section = "State";
    public string Directory { get; set; } = "/var/tmp/streamhealth-state";

    internal void Validate(List<string> errors)
    {
        // The store directory itself is created on demand; a missing parent is almost always a typo.
        var parent = Path.GetDirectoryName(Path.GetFullPath(Directory));
        if (string.IsNullOrWhiteSpace(Directory))
            errors.Add($"{Section}:Directory is empty");
        else if (parent is not null && !System.IO.Directory.Exists(parent))
            errors.Add($"{Section}:Directory = {Directory}: parent directory {parent} does not exist");
    }
}

/// <summary>How this process runs its topologies (see Streams/StreamHost).</summary>
public sealed class StreamsOptions
{
    public const string Section = "Streams";
    /// <summary>Stream threads (consumer-group members) per topology in this process.</summary>
    public int ThreadsPerTopology { get; set; } = 1;
    public int CommitIntervalMs { get; set; } = 1_000;
    /// <summary>How long a dead member keeps its partitions before the group moves them.</summary>
    public int SessionTimeoutMs { get; set; } = 6_000;
    /// <summary>What `streamhealth run` starts when no --topology is given.</summary>
    public List<string> Topologies { get; set; } = [];
    /// <summary>Longest a stream thread's fetch waits for data. Null: 2 ms on the embedded broker (it
    /// answers a waiting fetch only when the wait expires, so this is added latency), 100 ms on Kafka
    /// (which answers as soon as data arrives; the wait only bounds idle polling).</summary>
    public int? FetchWaitMaxMs { get; set; }

    public int EffectiveFetchWaitMaxMs(KafkaFlavor flavor) => FetchWaitMaxMs ?? (flavor == KafkaFlavor.Embedded ? 2 : 100);

    /// <summary>Streamiz's processing guarantee: "AtLeastOnce" or "ExactlyOnce" (v2, transactions). Null: at-least-once on the
    /// embedded broker (its transactions do not isolate: read_committed sees aborted records and offsets sent to a transaction
    /// are not stored), with the applied-offset fence keeping state effectively once; exactly-once on real Kafka.</summary>
    public string? Guarantee { get; set; }

    public Streamiz.Kafka.Net.ProcessingGuarantee EffectiveGuarantee(KafkaFlavor flavor) => Guarantee switch
    {
        "AtLeastOnce" => Streamiz.Kafka.Net.ProcessingGuarantee.AT_LEAST_ONCE,
        "ExactlyOnce" => Streamiz.Kafka.Net.ProcessingGuarantee.EXACTLY_ONCE,
        _ => flavor == KafkaFlavor.Embedded ? Streamiz.Kafka.Net.ProcessingGuarantee.AT_LEAST_ONCE : Streamiz.Kafka.Net.ProcessingGuarantee.EXACTLY_ONCE,
    };

    /// <summary>How often a host's figures are taken for its meters and logged, and its registry heartbeat renewed.</summary>
    public int MetricsIntervalMs { get; set; } = 5_000;

    /// <summary>A stream task or sink with input waiting that has not advanced for this long is reported stalled:
    /// /health answers 503 "degraded" naming it, its lag and its last error, until it advances again.</summary>
    public int StallAfterMs { get; set; } = 30_000;

    /// <summary>The Redis hash every processing host of this stack registers in for discovery (field = host id, value = where
    /// its metrics and interactive queries are served and its last heartbeat: <see cref="StreamHealth.Runtime.Streams.StreamHostRegistry"/>);
    /// stacks sharing one Redis keep apart by giving each its own.</summary>
    public string RegistryKey { get; set; } = StreamHealth.Runtime.Streams.StreamHostRegistry.DefaultKey;

    /// <summary>Where a processing host serves interactive queries of its stores to the gateway (StoreQueryApi); port 0
    /// takes a free port. Internal and unauthenticated: bind it to the pod or loopback network only.</summary>
    public string QueryListenUrl { get; set; } = "http://127.0.0.1:0";

    /// <summary>The URL the gateway reaches this host's queries at, registered for discovery (a pod's own
    /// address in k8s); null: the address bound.</summary>
    public string? QueryAdvertisedUrl { get; set; }

    internal void Validate(List<string> errors)
    {
        if (StallAfterMs is < 100 or > 86_400_000) errors.Add($"{Section}:StallAfterMs = {StallAfterMs}: must be 100-86400000");
        if (InputRules.CheckId($"{Section}:RegistryKey", RegistryKey) is { } keyError) errors.Add(keyError);
        // Streamiz 1.8.2 with two threads in one process: a task moving between them opens its RocksDB store before the other
        // thread has closed it ("LOCK: No locks available") and the thread dies. Scale with processes (one per core) instead.
        if (ThreadsPerTopology != 1) errors.Add($"{Section}:ThreadsPerTopology = {ThreadsPerTopology}: must be 1 (run more processes to use more cores)");
        if (CommitIntervalMs is < 1 or > 60_000) errors.Add($"{Section}:CommitIntervalMs = {CommitIntervalMs}: must be 1-60000");
        if (SessionTimeoutMs is < 1_000 or > 300_000) errors.Add($"{Section}:SessionTimeoutMs = {SessionTimeoutMs}: must be 1000-300000");
        if (Guarantee is not (null or "AtLeastOnce" or "ExactlyOnce"))
            errors.Add($"{Section}:Guarantee = {Guarantee}: must be AtLeastOnce or ExactlyOnce (empty: by broker)");
        if (FetchWaitMaxMs is < 1 or > 5_000) errors.Add($"{Section}:FetchWaitMaxMs = {FetchWaitMaxMs}: must be 1-5000");
        if (MetricsIntervalMs is < 100 or > 600_000) errors.Add($"{Section}:MetricsIntervalMs = {MetricsIntervalMs}: must be 100-600000");
    }
}

/// <summary>Sample data the local stack streams (../shared/data).</summary>
public sealed class SamplesOptions
{
    public const string Section = "Samples";
    public bool Enabled { get; set; } = true;
    public string DataDirectory { get; set; } = "";
    public int MetricsPerSecond { get; set; } = 20;
    /// <summary>Rate at which the sample weigh-ins already past are sent when `up` starts (later ones go out at their times).</summary>
    public int WeightsPerSecond { get; set; } = 500;
    /// <summary>CGM export streamed through the CGM pipeline at start-up, relative to
    /// <see cref="DataDirectory"/> (empty: none); its times are moved so that it ends now.</summary>
    public string CgmFile { get; set; } = "cgm/Clarity_Export_synthetic.csv";
    public int CgmReadingsPerSecond { get; set; } = 200;
    /// <summary>The gateway the sample call provider sends its signed webhooks to (compose/local/up.sh sets it); empty: none, every
    /// sample call reaches the pipeline through the poller.</summary>
    public string GatewayUrl { get; set; } = "";
    /// <summary>Seconds between two sample check-in calls.</summary>
    public double CallEverySeconds { get; set; } = 20;

    internal void Validate(List<string> errors)
    {
        if (Enabled && DataDirectory.Length > 0 && !System.IO.Directory.Exists(DataDirectory))
            errors.Add($"{Section}:DataDirectory = {DataDirectory}: directory does not exist");
        if (MetricsPerSecond is < 0 or > 100_000)
            errors.Add($"{Section}:MetricsPerSecond = {MetricsPerSecond}: must be 0-100000");
        if (CgmReadingsPerSecond is < 1 or > 1_000_000)
            errors.Add($"{Section}:CgmReadingsPerSecond = {CgmReadingsPerSecond}: must be 1-1000000");
        if (GatewayUrl.Length > 0 && !Uri.TryCreate(GatewayUrl, UriKind.Absolute, out _))
            errors.Add($"{Section}:GatewayUrl = {GatewayUrl}: must be an absolute URL");
        if (!double.IsFinite(CallEverySeconds) || CallEverySeconds is < 0.1 or > 86_400)
            errors.Add($"{Section}:CallEverySeconds = {CallEverySeconds}: must be 0.1-86400");
        if (WeightsPerSecond is < 0 or > 100_000)
            errors.Add($"{Section}:WeightsPerSecond = {WeightsPerSecond}: must be 0-100000");
    }
}

/// <summary>The audit trail of personal data (audit.events; gateway/Audit, `streamhealth audit`).</summary>
public sealed class AuditOptions
{
    public const string Section = "Audit";
    /// <summary>How long audit rows are kept: `streamhealth audit prune` deletes older ones. 2557 days ≈ 7 years, the
    /// retention the seed cites for health records' access logs.</summary>
    public int RetentionDays { get; set; } = 2_557;
    /// <summary>Entries a gateway holds while PostgreSQL cannot take them (about 1 KiB each); a full queue makes requests
    /// wait rather than lose an entry.</summary>
    public int QueueCapacity { get; set; } = 10_000;
    /// <summary>How long a gateway's audit batch waits after its first entry for more (or until 500): an entry reaches
    /// PostgreSQL this much later, and under load each transaction carries hundreds of rows instead of a few.</summary>
    public int BatchLingerMilliseconds { get; set; } = 20;

    internal void Validate(List<string> errors)
    {
        if (RetentionDays is < 1 or > 36_500) errors.Add($"{Section}:RetentionDays = {RetentionDays}: must be 1-36500");
        if (QueueCapacity is < 100 or > 1_000_000) errors.Add($"{Section}:QueueCapacity = {QueueCapacity}: must be 100-1000000");
        if (BatchLingerMilliseconds is < 0 or > 1_000) errors.Add($"{Section}:BatchLingerMilliseconds = {BatchLingerMilliseconds}: must be 0-1000");
    }
}

internal static class OptionChecks
{
    public static bool IsPort(int port) => port is >= 1 and <= 65535;
}

/// <summary>A configuration mistake a user made; its message is one line naming the setting.</summary>
public sealed class ConfigurationException(string message) : Exception(message);

/// <summary>All options of one process, bound from streamhealth.json plus STREAMHEALTH_ environment variables.</summary>
/// <summary>Where topics' Avro schemas are registered and looked up. Production: Confluent Schema Registry
/// (<see cref="Embedded"/> false, <see cref="Url"/> its address, schemas registered by the deploy step
/// `streamhealth schemas register`). Locally and in tests: the project's stand-in, hosted by the process that runs the
/// embedded broker (`streamhealth kafka` / `up`) at <see cref="Url"/> and persisted in PostgreSQL.</summary>
public sealed class SchemaRegistryOptions
{
    public const string Section = "SchemaRegistry";
    public string Url { get; set; } = "http://127.0.0.1:58081";
    /// <summary>Whether this stack's broker process hosts the stand-in registry at <see cref="Url"/>.</summary>
    public bool Embedded { get; set; } = true;
    /// <summary>Whether serializers register a schema the registry does not have yet. Null: on with the embedded registry,
    /// off otherwise (production registers schemas in a deploy step, so a process can never publish an unreviewed one).</summary>
    public bool? AutoRegister { get; set; }

    public bool EffectiveAutoRegister => AutoRegister ?? Embedded;

    /// <summary>Per-subject compatibility levels (subject, e.g. "weights.raw-value" → "FULL_TRANSITIVE"), set by
    /// `schemas register` before it registers; other subjects keep the registry's level (BACKWARD by default).</summary>
    public Dictionary<string, string> Compatibility { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Confluent's level names (BACKWARD, FULL_TRANSITIVE, ...) as the client's enum.</summary>
    public static bool TryParseLevel(string? level, out Confluent.SchemaRegistry.Compatibility parsed) =>
        Enum.TryParse((level ?? "").Replace("_", ""), ignoreCase: true, out parsed) && Enum.IsDefined(parsed);

    internal void Validate(List<string> errors)
    {
        var subjects = Schemas.AvroSchemas.All
            .SelectMany(t => new[] { SchemaRegistry.SchemaRegistration.KeySubject(t.Topic), SchemaRegistry.SchemaRegistration.ValueSubject(t.Topic) })
            .ToHashSet(StringComparer.Ordinal);
        foreach (var (subject, level) in Compatibility)
        {
            if (!subjects.Contains(subject))
                errors.Add($"{Section}:Compatibility:{subject}: not a subject of a StreamHealth topic (<topic>-key or <topic>-value)");
            else if (!TryParseLevel(level, out _))
                errors.Add($"{Section}:Compatibility:{subject} = {level}: not a level (NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)");
        }
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            errors.Add($"{Section}:Url = {Url}: must be an absolute http(s) URL");
        else if (Embedded && (uri.Scheme != "http" || !OptionChecks.IsPort(uri.Port)))
            errors.Add($"{Section}:Url = {Url}: the embedded registry listens on plain http with an explicit port");
    }
}

public sealed class StreamHealthOptions
{
    public const string EnvironmentPrefix = "STREAMHEALTH_";
    public const string FileName = "streamhealth.json";

    public KafkaOptions Kafka { get; } = new();
    public PostgresOptions Postgres { get; } = new();
    public RedisOptions Redis { get; } = new();
    public StateOptions State { get; } = new();
    public StreamsOptions Streams { get; } = new();
    public SamplesOptions Samples { get; } = new();
    public InputOptions Input { get; } = new();
    public SchemaRegistryOptions SchemaRegistry { get; } = new();
    public AuditOptions Audit { get; } = new();

    /// <summary>The configuration sources every StreamHealth process uses, in precedence order.</summary>
    public static IConfigurationBuilder AddSources(IConfigurationBuilder builder, IEnumerable<KeyValuePair<string, string?>>? overrides = null)
    {
        var file = Environment.GetEnvironmentVariable(EnvironmentPrefix + "CONFIG")
                   ?? Path.Combine(AppContext.BaseDirectory, FileName);
        builder.AddJsonFile(file, optional: false, reloadOnChange: false)
               .AddEnvironmentVariables(EnvironmentPrefix);
        if (overrides is not null) builder.AddInMemoryCollection(overrides);
        return builder;
    }

    public static StreamHealthOptions Load(IEnumerable<KeyValuePair<string, string?>>? overrides = null)
    {
        IConfiguration configuration;
        try
        {
            configuration = AddSources(new ConfigurationBuilder(), overrides).Build();
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException)
        {
            throw new ConfigurationException($"configuration file: {OneLine(e.Message)}");
        }
        return Bind(configuration);
    }

    /// <summary>Binds and validates; every problem found is reported, each naming its setting.</summary>
    public static StreamHealthOptions Bind(IConfiguration configuration)
    {
        var options = new StreamHealthOptions();
        try
        {
            configuration.GetSection(KafkaOptions.Section).Bind(options.Kafka);
            configuration.GetSection(PostgresOptions.Section).Bind(options.Postgres);
            configuration.GetSection(RedisOptions.Section).Bind(options.Redis);
            configuration.GetSection(StateOptions.Section).Bind(options.State);
            configuration.GetSection(StreamsOptions.Section).Bind(options.Streams);
            configuration.GetSection(SamplesOptions.Section).Bind(options.Samples);
            configuration.GetSection(InputOptions.Section).Bind(options.Input);
            configuration.GetSection(SchemaRegistryOptions.Section).Bind(options.SchemaRegistry);
            configuration.GetSection(AuditOptions.Section).Bind(options.Audit);
        }
        catch (InvalidOperationException e)
        {
            // The binder's message already names the key ("... value 'x' at 'Postgres:Port' to type ...").
            throw new ConfigurationException(OneLine(e.Message));
        }
        var errors = new List<string>();
        options.Kafka.Validate(errors);
        options.Postgres.Validate(errors);
        options.Redis.Validate(errors);
        options.SchemaRegistry.Validate(errors);
        options.State.Validate(errors);
        options.Streams.Validate(errors);
        options.Samples.Validate(errors);
        options.Input.Validate(errors);
        options.Audit.Validate(errors);
        if (errors.Count > 0) throw new ConfigurationException("configuration error: " + string.Join("; ", errors));
        return options;
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
