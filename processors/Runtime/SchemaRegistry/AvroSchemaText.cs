using System.Numerics;
using Avro;
using Newtonsoft.Json.Linq;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>The registry's view of a schema's text: parsed with Apache.Avro, refused (42201) when it does not parse or a
/// field's default does not fit its type, and stored in one canonical form so two texts that differ only in whitespace
/// or key order get the same id.</summary>
public sealed class AvroSchemaText
{
    /// <summary>The parsed schema.</summary>
    public Schema Schema { get; }

    /// <summary>Apache.Avro's compact JSON of the parsed schema (<c>Schema.ToString()</c>): what the registry stores and
    /// answers, and what Confluent's .NET Avro serializer itself registers. Keeps docs, defaults, aliases, logical types
    /// and custom properties; Apache.Avro 1.12 leaves out a field's sort <c>order</c>.</summary>
    public string Canonical { get; }

    private AvroSchemaText(Schema schema, string canonical)
    {
        Schema = schema;
        Canonical = canonical;
    }

    /// <summary>Parses <paramref name="text"/>; throws <see cref="SchemaRegistryError"/> 42201 saying why it is not a valid
    /// Avro schema.</summary>
    public static AvroSchemaText Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) throw SchemaRegistryError.InvalidSchema("Invalid schema: the schema is empty");
        Schema schema;
        try
        {
            schema = Schema.Parse(text);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Apache.Avro throws its own exceptions for bad schemas and Newtonsoft's for bad JSON.
            throw SchemaRegistryError.InvalidSchema($"Invalid schema: {e.Message.ReplaceLineEndings(" ")}");
        }
        var problems = new List<string>();
        CheckDefaults(schema, "", new HashSet<string>(StringComparer.Ordinal), problems);
        if (problems.Count > 0) throw SchemaRegistryError.InvalidSchema("Invalid schema: " + string.Join("; ", problems));
        return new AvroSchemaText(schema, schema.ToString());
    }

    // Apache.Avro parses a default without checking it against the field's type; Confluent refuses such schemas.
    private static void CheckDefaults(Schema schema, string path, HashSet<string> recordsSeen, List<string> problems)
    {
        switch (schema)
        {
            case RecordSchema record:
                if (!recordsSeen.Add(record.Fullname)) return;
                foreach (var field in record.Fields)
                {
                    var fieldPath = $"{path}/fields/{field.Name}";
                    if (field.DefaultValue is not null && !DefaultFits(field.Schema, field.DefaultValue))
                        problems.Add($"{fieldPath}: default {field.DefaultValue.ToString(Newtonsoft.Json.Formatting.None)} is not a valid {AvroCompatibility.Describe(field.Schema)}");
                    CheckDefaults(field.Schema, fieldPath, recordsSeen, problems);
                }
                break;
            case ArraySchema array:
                CheckDefaults(array.ItemSchema, path + "/items", recordsSeen, problems);
                break;
            case MapSchema map:
                CheckDefaults(map.ValueSchema, path + "/values", recordsSeen, problems);
                break;
            case UnionSchema union:
                for (var i = 0; i < union.Count; i++) CheckDefaults(union[i], $"{path}/{i}", recordsSeen, problems);
                break;
            case LogicalSchema logical:
                CheckDefaults(logical.BaseSchema, path, recordsSeen, problems);
                break;
        }
    }

    /// <summary>Whether a JSON default is a value of the schema, per the Avro specification's table of default values. A
    /// union's default may be a value of any of its branches (Avro 1.12, AVRO-3649; earlier: the first branch only).</summary>
    public static bool DefaultFits(Schema schema, JToken value) => schema switch
    {
        LogicalSchema logical => DefaultFits(logical.BaseSchema, value),
        UnionSchema union => union.Schemas.Any(branch => DefaultFits(branch, value)),
        EnumSchema e => value.Type == JTokenType.String && e.Contains((string)value!),
        FixedSchema => value.Type == JTokenType.String,
        RecordSchema record => value is JObject obj && record.Fields.All(f =>
            obj.TryGetValue(f.Name, out var v) ? DefaultFits(f.Schema, v) : f.DefaultValue is not null),
        ArraySchema array => value is JArray items && items.All(item => DefaultFits(array.ItemSchema, item)),
        MapSchema map => value is JObject entries && entries.Properties().All(p => DefaultFits(map.ValueSchema, p.Value)),
        _ => schema.Tag switch
        {
            Schema.Type.Null => value.Type == JTokenType.Null,
            Schema.Type.Boolean => value.Type == JTokenType.Boolean,
            Schema.Type.Int => value.Type == JTokenType.Integer && ToBigInteger(value) is var i && i >= int.MinValue && i <= int.MaxValue,
            Schema.Type.Long => value.Type == JTokenType.Integer && ToBigInteger(value) is var l && l >= long.MinValue && l <= long.MaxValue,
            Schema.Type.Float or Schema.Type.Double => value.Type is JTokenType.Integer or JTokenType.Float,
            Schema.Type.String or Schema.Type.Bytes => value.Type == JTokenType.String,
            _ => false,
        },
    };

    private static BigInteger ToBigInteger(JToken value) => ((JValue)value).Value switch
    {
        BigInteger big => big,
        var other => new BigInteger(Convert.ToDecimal(other, System.Globalization.CultureInfo.InvariantCulture)),
    };
}
