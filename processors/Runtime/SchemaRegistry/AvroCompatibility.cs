using System.Text.Json;
using Avro;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>Avro schema compatibility, as the registry decides whether a new version may join a subject: the Avro
/// specification's schema-resolution rules (can a reader schema read data written with a writer schema), applied in the
/// directions and against the versions a <see cref="CompatibilityLevel"/> names. Answers problems, each naming the path
/// in the schema (<c>/fields/unit/symbols</c>) and what is wrong; none means compatible.</summary>
public static class AvroCompatibility
{
    /// <summary>What stops <paramref name="reader"/> from reading data written with <paramref name="writer"/>; empty when
    /// it can.</summary>
    public static IReadOnlyList<string> ReadProblems(Schema reader, Schema writer)
    {
        var problems = new List<string>();
        new Resolver().Check(reader, writer, "", problems);
        return problems;
    }

    public static bool CanRead(Schema reader, Schema writer) => ReadProblems(reader, writer).Count == 0;

    /// <summary>Checks <paramref name="candidate"/> against a subject's earlier versions (<paramref name="earlier"/>, oldest
    /// first) under <paramref name="level"/>: the latest only, or all of them when transitive. Each problem names the
    /// level, the version and the direction that failed.</summary>
    public static IReadOnlyList<string> Check(CompatibilityLevel level, Schema candidate, IReadOnlyList<(int Version, Schema Schema)> earlier)
    {
        var problems = new List<string>();
        if (level == CompatibilityLevel.None || earlier.Count == 0) return problems;
        var against = level.IsTransitive() ? earlier : [earlier[^1]];
        foreach (var (version, old) in against)
        {
            if (level.ChecksBackward())
                foreach (var p in ReadProblems(candidate, old))
                    problems.Add($"{level.ToWire()}: the new schema cannot read data written with version {version}: {p}");
            if (level.ChecksForward())
                foreach (var p in ReadProblems(old, candidate))
                    problems.Add($"{level.ToWire()}: version {version} cannot read data written with the new schema: {p}");
        }
        return problems;
    }

    /// <summary>A schema's type for messages: <c>int</c>, <c>record a.b.Weight</c>, <c>union [null, string]</c>.</summary>
    public static string Describe(Schema schema) => schema switch
    {
        LogicalSchema logical => $"{Describe(logical.BaseSchema)} ({logical.LogicalTypeName})",
        UnionSchema union => $"union [{string.Join(", ", union.Schemas.Select(Describe))}]",
        ArraySchema array => $"array of {Describe(array.ItemSchema)}",
        MapSchema map => $"map of {Describe(map.ValueSchema)}",
        RecordSchema record => $"record {record.Fullname}",
        EnumSchema e => $"enum {e.Fullname}",
        FixedSchema f => $"fixed {f.Fullname} ({f.Size} bytes)",
        _ => Schema.GetTypeString(schema.Tag),
    };

    /// <summary>One resolution walk; remembers the record pairs being compared so that recursive types end.</summary>
    private sealed class Resolver
    {
        private readonly HashSet<(string Reader, string Writer)> _recordsInProgress = [];

        public void Check(Schema reader, Schema writer, string path, List<string> problems)
        {
            // Logical types resolve as their underlying types (a timestamp-millis long reads a long).
            reader = Unwrap(reader);
            writer = Unwrap(writer);

            if (writer is UnionSchema writerUnion)
            {
                // Any branch may have been written: each must be readable.
                for (var i = 0; i < writerUnion.Count; i++)
                    Check(reader, writerUnion[i], $"{path}/{i}", problems);
                return;
            }
            if (reader is UnionSchema readerUnion)
            {
                CheckAgainstUnion(readerUnion, writer, path, problems);
                return;
            }
            if (!SameKind(reader, writer))
            {
                problems.Add($"{At(path)}: reader type {Describe(reader)} cannot read writer type {Describe(writer)}");
                return;
            }
            switch (reader)
            {
                case RecordSchema r: CheckRecord(r, (RecordSchema)writer, path, problems); break;
                case EnumSchema e: CheckEnum(e, (EnumSchema)writer, path, problems); break;
                case FixedSchema f: CheckFixed(f, (FixedSchema)writer, path, problems); break;
                case ArraySchema a: Check(a.ItemSchema, ((ArraySchema)writer).ItemSchema, path + "/items", problems); break;
                case MapSchema m: Check(m.ValueSchema, ((MapSchema)writer).ValueSchema, path + "/values", problems); break;
            }
        }

