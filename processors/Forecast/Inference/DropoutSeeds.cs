using Google.Protobuf;
using StreamHealth.Forecast.Inference.Onnx;

namespace StreamHealth.Forecast.Inference;

/// <summary>Makes Monte Carlo dropout reproducible from one configured seed.
/// ONNX Runtime gives each Dropout kernel its own random generator, seeded once from the node's <c>seed</c>
/// attribute when the session is created; every Run then draws the next masks from that generator. So a
/// session's mask sequence is a pure function of the seeds: two fresh sessions with the same seeds, given the
/// same calls (same rows in the same order), produce the same samples. Rewriting every Dropout node's seed from
/// the configured seed before the model is loaded turns "the exporter's seeds" into "the operator's seed"
/// without touching the model file. What it does not give: a request's samples depend on its place in the
/// call sequence (its batch and the batches before it), not on the request alone.</summary>
internal static class DropoutSeeds
{
    private const int AttributeTypeInt = 2;   // onnx.AttributeProto.AttributeType.INT

    /// <summary>The model with the k-th Dropout node (graph order) seeded <see cref="NodeSeed"/>(seed, k).</summary>
    /// <exception cref="InvalidProtocolBufferException">The bytes are not an ONNX model.</exception>
    public static byte[] Rewrite(byte[] model, long seed, out int dropoutNodes)
    {
        var parsed = ModelProto.Parser.ParseFrom(model);
        dropoutNodes = 0;
        if (parsed.Graph is null) return model;
        foreach (var node in parsed.Graph.Node)
        {
            if (node.OpType != "Dropout") continue;
            var value = NodeSeed(seed, dropoutNodes++);
            AttributeProto? attribute = null;
            foreach (var a in node.Attribute)
                if (a.Name == "seed") attribute = a;
            if (attribute is null) node.Attribute.Add(attribute = new AttributeProto { Name = "seed" });
            attribute.Type = AttributeTypeInt;
            attribute.I = value;
        }
        return dropoutNodes == 0 ? model : parsed.ToByteArray();
    }

    /// <summary>Counts the Dropout nodes of the top-level graph.</summary>
    public static int Count(byte[] model)
    {
        var parsed = ModelProto.Parser.ParseFrom(model);
        var n = 0;
        if (parsed.Graph is not null)
            foreach (var node in parsed.Graph.Node)
                if (node.OpType == "Dropout") n++;
        return n;
    }

    /// <summary>SplitMix64 of (seed, node index): distinct, well-mixed, non-negative seeds per node, so two Dropout
    /// nodes never share a mask stream and seeds 1 and 2 give unrelated streams.</summary>
    public static long NodeSeed(long seed, int nodeIndex)
    {
        var z = unchecked((ulong)seed + 0x9E3779B97F4A7C15UL * (ulong)(nodeIndex + 1));
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return (long)(z & long.MaxValue);
    }
}
