using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Avro;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>The schema gate before a deploy (`streamhealth schemas check`): is each topic's key and value schema
/// compatible with the latest version registered under its subject?</summary>
/// <remarks>
/// Two judges, both must pass:
/// <list type="number">
/// <item>The registry, at the subject's own level (BACKWARD by default, `SchemaRegistry:Compatibility:&lt;subject&gt;`),
/// through its compatibility endpoint with <c>verbose=true</c> (the same answer registration would give; Confluent's
/// server and the embedded stand-in serve it alike).</item>
/// <item>The project's rules, which BACKWARD alone does not enforce and which this project needs:
/// <b>old readers keep reading</b>, because producers and consumers deploy independently (a gateway replica on the new
/// schema writes while a processor on the old one still reads; a data engineer's consumer may lag a release), so the
/// latest registered version must read records written with the new schema (Avro resolution, the FORWARD direction: a
/// field removed without a default, or a changed type, breaks it);
/// and <b>enum symbols are append-only</b>, because every enum has an <c>…_UNSPECIFIED</c> default, so by the Avro rules
/// a renamed or removed symbol is "compatible" at every level: records carrying it would be read as UNSPECIFIED, which is
/// silent loss of meaning.</item>
/// </list>
/// The registry keeps enforcing its level at produce time; this check is the stricter gate CI and the deploy step run.
/// </remarks>
public static class SchemaCheck
{
    /// <summary>One subject's verdict: new (nothing registered yet), compatible with <see cref="LatestVersion"/>, or the
    /// problems, each naming who objected and where in the schema.</summary>
    public sealed record Verdict(string Subject, int? LatestVersion, IReadOnlyList<string> Problems)
    {
        public bool Compatible => Problems.Count == 0;

        public override string ToString() => Problems.Count > 0
            ? $"{Subject}: INCOMPATIBLE with version {LatestVersion}:{string.Concat(Problems.Select(p => "\n  - " + p))}"
            : LatestVersion is null ? $"{Subject}: new subject (nothing registered yet)" : $"{Subject}: compatible with version {LatestVersion}";
    }

    /// <summary>Checks each (subject, schema text) against the registry at <paramref name="registry"/> (base URL).
    /// An unreachable registry or one that answers 5xx throws <see cref="HttpRequestException"/>.</summary>
    public static async Task<IReadOnlyList<Verdict>> CheckAsync(HttpClient registry, IEnumerable<(string Subject, string Schema)> subjects,
        CancellationToken ct = default)
    {
        var verdicts = new List<Verdict>();
        foreach (var (subject, text) in subjects)
        {
            var candidate = Schema.Parse(text);
            var latest = await LatestAsync(registry, subject, ct);
            if (latest is null)
            {
                verdicts.Add(new Verdict(subject, null, []));
                continue;
            }
            var problems = new List<string>();
            problems.AddRange((await RegistryProblemsAsync(registry, subject, text, ct)).Select(p => "registry: " + p));
            var registered = Schema.Parse(latest.Value.Schema);
            problems.AddRange(AvroCompatibility.ReadProblems(registered, candidate)
                .Select(p => $"project rule (old readers keep reading): version {latest.Value.Version} cannot read records written with this schema: {p}"));
            problems.AddRange(RemovedEnumSymbols(registered, candidate)
                .Select(p => $"project rule (enum symbols are append-only): {p}"));
            verdicts.Add(new Verdict(subject, latest.Value.Version, problems));
        }
        return verdicts;
    }

