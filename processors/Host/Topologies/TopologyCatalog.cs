using StreamHealth.Runtime.Configuration;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Streams.Reference;
using Microsoft.Extensions.Configuration;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Weight.Pipeline;

namespace StreamHealth.Host.Topologies;

/// <summary>The topologies `streamhealth run --topology NAME` can start, by name.</summary>
internal static class TopologyCatalog
{
    public static readonly IReadOnlyList<string> Names = ["weights", "cgm", "key-sum"];

    public static Topology Create(string name, Args args, IConfiguration configuration) => name switch
    {
        "weights" => WeightTopology.Create(WeightTopology.FilterOptions(configuration), timeRule: StreamHealthOptions.Bind(configuration).Input.TimeRule),
        "cgm" => CgmTopology.Create(CgmTopology.Options(configuration)),
        // Reference fold used by the crash/rebalance tests and the load harness.
        "key-sum" => KeySumTopology.Create(
            args.Get("--source") ?? throw new UsageException("--topology key-sum needs --source TOPIC"),
            args.Get("--app") ?? "key-sum-" + args.Get("--source")),
        _ => throw new UsageException($"unknown topology '{name}' (known: {string.Join(", ", Names)})"),
    };
}
