using System.Text.Json.Nodes;
using Confluent.SchemaRegistry;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>`streamhealth schemas check`: the committed schemas/avro pass against the registered catalogue, a compatible
/// evolution passes, and each deliberately broken copy (a field removed without a default, a changed type, a renamed
/// enum symbol) fails, naming the subject and the rule; the CLI exits 0, 1 and 2 (registry unreachable) accordingly.</summary>
public sealed class SchemaCheckTests : IClassFixture<SchemaCheckTests.RegisteredCatalogue>, IDisposable
{
    /// <summary>A registry (on a database of its own) holding the catalogue as `schemas register` leaves it.</summary>
    public sealed class RegisteredCatalogue : IAsyncLifetime
    {
        public SchemaRegistryServer Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            Server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
            using var client = RegistryFixture.Client(Server);
            var outcomes = await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects());
            Assert.All(outcomes, o => Assert.Null(o.Refused));
        }

        public async Task DisposeAsync() => await Server.DisposeAsync();
    }

    private const string Measurement = "WeightMeasurement.avsc";
    private const string MeasurementSubject = "weights.raw-value";

    private readonly RegisteredCatalogue _registry;
    private readonly string _copy;

    public SchemaCheckTests(RegisteredCatalogue registry)
    {
        _registry = registry;
        _copy = Directory.CreateTempSubdirectory("schemas-check-").FullName;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Repo.Root, "schemas", "avro"), "*.avsc"))
            File.Copy(file, Path.Combine(_copy, Path.GetFileName(file)));
    }

    public void Dispose() => Directory.Delete(_copy, recursive: true);

    private async Task<IReadOnlyList<SchemaCheck.Verdict>> CheckCopyAsync()
    {
        using var http = new HttpClient { BaseAddress = new Uri(_registry.Server.Url.TrimEnd('/') + "/") };
        return await SchemaCheck.CheckAsync(http, SchemaCheck.SubjectsFromDirectory(_copy));
    }

    /// <summary>Edits one field of the copy's WeightMeasurement.avsc.</summary>
    private void EditMeasurement(Action<JsonArray> editFields)
    {
        var path = Path.Combine(_copy, Measurement);
        var schema = JsonNode.Parse(File.ReadAllText(path))!;
        editFields(schema["fields"]!.AsArray());
        File.WriteAllText(path, schema.ToJsonString());
    }

    private static JsonNode Field(JsonArray fields, string name) => fields.First(f => (string)f!["name"]! == name)!;

    private static SchemaCheck.Verdict OnlyIncompatible(IReadOnlyList<SchemaCheck.Verdict> verdicts)
    {
        var refused = Assert.Single(verdicts, v => !v.Compatible);
        Assert.Equal(MeasurementSubject, refused.Subject);
        Assert.Equal(1, refused.LatestVersion);
        return refused;
    }

    [Fact]
    public async Task The_committed_schemas_are_compatible_with_the_registered_catalogue()
    {
        var verdicts = await CheckCopyAsync();
        Assert.Equal(SchemaRegistration.CatalogueSubjects().Select(s => s.Subject).Order(StringComparer.Ordinal),
            verdicts.Select(v => v.Subject).Order(StringComparer.Ordinal));
        Assert.All(verdicts, v => Assert.True(v.Compatible, v.ToString()));
        Assert.All(verdicts, v => Assert.Equal(1, v.LatestVersion));
    }

    [Fact]
    public async Task An_optional_field_with_a_default_and_an_appended_enum_symbol_are_compatible()
    {
        EditMeasurement(fields =>
        {
            fields.Add(JsonNode.Parse("""{"name":"scale_serial","type":["null","string"],"default":null,"doc":"Serial number of the scale (text, no unit)."}"""));
            Field(fields, "unit")["type"]!["symbols"]!.AsArray().Add("WEIGHT_UNIT_G");
        });
        Assert.All(await CheckCopyAsync(), v => Assert.True(v.Compatible, v.ToString()));
    }

    [Fact]
    public async Task A_field_removed_without_a_default_fails_because_old_readers_cannot_read_the_new_records()
    {
        EditMeasurement(fields => fields.Remove(Field(fields, "value")));
        var refused = OnlyIncompatible(await CheckCopyAsync());
        // BACKWARD (the registry's default level) allows a removal: the project rule is what catches it.
        var problem = Assert.Single(refused.Problems);
        Assert.StartsWith("project rule (old readers keep reading): version 1 cannot read records written with this schema", problem);
        Assert.Contains("reader field 'value'", problem);
        Assert.Contains("has no default", problem);
    }

    [Fact]
    public async Task A_changed_type_fails_in_the_registry_and_in_the_project_rule()
    {
        EditMeasurement(fields => Field(fields, "value")["type"] = "string");
        var refused = OnlyIncompatible(await CheckCopyAsync());
        Assert.Contains(refused.Problems, p => p.StartsWith("registry: BACKWARD: the new schema cannot read data written with version 1", StringComparison.Ordinal)
                                               && p.Contains("/fields/value", StringComparison.Ordinal));
        Assert.Contains(refused.Problems, p => p.StartsWith("project rule (old readers keep reading)", StringComparison.Ordinal)
                                               && p.Contains("/fields/value", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_renamed_enum_symbol_fails_because_its_records_would_read_as_unspecified()
    {
        EditMeasurement(fields =>
        {
            var symbols = Field(fields, "unit")["type"]!["symbols"]!.AsArray();
            var at = symbols.Select(s => (string)s!).ToList().IndexOf("WEIGHT_UNIT_KG");
            Assert.True(at >= 0);
            symbols[at] = "WEIGHT_UNIT_KILOGRAM";
        });
        var refused = OnlyIncompatible(await CheckCopyAsync());
        // With the enum's default, Avro resolution calls the rename compatible at every level; only the project rule objects.
        var problem = Assert.Single(refused.Problems);
        Assert.Equal("project rule (enum symbols are append-only): enum StreamHealth.Schemas.Avro.Weights.WeightUnit lost symbol(s) WEIGHT_UNIT_KG: " +
                     "records carrying them would be read as its default WEIGHT_UNIT_UNSPECIFIED", problem);
    }

    [Fact]
    public async Task A_subject_at_level_full_makes_the_registry_itself_refuse_a_removed_field()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        using (var client = RegistryFixture.Client(server))
            Assert.All(await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects(),
                new Dictionary<string, string> { [MeasurementSubject] = "FULL" }), o => Assert.Null(o.Refused));
        EditMeasurement(fields => fields.Remove(Field(fields, "value")));
        using var http = new HttpClient { BaseAddress = new Uri(server.Url.TrimEnd('/') + "/") };
        var refused = OnlyIncompatible(await SchemaCheck.CheckAsync(http, SchemaCheck.SubjectsFromDirectory(_copy)));
        Assert.Contains(refused.Problems, p => p.StartsWith("registry: FULL: version 1 cannot read data written with the new schema", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_subject_with_nothing_registered_is_new_not_incompatible()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        using var http = new HttpClient { BaseAddress = new Uri(server.Url.TrimEnd('/') + "/") };
        var verdicts = await SchemaCheck.CheckAsync(http, SchemaRegistration.CatalogueSubjects());
        Assert.All(verdicts, v => Assert.True(v.Compatible && v.LatestVersion is null, v.ToString()));
        Assert.EndsWith(": new subject (nothing registered yet)", verdicts[0].ToString());
    }

    [Fact]
    public void A_directory_with_a_file_that_is_not_a_schema_or_a_record_no_topic_uses_is_refused_naming_it()
    {
        File.WriteAllText(Path.Combine(_copy, "Broken.avsc"), "{\"type\": \"record\", \"name\": ");
        var e = Assert.Throws<ArgumentException>(() => SchemaCheck.SubjectsFromDirectory(_copy));
        Assert.Contains("Broken.avsc: not an Avro schema", e.Message);

        File.WriteAllText(Path.Combine(_copy, "Broken.avsc"), Avsc.Record("Stray", Avsc.Field("a", Avsc.AvroInt)));
        e = Assert.Throws<ArgumentException>(() => SchemaCheck.SubjectsFromDirectory(_copy));
        Assert.Contains("streamhealth.test.Stray is the key or value of no StreamHealth topic", e.Message);
    }

    [Fact]
    public void The_cli_exits_0_for_the_committed_schemas_1_naming_a_broken_copy_and_2_when_the_registry_is_unreachable()
    {
        Dictionary<string, string> At(string url) => new() { ["STREAMHEALTH_SchemaRegistry__Url"] = url, ["STREAMHEALTH_SchemaRegistry__Embedded"] = "false" };

        var (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "schemas", "check", _copy], At(_registry.Server.Url));
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains($"{2 * AvroSchemas.All.Count} subjects compatible with {_registry.Server.Url}", stdout);

        EditMeasurement(fields => fields.Remove(Field(fields, "value")));
        (code, stdout, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "schemas", "check", _copy], At(_registry.Server.Url));
        Assert.Equal(1, code);
        Assert.Contains($"{MeasurementSubject}: INCOMPATIBLE with version 1:", stderr);
        Assert.Contains("reader field 'value'", stderr);
        Assert.Contains($"1 of {2 * AvroSchemas.All.Count} subjects incompatible", stdout);

        (code, _, stderr) = Repo.Run("dotnet", [ChildHost.HostDll, "schemas", "check"], At("http://127.0.0.1:9"));
        Assert.Equal(2, code);
        Assert.StartsWith("streamhealth: SchemaRegistry:Url = http://127.0.0.1:9: the schema registry cannot be reached", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }
}
