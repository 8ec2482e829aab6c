using System.Reflection;
using System.Runtime.InteropServices;

namespace StreamHealth.Runtime.Kafka;

/// <summary>Binds our own P/Invoke declarations (the mock cluster API, which Confluent.Kafka does not expose) to the
/// embedded broker's own librdkafka: <c>librdkafka-mock-broker.so</c>, a build with the mock cluster's offset lookup
/// patched (compose/local/setup.sh), copied next to the application under runtimes/linux-x64/native. The clients keep
/// the librdkafka.redist 2.16.0 file that Confluent.Kafka loads.</summary>
/// <remarks>Two librdkafka copies in one process stay apart: NativeLibrary.Load is dlopen without RTLD_GLOBAL, so the
/// broker copy's symbols never interpose the clients' (or the reverse), and it is linked with -Bsymbolic, so its calls
/// to its own exported functions bind to itself whatever else is loaded. Nothing crosses between them but TCP: the
/// clients reach the broker through its bootstrap address like any Kafka. When the broker library is missing (setup
/// not run) the cluster runs on the clients' unpatched copy, found in /proc/self/maps rather than guessed, since the
/// redist's default <c>librdkafka.so</c> needs libsasl2.so.3, which Debian 12 lacks, and Confluent.Kafka then falls
/// back to its <c>centos8-librdkafka.so</c>.</remarks>
internal static partial class Librdkafka
{
    public const string Name = "streamhealth-librdkafka";

    /// <summary>The patched broker build, as StreamHealth.Runtime.csproj copies it into every application's output.</summary>
    public const string BrokerFileName = "librdkafka-mock-broker.so";

    private static string? _loadedPath;

    // The runtime asks the resolver once per P/Invoke method, not once per library: load (and warn) once.
    private static readonly Lazy<IntPtr> Handle = new(Load);

    static Librdkafka() => NativeLibrary.SetDllImportResolver(typeof(Librdkafka).Assembly, Resolve);

    public static void EnsureResolver() { /* runs the static constructor */ }

    /// <summary>Full path of the librdkafka file these declarations (the embedded broker) use.</summary>
    public static string LoadedPath
    {
        get
        {
            EnsureResolver();
            _ = rd_kafka_version_str(); // resolves the library if nothing has yet
            return _loadedPath!;
        }
    }

    /// <summary>Whether the broker runs on its patched build rather than on the clients' library.</summary>
    public static bool IsPatchedBroker => Path.GetFileName(LoadedPath) == BrokerFileName;

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name == Name ? Handle.Value : IntPtr.Zero;

    private static IntPtr Load()
    {
        var broker = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", BrokerFileName);
        if (File.Exists(broker))
        {
            _loadedPath = broker;
            return NativeLibrary.Load(broker);
        }
        Console.Error.WriteLine($"warning: {BrokerFileName} not found in {Path.GetDirectoryName(broker)}; the embedded broker runs " +
                                "on the clients' unpatched librdkafka, whose fetch latency grows with the data kept. " +
                                "Run compose/local/setup.sh and rebuild.");
        // Reading the version makes Confluent.Kafka load its native library (throws if none of its builds loads).
        _ = Confluent.Kafka.Library.VersionString;
        var loaded = MappedLibrdkafkaFiles();
        if (loaded.Count != 1)
            throw new DllNotFoundException(
                $"expected Confluent.Kafka to have loaded one librdkafka file (librdkafka.redist 2.16.0), found {loaded.Count}: " +
                string.Join(", ", loaded) + "; run compose/local/setup.sh and rebuild.");
        _loadedPath = loaded[0];
        // dlopen of an already mapped file returns the same handle: one library, one set of globals.
        return NativeLibrary.Load(_loadedPath);
    }

    /// <summary>Distinct librdkafka files mapped into this process, from /proc/self/maps (Linux is the only
    /// platform setup supports).</summary>
    public static IReadOnlyList<string> MappedLibrdkafkaFiles()
    {
        var files = new List<string>();
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var slash = line.IndexOf('/');
            if (slash < 0) continue;
            var file = line[slash..];
            if (Path.GetFileName(file).Contains("librdkafka", StringComparison.Ordinal) && !files.Contains(file))
                files.Add(file);
        }
        return files;
    }

    public const int ProducerType = 0;

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_conf_new();

    [LibraryImport(Name, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rd_kafka_conf_set(IntPtr conf, string name, string value, byte[] errstr, nuint errstrSize);

    [LibraryImport(Name)] public static partial void rd_kafka_conf_destroy(IntPtr conf);

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_new(int type, IntPtr conf, byte[] errstr, nuint errstrSize);

    [LibraryImport(Name)] public static partial void rd_kafka_destroy(IntPtr rk);

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_err2str(int err);

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_version_str();

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_mock_cluster_new(IntPtr rk, int brokerCount);

    [LibraryImport(Name)] public static partial void rd_kafka_mock_cluster_destroy(IntPtr cluster);

    [LibraryImport(Name)] public static partial IntPtr rd_kafka_mock_cluster_bootstraps(IntPtr cluster);

    [LibraryImport(Name, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rd_kafka_mock_topic_create(IntPtr cluster, string topic, int partitions, int replicationFactor);

    [LibraryImport(Name)] public static partial void rd_kafka_mock_group_initial_rebalance_delay_ms(IntPtr cluster, int delayMs);

    [LibraryImport(Name)] public static partial int rd_kafka_mock_broker_set_down(IntPtr cluster, int brokerId);

    [LibraryImport(Name)] public static partial int rd_kafka_mock_broker_set_up(IntPtr cluster, int brokerId);

    public static string ErrorText(int err) => Marshal.PtrToStringUTF8(rd_kafka_err2str(err)) ?? $"error {err}";

    public static string Version => Marshal.PtrToStringUTF8(rd_kafka_version_str()) ?? "?";
}
