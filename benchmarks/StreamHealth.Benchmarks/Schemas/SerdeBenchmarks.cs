using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using StreamHealth.Schemas;

namespace StreamHealth.Benchmarks.Schemas;

/// <summary>Cost of the Protobuf value serde every record pays twice (consume and produce).</summary>
[MemoryDiagnoser]
public class SerdeBenchmarks
{
    private readonly WeightMeasurement _measurement = new()
    {
        SchemaVersion = 1, EventTimeUnixMs = 1_732_000_000_000, MeasurementId = "3f2b7c1e-0d5a-4c55-9a57-0b8f1d2e6a10",
        UserId = "user-000123", Value = 81.4, Unit = WeightUnit.Kg, Source = WeightSource.ConnectedScale,
    };
    private readonly byte[] _buffer = new byte[256];
    private byte[] _encoded = [];

    [GlobalSetup]
    public void Setup() => _encoded = _measurement.ToByteArray();

    /// <summary>Into a reused buffer: no allocation per record.</summary>
    [Benchmark]
    public int SerializeIntoBuffer()
    {
        var size = _measurement.CalculateSize();
        _measurement.WriteTo(_buffer.AsSpan(0, size));
        return size;
    }

    [Benchmark]
    public WeightMeasurement Parse() => WeightMeasurement.Parser.ParseFrom(_encoded);
}
