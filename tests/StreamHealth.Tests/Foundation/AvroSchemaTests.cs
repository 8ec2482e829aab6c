using System.Collections;
using Avro;
using Avro.IO;
using Avro.Specific;
using Google.Protobuf.Reflection;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

/// <summary>The Avro schemas (schemas/avro), the classes generated from them at build time and the
/// <see cref="AvroSchemas"/> catalogue, checked against the Protobuf messages they replace.</summary>
public sealed class AvroSchemaTests
{
    private const string TimestampMillis = "timestamp-millis";
    private const string GeneratedNamespace = "StreamHealth.Schemas.Avro";

    private static readonly IReadOnlyList<TopicSpec> SchemaTopics = [.. Topics.All.Where(t => !t.IsDeadLetter)];

    [Fact]
    public void Every_topic_but_the_dead_letter_ones_has_an_avro_key_and_value()
    {
        Assert.Equal(SchemaTopics.Select(t => t.Name), AvroSchemas.All.Select(s => s.Topic));
        Assert.All(SchemaTopics, t =>
        {
            var avro = AvroSchemas.For(t.Name);
            Assert.Same(avro, t.Avro);
            // What a serializer registers: the generated class's own schema.
            Assert.Same(avro.KeyType.GetField("_SCHEMA")!.GetValue(null), avro.Key);
            Assert.Same(avro.ValueType.GetField("_SCHEMA")!.GetValue(null), avro.Value);
            Assert.StartsWith(GeneratedNamespace + ".", avro.Key.Fullname, StringComparison.Ordinal);
            Assert.StartsWith(GeneratedNamespace + ".", avro.Value.Fullname, StringComparison.Ordinal);
        });

        var deadLetter = Topics.DeadLetterOf(Topics.WeightsRaw);
        Assert.False(AvroSchemas.TryFor(deadLetter, out _));
        Assert.Contains("dead-letter", Assert.Throws<ArgumentException>(() => AvroSchemas.For(deadLetter)).Message);
        Assert.Throws<UnknownTopicException>(() => AvroSchemas.For("no.such.topic"));
    }

