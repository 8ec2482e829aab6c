using Npgsql;
using StackExchange.Redis;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>The real PostgreSQL and Redis of the `test` profile (compose/local/services.sh).
/// compose/local/test.sh starts them; a bare `dotnet test` starts them through the same script.</summary>
public static class LocalServices
{
    public static int PostgresPort { get; } = EnvPort("STREAMHEALTH_TEST_PG_PORT", 55433);
    public static int RedisPort { get; } = EnvPort("STREAMHEALTH_TEST_REDIS_PORT", 56380);

    private static readonly Lazy<bool> Started = new(StartIfNeeded);

    public static void EnsureStarted() => _ = Started.Value;

    /// <summary>Connection string for a database of its own (created by the migrator or the caller).</summary>
    public static string PostgresConnectionString(string database)
    {
        EnsureStarted();
        return $"Host=127.0.0.1;Port={PostgresPort};Database={database};Username=postgres;Pooling=false";
    }

    public static string NewDatabaseName(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..40];

    public static string RedisConfiguration
    {
        get
        {
            EnsureStarted();
            return $"127.0.0.1:{RedisPort},abortConnect=false";
        }
    }

    /// <summary>Settings for StreamHealthOptions that point at the test services.</summary>
    public static Dictionary<string, string?> Overrides(string database, string? bootstrap = null)
    {
        EnsureStarted();
        var d = new Dictionary<string, string?>
        {
            ["Postgres:Port"] = PostgresPort.ToString(),
            ["Postgres:Database"] = database,
            ["Redis:Port"] = RedisPort.ToString(),
            ["State:Directory"] = Path.Combine(Path.GetTempPath(), "streamhealth-tests-state"),
            // Host reports of one test's stack, never another's: a host a test kills stays reported (silent) for minutes.
            ["Streams:RegistryKey"] = "streamhealth:hosts:test:" + database,
        };
        if (bootstrap is not null) d["Kafka:BootstrapServers"] = bootstrap;
        return d;
    }

    private static bool StartIfNeeded()
    {
        if (PostgresUp() && RedisUp()) return true;
        var (code, _, err) = Repo.Run("bash", [Path.Combine(Repo.Root, "compose", "local", "services.sh"), "start", "test"],
            new Dictionary<string, string> { ["STREAMHEALTH_PG_PORT"] = PostgresPort.ToString(), ["STREAMHEALTH_REDIS_PORT"] = RedisPort.ToString() });
        if (code != 0) throw new InvalidOperationException("compose/local/services.sh start test failed: " + err);
        return true;
    }

    private static bool PostgresUp()
    {
        try
        {
            using var c = new NpgsqlConnection($"Host=127.0.0.1;Port={PostgresPort};Database=postgres;Username=postgres;Pooling=false;Timeout=2");
            c.Open();
            return true;
        }
        catch (NpgsqlException) { return false; }
    }

    private static bool RedisUp()
    {
        try
        {
            using var m = ConnectionMultiplexer.Connect($"127.0.0.1:{RedisPort},connectTimeout=1000");
            return m.IsConnected;
        }
        catch (RedisConnectionException) { return false; }
    }

    private static int EnvPort(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out var p) ? p : fallback;
}
