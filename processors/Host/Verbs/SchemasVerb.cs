using StreamHealth.Schemas;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth schemas check|write-baseline`: the Schema Registry-style compatibility gate.</summary>
internal static class SchemasVerb
{
    public static int Run(string[] argv)
    {
        switch (argv.FirstOrDefault())
        {
            case "check":
                var problems = SchemaCompatibility.CheckAgainstBaseline();
                foreach (var p in problems) Console.Error.WriteLine(p);
                Console.WriteLine(problems.Count == 0 ? "schemas are backward compatible with the baseline" : $"{problems.Count} incompatible change(s)");
                return problems.Count == 0 ? 0 : 1;
            case "write-baseline":
                var path = argv.Length > 1 ? argv[1] : Path.Combine("schemas", "baseline", SchemaCompatibility.BaselineFileName);
                var refused = SchemaCompatibility.CheckAgainstBaseline();
                if (refused.Count > 0)
                    throw new UsageException($"refusing to move the baseline over {refused.Count} incompatible change(s); run `streamhealth schemas check`");
                File.WriteAllText(path, SchemaCompatibility.CurrentAsJson());
                Console.WriteLine($"wrote {path}");
                return 0;
            default:
                throw new UsageException("schemas needs 'check' or 'write-baseline'");
        }
    }
}
