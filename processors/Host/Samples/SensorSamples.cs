using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using StreamHealth.Sensors.Network;
using StreamHealth.Sensors.Simulation;
using AvroRecords = StreamHealth.Schemas.Avro;

namespace StreamHealth.Host.Samples;

/// <summary>The simulated water network for the local stack (<see cref="NetworkSimulator"/>): its nodes registered in sensors.nodes,
/// then its readings from <see cref="BackfillHours"/> ago produced at once (so every window has data within a minute of start), and
/// from then on each reading when the clock reaches its time. The seed changes each start: a reading id names one reading for
/// good, and the dev database keeps earlier runs.</summary>
internal static class SensorSamples
{
    public const int BackfillHours = 3;
    public const int Districts = 3;

    public static async Task RunAsync(string bootstrap, SchemaRegistryConnection registry, NpgsqlDataSource postgres, CancellationToken ct)
    {
        // After an earlier `up` (the dev database and broker keep what it sent), from where it stopped: readings older than a
        // node's newest closed window would only be dead-lettered as late.
        var start = DateTimeOffset.UtcNow.AddHours(-BackfillHours);
        await using (var latest = postgres.CreateCommand(
                         "SELECT max(window_end) FROM sensors.window_metrics WHERE node_id LIKE 'dma-%' AND window_start > now() - interval '1 day'"))
            if (await latest.ExecuteScalarAsync(ct) is DateTime stored && new DateTimeOffset(stored) > start) start = new DateTimeOffset(stored).AddMinutes(10);
        var simulator = new NetworkSimulator(new SimulationOptions
        {
            Districts = Districts, Days = 30, StartUnixMs = start.ToUnixTimeMilliseconds(), Seed = (int)(start.ToUnixTimeSeconds() % 100_000),
        });
        await NodeRegistry.RegisterAsync(postgres, simulator.RegisteredNodes, ct);
        var keys = registry.SerDes<AvroRecords.Common.SensorKey>();
        var values = registry.SerDes<AvroRecords.Sensors.SensorReading>();
        var keyContext = new SerializationContext(MessageComponentType.Key, Topics.SensorsReadings);
        var valueContext = new SerializationContext(MessageComponentType.Value, Topics.SensorsReadings);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrap, EnableIdempotence = true, LingerMs = 5 }).Build();
        var keyBytes = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        try
        {
            foreach (var r in simulator.Readings())
            {
                var wait = r.TimeUnixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                if (wait > 0) await Task.Delay(TimeSpan.FromMilliseconds(wait), ct);
                if (!keyBytes.TryGetValue(r.NodeId, out var key))
                    keyBytes[r.NodeId] = key = keys.Serialize(new AvroRecords.Common.SensorKey { node_id = r.NodeId }, keyContext);
                var message = new Message<byte[], byte[]> { Key = key, Value = values.Serialize(r.ToAvro(), valueContext) };
                while (true)
                {
                    try { producer.Produce(Topics.SensorsReadings, message); break; }
                    catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull) { await Task.Delay(5, ct); }
                }
            }
        }
        catch (OperationCanceledException) { }
        producer.Flush(TimeSpan.FromSeconds(5));
    }
}