    /// <summary>The catalogue's schemas as a directory of <c>.avsc</c> files holds them (e.g. an edited copy of
    /// schemas/avro): each record is checked under the subjects of every topic whose key or value has its full name.
    /// A file that does not parse, or names a record no topic uses, is an <see cref="ArgumentException"/> naming it.</summary>
    public static IReadOnlyList<(string Subject, string Schema)> SubjectsFromDirectory(string directory)
    {
        if (!Directory.Exists(directory)) throw new ArgumentException($"{directory}: no such directory");
        var byName = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory, "*.avsc").Order(StringComparer.Ordinal))
        {
            Schema schema;
            try { schema = Schema.Parse(File.ReadAllText(file)); }
            catch (Exception e) when (e is AvroException or JsonException or Newtonsoft.Json.JsonException)   // Apache.Avro parses with Newtonsoft
            {
                throw new ArgumentException($"{file}: not an Avro schema ({e.Message})");
            }
            if (schema is not NamedSchema named) throw new ArgumentException($"{file}: not a named Avro type");
            if (!byName.TryAdd(named.Fullname, schema.ToString())) throw new ArgumentException($"{file}: {named.Fullname} is defined twice in {directory}");
        }
        var subjects = new List<(string, string)>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var topic in AvroSchemas.All)
        {
            if (byName.TryGetValue(topic.Key.Fullname, out var key))
            {
                subjects.Add((SchemaRegistration.KeySubject(topic.Topic), key));
                used.Add(topic.Key.Fullname);
            }
            if (byName.TryGetValue(topic.Value.Fullname, out var value))
            {
                subjects.Add((SchemaRegistration.ValueSubject(topic.Topic), value));
                used.Add(topic.Value.Fullname);
            }
        }
        if (byName.Keys.FirstOrDefault(n => !used.Contains(n)) is { } unknown)
            throw new ArgumentException($"{directory}: {unknown} is the key or value of no StreamHealth topic (see AvroSchemas)");
        return subjects;
    }

    private static async Task<(int Version, string Schema)?> LatestAsync(HttpClient registry, string subject, CancellationToken ct)
    {
        using var response = await registry.GetAsync($"subjects/{Uri.EscapeDataString(subject)}/versions/latest", ct);
        if (response.StatusCode == HttpStatusCode.NotFound) return null;   // 40401: no such subject yet
        var body = await ReadAsync(response, subject, ct);
        return (body["version"]!.GetValue<int>(), body["schema"]!.GetValue<string>());
    }

    private static async Task<IReadOnlyList<string>> RegistryProblemsAsync(HttpClient registry, string subject, string schema, CancellationToken ct)
    {
        using var response = await registry.PostAsJsonAsync($"compatibility/subjects/{Uri.EscapeDataString(subject)}/versions/latest?verbose=true",
            new { schema }, ct);
        var body = await ReadAsync(response, subject, ct);
        if (body["is_compatible"]?.GetValue<bool>() != false) return [];
        var messages = body["messages"] as JsonArray;
        return messages is { Count: > 0 } ? messages.Select(m => m!.ToString()).ToList() : ["refused (the registry gave no reason)"];
    }

    private static async Task<JsonNode> ReadAsync(HttpResponseMessage response, string subject, CancellationToken ct)
    {
        var text = await response.Content.ReadAsStringAsync(ct);
        if ((int)response.StatusCode >= 500)
            throw new HttpRequestException($"the schema registry answered {(int)response.StatusCode} for {subject}: {text}", null, response.StatusCode);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"the schema registry refused the request for {subject}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text) ?? throw new InvalidOperationException($"the schema registry answered an empty body for {subject}");
    }

    /// <summary>Every enum symbol the registered schema has and the candidate lacks, for enums of the same full name
    /// anywhere in the two schemas.</summary>
    public static IReadOnlyList<string> RemovedEnumSymbols(Schema registered, Schema candidate)
    {
        var before = Enums(registered);
        var after = Enums(candidate);
        var problems = new List<string>();
        foreach (var (name, symbols) in before)
        {
            if (!after.TryGetValue(name, out var now)) continue;   // the enum itself went: the resolution check names the field
            var removed = symbols.Where(s => !now.Contains(s)).ToList();
            if (removed.Count > 0)
                problems.Add($"enum {name} lost symbol(s) {string.Join(", ", removed)}: records carrying them would be read as its default {now.FirstOrDefault(s => s.EndsWith("_UNSPECIFIED", StringComparison.Ordinal)) ?? "(none)"}");
        }
        return problems;
    }

    private static Dictionary<string, IReadOnlyList<string>> Enums(Schema schema)
    {
        var found = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Walk(Schema s)
        {
            switch (s)
            {
                case EnumSchema e: found.TryAdd(e.Fullname, e.Symbols.ToList()); break;
                case RecordSchema r:
                    if (!seen.Add(r.Fullname)) return;
                    foreach (var f in r.Fields) Walk(f.Schema);
                    break;
                case UnionSchema u: foreach (var b in u.Schemas) Walk(b); break;
                case ArraySchema a: Walk(a.ItemSchema); break;
                case MapSchema m: Walk(m.ValueSchema); break;
                case LogicalSchema l: Walk(l.BaseSchema); break;
            }
        }
        Walk(schema);
        return found;
    }
}