        /// <summary>A value of a non-union writer type is read by the first reader branch that can read it.</summary>
        private void CheckAgainstUnion(UnionSchema reader, Schema writer, string path, List<string> problems)
        {
            List<string>? closest = null;
            foreach (var branch in reader.Schemas.Select(Unwrap))
            {
                var attempt = new List<string>();
                Check(branch, writer, path, attempt);
                if (attempt.Count == 0) return;
                // A branch of the same type and name that fails deeper explains the failure better than "no branch".
                if (closest is null && branch.Tag == writer.Tag && SameKind(branch, writer)) closest = attempt;
            }
            if (closest is not null) problems.AddRange(closest);
            else problems.Add($"{At(path)}: writer type {Describe(writer)} matches no branch of the reader's {Describe(reader)}");
        }

        private void CheckRecord(RecordSchema reader, RecordSchema writer, string path, List<string> problems)
        {
            if (!_recordsInProgress.Add((reader.Fullname, writer.Fullname))) return;   // recursive type: already being checked
            try
            {
                foreach (var field in reader.Fields)
                {
                    var fieldPath = $"{path}/fields/{field.Name}";
                    var written = FindWriterField(field, writer);
                    if (written is not null) Check(field.Schema, written.Schema, fieldPath, problems);
                    else if (field.DefaultValue is null)
                        problems.Add($"{At(fieldPath)}: reader field '{field.Name}' ({Describe(field.Schema)}) is missing from the writer's {Describe(writer)} and has no default");
                    // Writer fields the reader lacks are skipped when reading.
                }
            }
            finally
            {
                _recordsInProgress.Remove((reader.Fullname, writer.Fullname));
            }
        }

        private static Field? FindWriterField(Field readerField, RecordSchema writer)
        {
            if (writer.TryGetField(readerField.Name, out var byName)) return byName;
            if (readerField.Aliases is null) return null;
            foreach (var alias in readerField.Aliases)
                if (writer.TryGetField(alias, out var byAlias)) return byAlias;
            return null;
        }

        private static void CheckEnum(EnumSchema reader, EnumSchema writer, string path, List<string> problems)
        {
            if (reader.Default is not null) return;   // a symbol the reader lacks reads as the reader's default
            var missing = writer.Symbols.Where(s => !reader.Contains(s)).ToList();
            if (missing.Count > 0)
                problems.Add($"{At(path + "/symbols")}: writer symbols {string.Join(", ", missing)} of {Describe(writer)} are missing from the reader's symbols and the reader has no default");
        }

        private static void CheckFixed(FixedSchema reader, FixedSchema writer, string path, List<string> problems)
        {
            if (reader.Size != writer.Size)
                problems.Add($"{At(path + "/size")}: reader {Describe(reader)} cannot read writer {Describe(writer)}: sizes differ");
        }

        private static Schema Unwrap(Schema schema) => schema is LogicalSchema logical ? logical.BaseSchema : schema;

        /// <summary>Whether a reader type can read a writer type at this level: the same type, an Avro promotion
        /// (int to long, float or double; long to float or double; float to double; string and bytes either way), or
        /// named types of the same full name (or the reader lists the writer's full name in its aliases).</summary>
        private static bool SameKind(Schema reader, Schema writer)
        {
            var r = reader.Tag == Schema.Type.Error ? Schema.Type.Record : reader.Tag;
            var w = writer.Tag == Schema.Type.Error ? Schema.Type.Record : writer.Tag;
            if (r != w) return Promotes(w, r);
            return reader is not NamedSchema named || NamesMatch(named, (NamedSchema)writer);
        }

        private static bool Promotes(Schema.Type writer, Schema.Type reader) => (writer, reader) is
            (Schema.Type.Int, Schema.Type.Long) or (Schema.Type.Int, Schema.Type.Float) or (Schema.Type.Int, Schema.Type.Double) or
            (Schema.Type.Long, Schema.Type.Float) or (Schema.Type.Long, Schema.Type.Double) or
            (Schema.Type.Float, Schema.Type.Double) or
            (Schema.Type.String, Schema.Type.Bytes) or (Schema.Type.Bytes, Schema.Type.String);

        private static bool NamesMatch(NamedSchema reader, NamedSchema writer) =>
            reader.Fullname == writer.Fullname || Aliases(reader).Contains(writer.Fullname);

        // Apache.Avro keeps a named type's aliases private; its JSON form lists them, qualified with the namespace.
        private static List<string> Aliases(NamedSchema schema)
        {
            using var json = JsonDocument.Parse(schema.ToString());
            if (!json.RootElement.TryGetProperty("aliases", out var aliases) || aliases.ValueKind != JsonValueKind.Array) return [];
            return aliases.EnumerateArray()
                .Select(a => a.GetString()!)
                .Select(a => a.Contains('.') || string.IsNullOrEmpty(schema.Namespace) ? a : schema.Namespace + "." + a)
                .ToList();
        }

        private static string At(string path) => path.Length == 0 ? "/" : path;
    }
}
