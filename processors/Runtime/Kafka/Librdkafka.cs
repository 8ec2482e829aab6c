using System.Reflection;
using System.Runtime.InteropServices;

namespace StreamHealth.Runtime.Kafka;

/// <summary>Binds our own P/Invoke declarations to the very librdkafka.so that Confluent.Kafka loads
/// (runtimes/linux-x64/native from the locally built librdkafka.redist 2.15.1), so the mock cluster
/// and the clients speak the same library version.</summary>
internal static partial class Librdkafka
{
    public const string Name = "streamhealth-librdkafka";

    static Librdkafka() => NativeLibrary.SetDllImportResolver(typeof(Librdkafka).Assembly, Resolve);

    public static void EnsureResolver() { /* runs the static constructor */ }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Name) return IntPtr.Zero;
        foreach (var candidate in Candidates())
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle))
                return handle;
        throw new DllNotFoundException(
            "librdkafka.so (2.15.1) not found next to the application; run compose/local/setup.sh and rebuild.");
    }

    private static IEnumerable<string> Candidates()
    {
        yield return Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "librdkafka.so");
        yield return Path.Combine(AppContext.BaseDirectory, "librdkafka.so");
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
