using Confluent.Kafka;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using CgmReading = StreamHealth.Schemas.Avro.Cgm.CgmReading;

namespace StreamHealth.Host.Samples;

/// <summary>A real-format CGM export for the local stack: parsed like an upload, moved in time so that its
/// last reading is now (the dashboard then shows a current trace), and streamed onto cgm.readings at a
/// steady pace, so readings, the latest value and trend, and forecast requests appear while it plays. Avro in the
/// Confluent wire format through the stack's registry connection, like every producer of the topic.</summary>
internal static class CgmSamples
{
    public const string User = "cgm-sample-dexcom";

    /// <summary>The export's readings, or null with the reason when the file is not there.</summary>
    public static (List<CgmReading>? Readings, string Description) Load(string dataDirectory, string file)
    {
        if (file.Length == 0) return (null, "no CGM sample (Samples:CgmFile is empty)");
        if (dataDirectory.Length == 0) return (null, "no CGM sample (Samples:DataDirectory is not set)");
        var path = Path.Combine(dataDirectory, file);
        if (!File.Exists(path)) return (null, $"no CGM sample ({path} does not exist)");
        using var stream = File.OpenRead(path);
        var unshifted = CgmReadingProducer.ReadFile(stream, User);
        var lastMs = unshifted.Readings.Count == 0 ? 0 : unshifted.Readings.Max(CgmReadings.EventTimeMs);
        // Whole 5-minute steps, so the grid alignment of the export is kept.
        var step = 5 * CgmTime.MsPerMinute;
        var shiftMs = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - lastMs) / step * step;
        stream.Position = 0;
        var parsed = CgmReadingProducer.ReadFile(stream, User, shiftMs: shiftMs);
        var (format, readings) = (parsed.Format, parsed.Readings);
        return (readings, $"{Path.GetFileName(path)} ({format.Name()}, {readings.Count} readings) as user {User}");
    }

    public static async Task RunAsync(string bootstrap, SchemaRegistryConnection registry, List<CgmReading> readings, int perSecond, CancellationToken ct)
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 }).Build();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        var perTick = Math.Max(1, perSecond / 10);
        try
        {
            for (var i = 0; i < readings.Count; i += perTick)
            {
                if (!await timer.WaitForNextTickAsync(ct)) break;
                await CgmReadingProducer.ProduceAsync(producer, registry, Topics.CgmReadings, readings.GetRange(i, Math.Min(perTick, readings.Count - i)), ct);
            }
        }
        catch (OperationCanceledException) { }
    }
}
