using StreamHealth.Tests.Cgm.Pipeline;
using StreamHealth.Tests.Weight;

namespace StreamHealth.ContainerTests;

// The main suite's pipeline scenarios, unchanged, on the containers: real Kafka (Streamiz creates the changelogs),
// TimescaleDB hypertables, Redis and Confluent's Schema Registry.

public sealed class WeightPipelineOnContainersFixture(ContainerStack stack) : WeightPipelineFixture(stack, ownsStack: false);

[Collection(ContainerCollection.Name)]
public sealed class WeightPipelineOnContainersTests(WeightPipelineOnContainersFixture f)
    : WeightPipelineScenarios(f), IClassFixture<WeightPipelineOnContainersFixture>;

public sealed class CgmPipelineOnContainersFixture(ContainerStack stack) : CgmPipelineFixture(stack, ownsStack: false);

[Collection(ContainerCollection.Name)]
public sealed class CgmPipelineOnContainersTests(CgmPipelineOnContainersFixture f)
    : CgmPipelineScenarios(f), IClassFixture<CgmPipelineOnContainersFixture>;
