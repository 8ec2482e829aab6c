namespace StreamHealth.Tests.Infrastructure;

/// <summary>Tests that run alone, after the parallel ones (xunit runs a collection that disables parallelisation last, by
/// itself): the first command's whole stack (every pipeline and sample producer in one `up` host), and the tests that read a
/// gateway's own OpenTelemetry series. A gateway's MeterProvider listens to its meters by name, so in a test process it also
/// subscribes to the same-named meters of every other gateway alive there; when the one it registered first is disposed (its
/// test ended), the series goes with it. One gateway per process, as deployed, has no such neighbour.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SoloCollection
{
    public const string Name = "solo";
}