    [Fact]
    public void Every_schema_file_is_one_topic_record_and_every_generated_class_belongs_to_a_topic()
    {
        var topicRecords = SchemaTopics.SelectMany(t => new[] { t.Avro!.Key.Name, t.Avro.Value.Name }).ToHashSet();
        var files = Directory.GetFiles(Path.Combine(Repo.Root, "schemas", "avro"), "*.avsc").Select(Path.GetFileNameWithoutExtension);
        Assert.Equal(topicRecords.Order(StringComparer.Ordinal), files.Order(StringComparer.Ordinal));

        var reachable = AllNamedTypes().Select(n => n.Fullname).ToHashSet();
        Assert.All(GeneratedTypes(), t => Assert.Contains(t.FullName!, reachable));
        Assert.Equal(reachable.Order(StringComparer.Ordinal), GeneratedTypes().Select(t => t.FullName!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_record_enum_and_field_is_documented()
    {
        var missing = new List<string>();
        foreach (var named in AllNamedTypes())
        {
            if (string.IsNullOrWhiteSpace(named.Documentation)) missing.Add(named.Fullname);
            if (named is RecordSchema record)
                missing.AddRange(record.Fields.Where(f => string.IsNullOrWhiteSpace(f.Documentation)).Select(f => $"{record.Fullname}.{f.Name}"));
        }
        Assert.Empty(missing);
    }

    [Fact]
    public void Every_unix_ms_time_is_a_long_timestamp_millis()
    {
        var times = AllNamedTypes().OfType<RecordSchema>()
            .SelectMany(r => r.Fields.Where(f => f.Name.EndsWith("_unix_ms", StringComparison.Ordinal)).Select(f => (Record: r, Field: f)))
            .ToList();
        Assert.All(times, t =>
        {
            var logical = Assert.IsType<LogicalSchema>(NonNull(t.Field.Schema));
            Assert.Equal(TimestampMillis, logical.LogicalTypeName);
            Assert.Equal(Schema.Type.Long, logical.BaseSchema.Tag);
        });
        var names = times.Select(t => $"{t.Record.Name}.{t.Field.Name}").ToList();
        // Every topic value carries its event time, and the few other times are there too.
        Assert.All(SchemaTopics, t => Assert.Contains($"{t.Avro!.Value.Name}.event_time_unix_ms", names));
        Assert.Contains("CgmReading.original_time_unix_ms", names);
        Assert.Contains("SensorMetric.window_start_unix_ms", names);
        // And no time hides under another name as a plain long.
        Assert.All(AllNamedTypes().OfType<RecordSchema>().SelectMany(r => r.Fields).Where(f => NonNull(f.Schema).Tag == Schema.Type.Long),
            f => Assert.True(NonNull(f.Schema) is LogicalSchema || !f.Name.Contains("time", StringComparison.Ordinal), $"{f.Name} is a time as a plain long"));
    }

    [Fact]
    public void Every_enum_has_a_default_symbol_the_protobuf_zero_value()
    {
        var enums = AllNamedTypes().OfType<EnumSchema>().ToList();
        Assert.Equal(9, enums.Count);
        Assert.All(enums, e =>
        {
            Assert.False(string.IsNullOrEmpty(e.Default), $"{e.Fullname} has no default symbol");
            Assert.Equal(e.Symbols[0], e.Default);
            Assert.EndsWith("_UNSPECIFIED", e.Default, StringComparison.Ordinal);
        });
    }

    [Fact]
    public void Optional_fields_are_null_unions_defaulting_to_null_and_arrays_default_to_empty()
    {
        foreach (var field in AllNamedTypes().OfType<RecordSchema>().SelectMany(r => r.Fields))
        {
            if (field.Schema is UnionSchema union)
            {
                Assert.Equal(2, union.Count);
                Assert.Equal(Schema.Type.Null, union[0].Tag);
                Assert.Equal(Newtonsoft.Json.Linq.JTokenType.Null, field.DefaultValue?.Type);
            }
            if (field.Schema is ArraySchema)
                Assert.True(field.DefaultValue is Newtonsoft.Json.Linq.JArray { Count: 0 }, $"{field.Name}: an array defaults to []");
        }
        Assert.All(AllNamedTypes().OfType<RecordSchema>(), r => Assert.DoesNotContain(r.Fields, f => f.Name == "schema_version"));
    }

    /// <summary>The weights code keeps its Protobuf messages inside (the filter, its RocksDB state) and WeightWire converts
    /// at the topic boundary by field name and enum number: each weights Avro record has its Protobuf message's fields, in
    /// the same order and with the same meaning of type, except schema_version (the registry's version replaces it);
    /// enums have the same symbols in the same order.</summary>
    [Fact]
    public void The_weights_records_have_their_protobuf_message_fields_but_schema_version()
    {
        var pairs = ProtoAvroPairs().ToList();
        Assert.Equal(["WeightMeasurement", "WeightResult"], pairs.Select(p => p.Avro.Name).Order(StringComparer.Ordinal));
        foreach (var (proto, avro) in pairs)
        {
            var protoFields = proto.Fields.InDeclarationOrder().Where(f => f.Name != "schema_version").ToList();
            Assert.Equal(protoFields.Select(f => f.Name), avro.Fields.Select(f => f.Name));
            foreach (var field in protoFields)
                AssertSameType(field, avro.Fields.Single(f => f.Name == field.Name));
        }
    }

    public static TheoryData<string> GeneratedRecordNames() => [.. GeneratedTypes().Where(t => !t.IsEnum).Select(t => t.FullName!)];

    [Theory]
    [MemberData(nameof(GeneratedRecordNames))]
    public void Generated_class_round_trips_a_populated_instance_through_avro_binary(string typeName)
    {
        var type = GeneratedTypes().Single(t => t.FullName == typeName);
        typeof(AvroSchemaTests).GetMethod(nameof(RoundTrip), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
            .MakeGenericMethod(type).Invoke(null, null);
    }

    private static void RoundTrip<T>() where T : ISpecificRecord, new()
    {
        var schema = (RecordSchema)new T().Schema;
        var seed = 0;
        var original = (T)Populate(schema, typeof(T), depth: 0, ref seed);

        using var stream = new MemoryStream();
        new SpecificDatumWriter<T>(schema).Write(original, new BinaryEncoder(stream));
        stream.Position = 0;
        var copy = new SpecificDatumReader<T>(schema, schema).Read(default!, new BinaryDecoder(stream));

        Assert.Equal(stream.Length, stream.Position);
        AssertEqual(schema, original, copy, typeof(T).Name);
    }

    /// <summary>A value for every field, none of them the type's default (a value left at its default would not show
    /// a field that is lost on the way): unions hold their non-null branch, arrays two items, enums their last symbol.</summary>
    private static object Populate(Schema schema, Type type, int depth, ref int seed)
    {
        seed++;
        switch (schema)
        {
            case RecordSchema record:
                var instance = (ISpecificRecord)Activator.CreateInstance(type)!;
                foreach (var field in record.Fields)
                {
                    var property = type.GetProperty(field.Name) ?? throw new InvalidOperationException($"{type.Name} has no property {field.Name}");
                    instance.Put(field.Pos, Populate(field.Schema, property.PropertyType, depth + 1, ref seed));
                }
                return instance;
            case UnionSchema union:
                return Populate(NonNull(union), Nullable.GetUnderlyingType(type) ?? type, depth, ref seed);
            case ArraySchema array:
                var itemType = type.GetGenericArguments()[0];
                var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(itemType))!;
                // A recursive record (WeightMeasurement.initialization_batch) ends with an empty list one level down.
                var items = array.ItemSchema is RecordSchema && depth > 1 ? 0 : 2;
                for (var i = 0; i < items; i++) list.Add(Populate(array.ItemSchema, itemType, depth + 1, ref seed));
                return list;
            case EnumSchema e:
                return Enum.Parse(type, e.Symbols[^1]);
            case LogicalSchema { LogicalTypeName: TimestampMillis }:
                return new DateTime(2026, 3, 1, 12, 0, 0, DateTimeKind.Utc).AddMilliseconds(seed * 1_001);
            case LogicalSchema { LogicalTypeName: "date" }:
                // Whole days: the date logical type keeps nothing finer.
                return new DateTime(2026, 3, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(seed);
            case PrimitiveSchema primitive:
                return primitive.Tag switch
                {
                    Schema.Type.String => $"text-{seed}",
                    Schema.Type.Int => seed,
                    Schema.Type.Long => 1_000_000_000_000L + seed,
                    Schema.Type.Double => seed + 0.25,
                    Schema.Type.Float => seed + 0.5f,
                    Schema.Type.Boolean => true,
                    _ => throw new NotSupportedException($"no test value for {primitive.Tag}"),
                };
            default:
                throw new NotSupportedException($"no test value for {schema}");
        }
    }

    private static void AssertEqual(Schema schema, object? expected, object? actual, string path)
    {
        switch (schema)
        {
            case RecordSchema record:
                Assert.NotNull(actual);
                Assert.Equal(expected!.GetType(), actual.GetType());
                foreach (var field in record.Fields)
                    AssertEqual(field.Schema, ((ISpecificRecord)expected).Get(field.Pos), ((ISpecificRecord)actual).Get(field.Pos), $"{path}.{field.Name}");
                break;
            case UnionSchema union:
                AssertEqual(NonNull(union), expected, actual, path);
                break;
            case ArraySchema array:
                var e = Assert.IsAssignableFrom<IList>(expected);
                var a = Assert.IsAssignableFrom<IList>(actual);
                Assert.True(e.Count == a.Count, $"{path}: {a.Count} items, expected {e.Count}");
                for (var i = 0; i < e.Count; i++) AssertEqual(array.ItemSchema, e[i], a[i], $"{path}[{i}]");
                break;
            default:
                Assert.True(Equals(expected, actual), $"{path}: {actual} ({actual?.GetType().Name}), expected {expected} ({expected?.GetType().Name})");
                break;
        }
    }

    private static void AssertSameType(FieldDescriptor proto, Field avroField)
    {
        var where = $"{proto.ContainingType.Name}.{proto.Name}";
        var avro = NonNull(avroField.Schema);
        if (proto.IsRepeated)
            avro = Assert.IsType<ArraySchema>(avro).ItemSchema;
        switch (proto.FieldType)
        {
            case FieldType.Message:
                Assert.Equal(proto.MessageType.Name, Assert.IsType<RecordSchema>(avro).Name);
                break;
            case FieldType.Enum:
                var e = Assert.IsType<EnumSchema>(avro);
                Assert.Equal(proto.EnumType.Name, e.Name);
                Assert.Equal(proto.EnumType.Values.OrderBy(v => v.Number).Select(v => v.Name), e.Symbols);
                break;
            case FieldType.Int64 when proto.Name.EndsWith("_unix_ms", StringComparison.Ordinal):
                Assert.Equal(TimestampMillis, Assert.IsType<LogicalSchema>(avro).LogicalTypeName);
                break;
            default:
                var expected = proto.FieldType switch
                {
                    FieldType.Double => Schema.Type.Double,
                    FieldType.Float => Schema.Type.Float,
                    // quality_flags is a uint32 bit set whose flags all fit an int.
                    FieldType.Int32 or FieldType.UInt32 or FieldType.SInt32 => Schema.Type.Int,
                    FieldType.Int64 or FieldType.SInt64 => Schema.Type.Long,
                    FieldType.Bool => Schema.Type.Boolean,
                    FieldType.String => Schema.Type.String,
                    _ => throw new NotSupportedException($"{where}: no Avro counterpart known for {proto.FieldType}"),
                };
                Assert.True(avro is PrimitiveSchema && avro.Tag == expected, $"{where}: Avro {avro}, expected {expected}");
                break;
        }
    }

    /// <summary>The weights topics' value messages with their Avro records, and every message they embed with its
    /// record, once each.</summary>
    private static IEnumerable<(MessageDescriptor Proto, RecordSchema Avro)> ProtoAvroPairs()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<(MessageDescriptor, RecordSchema)>();
        pending.Push((WeightMeasurement.Descriptor, AvroSchemas.For(Topics.WeightsRaw).Value));
        pending.Push((WeightResult.Descriptor, AvroSchemas.For(Topics.WeightsFiltered).Value));
        while (pending.Count > 0)
        {
            var (proto, avro) = pending.Pop();
            if (!seen.Add(proto.FullName)) continue;
            yield return (proto, avro);
            foreach (var field in proto.Fields.InDeclarationOrder().Where(f => f.FieldType == FieldType.Message))
            {
                var avroField = avro.Fields.SingleOrDefault(f => f.Name == field.Name);
                if (avroField is null) continue; // reported by the field-by-field test
                var nested = NonNull(avroField.Schema);
                if (nested is ArraySchema array) nested = array.ItemSchema;
                if (nested is RecordSchema record) pending.Push((field.MessageType, record));
            }
        }
    }

    /// <summary>Every record and enum of every catalogued schema, nested ones included, once each.</summary>
    private static IEnumerable<NamedSchema> AllNamedTypes()
    {
        var seen = new Dictionary<string, NamedSchema>(StringComparer.Ordinal);
        var pending = new Stack<Schema>(AvroSchemas.All.SelectMany(s => new Schema[] { s.Key, s.Value }));
        while (pending.Count > 0)
        {
            switch (pending.Pop())
            {
                case NamedSchema named when !seen.TryAdd(named.Fullname, named):
                    break;
                case RecordSchema record:
                    foreach (var field in record.Fields) pending.Push(field.Schema);
                    break;
                case ArraySchema array:
                    pending.Push(array.ItemSchema);
                    break;
                case UnionSchema union:
                    foreach (var branch in union.Schemas) pending.Push(branch);
                    break;
            }
        }
        return seen.Values;
    }

    private static IEnumerable<Type> GeneratedTypes() =>
        typeof(AvroSchemas).Assembly.GetTypes()
            .Where(t => t.Namespace?.StartsWith(GeneratedNamespace + ".", StringComparison.Ordinal) == true
                        && (t.IsEnum || typeof(ISpecificRecord).IsAssignableFrom(t)));

    /// <summary>The schema itself, or the non-null branch of a ["null", T] union.</summary>
    private static Schema NonNull(Schema schema) =>
        schema is UnionSchema union ? union.Schemas.Single(s => s.Tag != Schema.Type.Null) : schema;
}
