using System.Reflection;
using System.Runtime.InteropServices;

namespace StreamHealth.Runtime.Kafka;

/// <summary>Binds our own P/Invoke declarations (the mock cluster API, which Confluent.Kafka does not expose) to
/// the very librdkafka.so file that Confluent.Kafka loaded from librdkafka.redist 2.16.0, so the embedded broker
/// and the clients run one copy of one library.</summary>
/// <remarks>The redist ships two glibc builds in runtimes/linux-x64/native: <c>librdkafka.so</c>, which needs
/// <c>libsasl2.so.3</c> (the RHEL soname; Debian 12's libsasl2-2 provides only <c>libsasl2.so.2</c>), and the
/// self-contained <c>centos8-librdkafka.so</c> (same 2.16.0 source, no Cyrus SASL/GSSAPI), which Confluent.Kafka
/// silently falls back to when the first does not load. Guessing that order here could pick a different file
/// than the clients; asking the process which file is mapped cannot.</remarks>
internal static partial class Librdkafka
{
    public const string Name = "streamhealth-librdkafka";

    private static string? _loadedPath;

    static Librdkafka() => NativeLibrary.SetDllImportResolver(typeof(Librdkafka).Assembly, Resolve);

    public static void EnsureResolver() { /* runs the static constructor */ }

    /// <summary>Full path of the librdkafka file both Confluent.Kafka and these declarations use.</summary>
    public static string LoadedPath
    {
        get
        {
            EnsureResolver();
            _ = rd_kafka_version_str(); // resolves the library if nothing has yet
            return _loadedPath!;
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Name) return IntPtr.Zero;
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
