using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace StreamHealth.Schemas;

/// <summary>Backward-compatibility gate over the compiled Protobuf descriptors, in the spirit of
/// Schema Registry's BACKWARD check: a consumer on the new schemas must read every record written
/// with the baseline. The baseline (schemas/baseline) is committed; moving it is a deliberate act.</summary>
public static class SchemaCompatibility
{
    public const string BaselineFileName = "streamhealth.descriptors.json";

    // Every topic value carries these two fields at these numbers (the "envelope").
    public const int SchemaVersionField = 1;
    public const int EventTimeField = 2;

    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithIndentation("  "));
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default);

    /// <summary>The descriptors compiled into this assembly, for every file a topic uses.</summary>
    public static FileDescriptorSet Current()
    {
        var files = new SortedDictionary<string, FileDescriptor>(StringComparer.Ordinal);
        void Add(FileDescriptor f)
        {
            if (!files.TryAdd(f.Name, f)) return;
            foreach (var d in f.Dependencies) Add(d);
        }
        foreach (var t in Topics.All)
        {
            if (t.Key is not null) Add(t.Key.File);
            if (t.Value is not null) Add(t.Value.File);
        }
        var set = new FileDescriptorSet();
        foreach (var f in files.Values) set.File.Add(FileDescriptorProto.Parser.ParseFrom(f.SerializedData));
        return set;
    }

    public static string CurrentAsJson() => Json.Format(Current()) + "\n";

    public static FileDescriptorSet ParseJson(string json) => Parser.Parse<FileDescriptorSet>(json);

    public static FileDescriptorSet EmbeddedBaseline()
    {
        using var stream = typeof(SchemaCompatibility).Assembly.GetManifestResourceStream(BaselineFileName)
                           ?? throw new InvalidOperationException($"{BaselineFileName} is not embedded");
        using var reader = new StreamReader(stream);
        return ParseJson(reader.ReadToEnd());
    }

    public static IReadOnlyList<string> CheckAgainstBaseline()
    {
        var problems = new List<string>(Check(EmbeddedBaseline(), Current()));
        problems.AddRange(CheckEnvelope());
        return problems;
    }

    /// <summary>Every incompatible change from <paramref name="baseline"/> to <paramref name="current"/>,
    /// one human-readable line each; empty when compatible.</summary>
    public static IReadOnlyList<string> Check(FileDescriptorSet baseline, FileDescriptorSet current)
    {
        var problems = new List<string>();
        var currentMessages = Index(current, out var currentEnums);
        var baselineMessages = Index(baseline, out var baselineEnums);

        foreach (var (name, old) in baselineMessages)
        {
            if (!currentMessages.TryGetValue(name, out var now))
            {
                problems.Add($"{name}: message removed");
                continue;
            }
            var nowByNumber = now.Field.ToDictionary(f => f.Number);
            foreach (var oldField in old.Field)
            {
                var where = $"{name}.{oldField.Name} (field {oldField.Number})";
                if (!nowByNumber.TryGetValue(oldField.Number, out var field))
                {
                    if (!IsReserved(now, oldField.Number))
                        problems.Add($"{where}: removed without reserving its number, so it can be reused with another meaning");
                    continue;
                }
                if (field.Name != oldField.Name)
                    problems.Add($"{name}: field number {oldField.Number} reused: was '{oldField.Name}', now '{field.Name}'");
                if (field.Type != oldField.Type || field.TypeName != oldField.TypeName)
                    problems.Add($"{where}: type changed from {Describe(oldField)} to {Describe(field)}");
                if (IsRepeated(field) != IsRepeated(oldField))
                    problems.Add($"{where}: changed between repeated and singular");
                if (field.OneofIndex != oldField.OneofIndex && (field.HasOneofIndex || oldField.HasOneofIndex))
                    problems.Add($"{where}: moved into or out of a oneof");
            }
            foreach (var field in now.Field)
            {
                if (IsReserved(old, field.Number))
                    problems.Add($"{name}.{field.Name}: uses field number {field.Number}, which the baseline reserved");
            }
        }

        foreach (var (name, old) in baselineEnums)
        {
            if (!currentEnums.TryGetValue(name, out var now))
            {
                problems.Add($"{name}: enum removed");
                continue;
            }
            var nowByNumber = now.Value.GroupBy(v => v.Number).ToDictionary(g => g.Key, g => g.First());
            foreach (var oldValue in old.Value)
            {
                if (!nowByNumber.TryGetValue(oldValue.Number, out var value))
                {
                    if (!now.ReservedRange.Any(r => oldValue.Number >= r.Start && oldValue.Number <= r.End))
                        problems.Add($"{name}.{oldValue.Name} (value {oldValue.Number}): removed without reserving its number");
                }
                else if (value.Name != oldValue.Name)
                {
                    problems.Add($"{name}: enum value {oldValue.Number} reused: was '{oldValue.Name}', now '{value.Name}'");
                }
            }
        }
        return problems;
    }

    /// <summary>Every topic value carries uint32 schema_version = 1 and int64 event_time_unix_ms = 2.</summary>
    public static IReadOnlyList<string> CheckEnvelope()
    {
        var problems = new List<string>();
        foreach (var topic in Topics.All)
        {
            if (topic.Value is not { } value) continue;
            var version = value.FindFieldByNumber(SchemaVersionField);
            var time = value.FindFieldByNumber(EventTimeField);
            if (version is not { Name: "schema_version", FieldType: FieldType.UInt32 })
                problems.Add($"{value.FullName} (topic {topic.Name}): field 1 must be 'uint32 schema_version'");
            if (time is not { Name: "event_time_unix_ms", FieldType: FieldType.Int64 })
                problems.Add($"{value.FullName} (topic {topic.Name}): field 2 must be 'int64 event_time_unix_ms'");
        }
        return problems;
    }

    private static Dictionary<string, DescriptorProto> Index(FileDescriptorSet set, out Dictionary<string, EnumDescriptorProto> enums)
    {
        var messages = new Dictionary<string, DescriptorProto>(StringComparer.Ordinal);
        enums = new Dictionary<string, EnumDescriptorProto>(StringComparer.Ordinal);
        foreach (var file in set.File)
        {
            var prefix = file.Package.Length > 0 ? file.Package + "." : "";
            foreach (var e in file.EnumType) enums[prefix + e.Name] = e;
            foreach (var m in file.MessageType) AddMessage(prefix + m.Name, m, messages, enums);
        }
        return messages;
    }

    private static void AddMessage(string name, DescriptorProto message, Dictionary<string, DescriptorProto> messages,
        Dictionary<string, EnumDescriptorProto> enums)
    {
        messages[name] = message;
        foreach (var e in message.EnumType) enums[name + "." + e.Name] = e;
        foreach (var nested in message.NestedType) AddMessage(name + "." + nested.Name, nested, messages, enums);
    }

    private static bool IsReserved(DescriptorProto message, int number) =>
        message.ReservedRange.Any(r => number >= r.Start && number < r.End);   // end is exclusive for fields

    private static bool IsRepeated(FieldDescriptorProto f) => f.Label == FieldDescriptorProto.Types.Label.Repeated;

    private static string Describe(FieldDescriptorProto f) =>
        f.TypeName.Length > 0 ? f.TypeName.TrimStart('.') : f.Type.ToString().ToLowerInvariant();
}
