using Google.Protobuf.Reflection;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Foundation;

/// <summary>The committed baseline versus the compiled schemas, and deliberately broken copies of the
/// .proto files compiled with the same protoc (from Grpc.Tools) to show the gate really closes.</summary>
public sealed class SchemaCompatibilityTests
{
    [Fact]
    public void Compiled_schemas_are_backward_compatible_with_the_committed_baseline()
    {
        Assert.Empty(SchemaCompatibility.CheckAgainstBaseline());
        // The committed file is the compiled descriptors, so a new field cannot slip in unrecorded.
        var committed = File.ReadAllText(Path.Combine(Repo.Root, "schemas", "baseline", SchemaCompatibility.BaselineFileName));
        Assert.Equal(SchemaCompatibility.CurrentAsJson(), committed);
    }

    [Fact]
    public void Every_topic_value_carries_schema_version_and_event_time()
    {
        Assert.Empty(SchemaCompatibility.CheckEnvelope());
        Assert.All(Topics.All.Where(t => !t.IsDeadLetter), t =>
        {
            Assert.Equal("schema_version", t.Value!.FindFieldByNumber(1).Name);
            Assert.Equal("event_time_unix_ms", t.Value!.FindFieldByNumber(2).Name);
        });
    }

    [Fact]
    public void An_unchanged_copy_compiled_with_protoc_is_compatible()
    {
        var copy = CompileCopy(_ => { });
        Assert.Empty(SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), copy));
    }

    [Fact]
    public void Reusing_a_field_number_is_refused()
    {
        var broken = CompileCopy(files => Edit(files, "weight.proto",
            "string source_detail = 8;", "string device_model = 8;"));
        var problem = Assert.Single(SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), broken));
        Assert.Equal("streamhealth.WeightMeasurement: field number 8 reused: was 'source_detail', now 'device_model'", problem);
    }

    [Fact]
    public void Retyping_a_field_is_refused()
    {
        var broken = CompileCopy(files => Edit(files, "cgm.proto",
            "double glucose_mg_dl = 5;", "float glucose_mg_dl = 5;"));
        var problem = Assert.Single(SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), broken));
        Assert.Contains("streamhealth.CgmReading.glucose_mg_dl (field 5): type changed from double to float", problem);
    }

    [Fact]
    public void Removing_a_field_is_refused_unless_its_number_is_reserved()
    {
        var removed = CompileCopy(files => Edit(files, "weight.proto", "string source_detail = 8;", ""));
        Assert.Contains("removed without reserving its number",
            Assert.Single(SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), removed)));

        var reserved = CompileCopy(files => Edit(files, "weight.proto", "string source_detail = 8;", "reserved 8;"));
        Assert.Empty(SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), reserved));
    }

    [Fact]
    public void Removing_a_message_or_reusing_an_enum_value_is_refused()
    {
        var broken = CompileCopy(files =>
        {
            Edit(files, "weight.proto", "WEIGHT_UNIT_ST = 3;", "WEIGHT_UNIT_GRAM = 3;");
            var sensors = files.Single(f => f.EndsWith("sensors.proto"));
            File.WriteAllText(sensors, File.ReadAllText(sensors)[..File.ReadAllText(sensors).IndexOf("// Topic sensors.anomalies", StringComparison.Ordinal)]);
        });
        var problems = SchemaCompatibility.Check(SchemaCompatibility.EmbeddedBaseline(), broken);
        Assert.Contains("streamhealth.SensorAnomaly: message removed", problems);
        Assert.Contains("streamhealth.WeightUnit: enum value 3 reused: was 'WEIGHT_UNIT_ST', now 'WEIGHT_UNIT_GRAM'", problems);
    }

    private static void Edit(List<string> files, string name, string from, string to)
    {
        var path = files.Single(f => f.EndsWith(name, StringComparison.Ordinal));
        var text = File.ReadAllText(path);
        Assert.Contains(from, text);   // the edit must really change something
        File.WriteAllText(path, text.Replace(from, to));
    }

    /// <summary>Copies schemas/proto to a temp folder, applies <paramref name="edit"/>, compiles it with
    /// protoc to a FileDescriptorSet.</summary>
    private static FileDescriptorSet CompileCopy(Action<List<string>> edit)
    {
        var source = Path.Combine(Repo.Root, "schemas", "proto");
        var dir = Directory.CreateTempSubdirectory("streamhealth-proto-").FullName;
        try
        {
            var files = new List<string>();
            foreach (var file in Directory.GetFiles(source, "*.proto", SearchOption.AllDirectories))
            {
                var target = Path.Combine(dir, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
                files.Add(target);
            }
            edit(files);
            var output = Path.Combine(dir, "set.pb");
            var args = new List<string> { "-I", dir, "--descriptor_set_out=" + output };
            args.AddRange(files.Select(f => Path.GetRelativePath(dir, f)).Order(StringComparer.Ordinal));
            var (code, _, err) = Repo.Run(Protoc, args, workingDirectory: dir);
            Assert.True(code == 0, "protoc failed: " + err);
            return FileDescriptorSet.Parser.ParseFrom(File.ReadAllBytes(output));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Protoc
    {
        get
        {
            var tools = Path.Combine(Repo.Root, ".local", "nuget", "grpc.tools");
            var protoc = Directory.GetFiles(tools, "protoc", SearchOption.AllDirectories).Single(p => p.Contains("linux_x64"));
            return protoc;
        }
    }
}
