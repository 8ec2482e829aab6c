using StreamHealth.Runtime.SchemaRegistry;
using static StreamHealth.Tests.SchemaRegistry.Avsc;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>AvroCompatibility against the Avro specification's schema-resolution rules, one reader/writer pair a row.</summary>
public sealed class AvroCompatibilityTests
{
    private const string Ab = """{"type":"enum","name":"E","symbols":["A","B"]}""";
    private const string Abc = """{"type":"enum","name":"E","symbols":["A","B","C"]}""";
    private const string AbWithDefault = """{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}""";
    private const string Node = """{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}""";
    private const string NodeOfLongs = """{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"],"default":null}]}""";
    private const string NodeOfStrings = """{"type":"record","name":"Node","fields":[{"name":"v","type":"string"},{"name":"next","type":["null","Node"],"default":null}]}""";

    /// <summary>Case, reader, writer, whether the reader can read the writer's data, a fragment the first problem holds.</summary>
    public static TheoryData<string, string, string, bool, string> Pairs => new()
    {
        { "identical records", WeightV1, WeightV1, true, "" },
        { "reader adds a field with a default", WeightV2, WeightV1, true, "" },
        { "reader adds a field without a default", Record("Weight", Field("user_id", AvroString), Field("kg", AvroDouble), Field("at_ms", AvroLong), Field("source", AvroString)), WeightV1, false, "/fields/source: reader field 'source'" },
        { "writer has a field the reader lacks", WeightV1, WeightV2, true, "" },
        { "int promotes to long", AvroLong, AvroInt, true, "" },
        { "int promotes to float", "\"float\"", AvroInt, true, "" },
        { "int promotes to double", AvroDouble, AvroInt, true, "" },
        { "long promotes to float", "\"float\"", AvroLong, true, "" },
        { "long promotes to double", AvroDouble, AvroLong, true, "" },
        { "float promotes to double", AvroDouble, "\"float\"", true, "" },
        { "long does not narrow to int", AvroInt, AvroLong, false, "/: reader type int cannot read writer type long" },
        { "double does not narrow to float", "\"float\"", AvroDouble, false, "reader type float cannot read writer type double" },
        { "string reads bytes", AvroString, "\"bytes\"", true, "" },
        { "bytes reads string", "\"bytes\"", AvroString, true, "" },
        { "boolean does not read int", "\"boolean\"", AvroInt, false, "reader type boolean" },
        { "changed field type", Record("W", Field("kg", AvroString)), Record("W", Field("kg", AvroDouble)), false, "/fields/kg: reader type string cannot read writer type double" },
        { "enum: writer symbol missing in reader", Ab, Abc, false, "/symbols: writer symbols C" },
        { "enum: writer symbol missing, reader has a default", AbWithDefault, Abc, true, "" },
        { "enum: reader has more symbols", Abc, Ab, true, "" },
        { "enum: different names", """{"type":"enum","name":"F","symbols":["A","B"]}""", Ab, false, "enum F cannot read writer type enum E" },
        { "union writer, non-union reader", AvroString, """["null","string"]""", false, "/0: reader type string cannot read writer type null" },
        { "non-union writer, union reader", """["null","string"]""", AvroString, true, "" },
        { "union writer, union reader with promotion", """["null","long"]""", """["null","int"]""", true, "" },
        { "union writer branch the reader lacks", """["null","string"]""", """["null","string","int"]""", false, "/2: writer type int matches no branch" },
        { "union branch of a record that fails deeper", """["null",{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}]""", """{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}""", false, "/fields/a: reader type int cannot read writer type string" },
        { "array items promote", """{"type":"array","items":"long"}""", """{"type":"array","items":"int"}""", true, "" },
        { "array items differ", """{"type":"array","items":"int"}""", """{"type":"array","items":"string"}""", false, "/items: reader type int" },
        { "map values promote", """{"type":"map","values":"double"}""", """{"type":"map","values":"float"}""", true, "" },
        { "map values narrow", """{"type":"map","values":"int"}""", """{"type":"map","values":"long"}""", false, "/values: reader type int" },
        { "array does not read map", """{"type":"array","items":"int"}""", """{"type":"map","values":"int"}""", false, "reader type array of int cannot read writer type map of int" },
        { "fixed of the same name and size", """{"type":"fixed","name":"H","size":16}""", """{"type":"fixed","name":"H","size":16}""", true, "" },
        { "fixed of another size", """{"type":"fixed","name":"H","size":16}""", """{"type":"fixed","name":"H","size":32}""", false, "/size: reader fixed H (16 bytes)" },
        { "fixed of another name", """{"type":"fixed","name":"H","size":16}""", """{"type":"fixed","name":"G","size":16}""", false, "fixed H (16 bytes) cannot read writer type fixed G" },
        { "records of different full names", """{"type":"record","name":"R","namespace":"a","fields":[]}""", """{"type":"record","name":"R","namespace":"b","fields":[]}""", false, "record a.R cannot read writer type record b.R" },
        { "reader record aliases the writer's name", """{"type":"record","name":"R","namespace":"a","aliases":["b.R"],"fields":[]}""", """{"type":"record","name":"R","namespace":"b","fields":[]}""", true, "" },
        { "reader field aliases the writer's field", Record("W", """{"name":"weight_kg","type":"double","aliases":["kg"]}"""), Record("W", Field("kg", AvroDouble)), true, "" },
        { "nested record field changes type", Record("Outer", Field("inner", Record("Inner", Field("x", AvroInt)))), Record("Outer", Field("inner", Record("Inner", Field("x", AvroString)))), false, "/fields/inner/fields/x: reader type int" },
        { "recursive record, compatible", NodeOfLongs, Node, true, "" },
        { "recursive record, incompatible", NodeOfStrings, Node, false, "/fields/v: reader type string" },
        { "logical type over its base type", """{"type":"long","logicalType":"timestamp-millis"}""", AvroLong, true, "" },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void A_reader_reads_a_writer_per_the_resolution_rules(string change, string reader, string writer, bool canRead, string fragment)
    {
        var problems = AvroCompatibility.ReadProblems(Avro.Schema.Parse(reader), Avro.Schema.Parse(writer));
        Assert.True(canRead == (problems.Count == 0), $"{change}: {string.Join(" | ", problems)}");
        if (!canRead) Assert.Contains(fragment, problems[0]);
    }

    // v3 reads v2 but not v1 (a: int in v1, string in v3); v2 reads v3 but v1 does not (v1's a has no default).
    private static readonly (int, Avro.Schema)[] History =
    [
        (1, Avro.Schema.Parse(Record("T", Field("a", AvroInt)))),
        (2, Avro.Schema.Parse(Record("T", Field("b", AvroLong, "0")))),
    ];
    private static readonly Avro.Schema Candidate = Avro.Schema.Parse(Record("T", Field("a", AvroString, "\"x\""), Field("b", AvroLong, "0")));

    [Theory]
    [InlineData(CompatibilityLevel.None, true, "")]
    [InlineData(CompatibilityLevel.Backward, true, "")]
    [InlineData(CompatibilityLevel.BackwardTransitive, false, "BACKWARD_TRANSITIVE: the new schema cannot read data written with version 1: /fields/a")]
    [InlineData(CompatibilityLevel.Forward, true, "")]
    [InlineData(CompatibilityLevel.ForwardTransitive, false, "FORWARD_TRANSITIVE: version 1 cannot read data written with the new schema: /fields/a")]
    [InlineData(CompatibilityLevel.Full, true, "")]
    [InlineData(CompatibilityLevel.FullTransitive, false, "FULL_TRANSITIVE: the new schema cannot read data written with version 1")]
    public void Levels_check_the_latest_or_every_version_in_their_directions(CompatibilityLevel level, bool compatible, string fragment)
    {
        var problems = AvroCompatibility.Check(level, Candidate, History);
        Assert.True(compatible == (problems.Count == 0), string.Join(" | ", problems));
        if (!compatible) Assert.Contains(fragment, problems[0]);
    }

    [Theory]
    [InlineData("BACKWARD", CompatibilityLevel.Backward)]
    [InlineData("full_transitive", CompatibilityLevel.FullTransitive)]
    [InlineData("NONE", CompatibilityLevel.None)]
    public void Level_names_parse_case_insensitively_and_print_as_Confluent_spells_them(string text, CompatibilityLevel level)
    {
        Assert.True(CompatibilityLevels.TryParse(text, out var parsed));
        Assert.Equal(level, parsed);
        Assert.Equal(text.ToUpperInvariant(), parsed.ToWire());
    }

    [Fact]
    public void HealthMetrics_utc_offset_minutes_is_a_compatible_evolution_both_ways()
    {
        var current = StreamHealth.Schemas.AvroSchemas.For(StreamHealth.Schemas.Topics.InsightsMetrics).Value;
        var node = System.Text.Json.Nodes.JsonNode.Parse(current.ToString())!;
        var fields = node["fields"]!.AsArray();
        var offset = fields.Single(f => f!["name"]!.GetValue<string>() == "utc_offset_minutes")!;
        Assert.Equal(0, offset["default"]!.GetValue<int>());
        fields.Remove(offset);
        var before = global::Avro.Schema.Parse(node.ToJsonString());
        // New readers read old records (the offset defaults to UTC); old readers skip the new field.
        Assert.Empty(AvroCompatibility.ReadProblems(current, before));
        Assert.Empty(AvroCompatibility.ReadProblems(before, current));
    }

    [Fact]
    public void An_unknown_level_name_does_not_parse()
    {
        Assert.False(CompatibilityLevels.TryParse("SIDEWAYS", out _));
        Assert.False(CompatibilityLevels.TryParse(null, out _));
    }

    [Fact]
    public void Canonical_text_ignores_whitespace_and_keeps_defaults()
    {
        var compact = AvroSchemaText.Parse(WeightV2);
        var spaced = AvroSchemaText.Parse(WeightV2.Replace(",", ",\n   ").Replace(":", " : "));
        Assert.Equal(compact.Canonical, spaced.Canonical);
        Assert.Contains("\"default\":\"scale\"", compact.Canonical);
    }

    [Theory]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"n","type":"int","default":"seven"}]}""", "/fields/n: default \"seven\"")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"n","type":"int","default":3000000000}]}""", "/fields/n: default 3000000000")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]},"default":"B"}]}""", "/fields/e: default \"B\"")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"],"default":"x"}]}""", "/fields/u")]
    [InlineData("""{"type":"record","name":"R"}""", "Invalid schema")]
    [InlineData("""{"type": "record", """, "Invalid schema")]
    [InlineData("""  """, "empty")]
    public void Invalid_schemas_are_refused_with_42201(string text, string fragment)
    {
        var e = Assert.Throws<SchemaRegistryError>(() => AvroSchemaText.Parse(text));
        Assert.Equal((422, 42201), (e.HttpStatus, e.ErrorCode));
        Assert.Contains(fragment, e.Message);
    }

    [Theory]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"],"default":null}]}""")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"],"default":5}]}""")]   // Avro 1.12: any branch
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"d","type":"double","default":1}]}""")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"long"},"default":[1,2]}]}""")]
    [InlineData("""{"type":"record","name":"R","fields":[{"name":"r","type":{"type":"record","name":"S","fields":[{"name":"x","type":"int","default":1}]},"default":{}}]}""")]
    public void Valid_defaults_are_accepted(string text) => Assert.NotEmpty(AvroSchemaText.Parse(text).Canonical);
}
