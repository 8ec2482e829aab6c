using System.Text.Json.Nodes;
using Confluent.SchemaRegistry;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>The deploy step (`streamhealth schemas register`, and what the embedded stack does at start-up): every
/// catalogue topic's key and value schema under its TopicNameStrategy subjects, read back by a fresh Confluent client;
/// idempotent; a change the subject's compatibility level forbids is refused for that subject, with the registry's
/// reason, while the other subjects still register.</summary>
public sealed class SchemaRegistrationTests
{
    [Fact]
    public async Task The_catalogue_registers_under_topic_subjects_and_a_fresh_client_reads_each_schema_back()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        var subjects = SchemaRegistration.CatalogueSubjects().ToList();
        Assert.Equal(2 * AvroSchemas.All.Count, subjects.Count);

        IReadOnlyList<SchemaRegistration.Outcome> first;
        using (var client = RegistryFixture.Client(server))
            first = await SchemaRegistration.RegisterAsync(client, subjects);
        Assert.All(first, o => Assert.Null(o.Refused));
        Assert.All(first, o => Assert.Equal(1, o.Version));

        using var fresh = RegistryFixture.Client(server);
        Assert.Equal(subjects.Select(s => s.Subject).Order(StringComparer.Ordinal), (await fresh.GetAllSubjectsAsync()).Order(StringComparer.Ordinal));
        foreach (var topic in AvroSchemas.All)
        {
            var value = await fresh.GetLatestSchemaAsync(SchemaRegistration.ValueSubject(topic.Topic));
            Assert.Equal(topic.Value.ToString(), global::Avro.Schema.Parse(value.SchemaString).ToString());
            Assert.Equal(topic.Value.Fullname, ((global::Avro.RecordSchema)global::Avro.Schema.Parse(value.SchemaString)).Fullname);
            var key = await fresh.GetLatestSchemaAsync(SchemaRegistration.KeySubject(topic.Topic));
            Assert.Equal(topic.Key.ToString(), global::Avro.Schema.Parse(key.SchemaString).ToString());
        }
        // One key schema shared by many topics has one global id.
        Assert.Single(first.Where(o => o.Subject.EndsWith("-key", StringComparison.Ordinal) && o.Subject.StartsWith("weights.", StringComparison.Ordinal))
            .Select(o => o.Id).Distinct());

        // Idempotent: the same ids and versions again.
        var again = await SchemaRegistration.RegisterAsync(fresh, subjects);
        Assert.Equal(first.Select(o => (o.Subject, o.Id, o.Version)), again.Select(o => (o.Subject, o.Id, o.Version)));
    }

    [Fact]
    public async Task A_change_the_level_forbids_is_refused_for_its_subject_with_the_reason_and_the_others_register()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        using var client = RegistryFixture.Client(server);
        Assert.All(await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects()), o => Assert.Null(o.Refused));

        var weights = AvroSchemas.For(Topics.WeightsRaw);
        // BACKWARD (the default): the new schema must read what the old one wrote. A field's type changed from double to
        // string, and a new field without a default, cannot.
        var retyped = Edit(weights.Value.ToString(), fields => fields.Single(f => f!["name"]!.GetValue<string>() == "value")!["type"] = "string");
        var added = Edit(AvroSchemas.For(Topics.CgmReadings).Value.ToString(),
            fields => fields.Add(new JsonObject { ["name"] = "sensor_serial", ["type"] = "string", ["doc"] = "Serial number." }));
        var compatible = Edit(AvroSchemas.For(Topics.InsightsMetrics).Value.ToString(),
            fields => fields.Add(new JsonObject { ["name"] = "note", ["type"] = "string", ["default"] = "", ["doc"] = "Free text." }));

        var outcomes = await SchemaRegistration.RegisterAsync(client,
        [
            (SchemaRegistration.ValueSubject(Topics.WeightsRaw), retyped),
            (SchemaRegistration.ValueSubject(Topics.CgmReadings), added),
            (SchemaRegistration.ValueSubject(Topics.InsightsMetrics), compatible),
        ]);

        Assert.Contains("value", outcomes[0].Refused);
        Assert.Contains("sensor_serial", outcomes[1].Refused);
        Assert.Null(outcomes[2].Refused);
        Assert.Equal(2, outcomes[2].Version);
        using var fresh = RegistryFixture.Client(server);
        Assert.Equal([1], await fresh.GetSubjectVersionsAsync(SchemaRegistration.ValueSubject(Topics.WeightsRaw)));
        Assert.Equal([1], await fresh.GetSubjectVersionsAsync(SchemaRegistration.ValueSubject(Topics.CgmReadings)));
    }

    private static string Edit(string schema, Action<JsonArray> change)
    {
        var node = JsonNode.Parse(schema)!;
        change(node["fields"]!.AsArray());
        return node.ToJsonString();
    }

    [Fact]
    public async Task A_configured_subject_level_is_set_before_registering_and_then_governs_that_subject_only()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        using var client = RegistryFixture.Client(server);
        var subject = SchemaRegistration.ValueSubject(Topics.InsightsMetrics);
        var levels = new Dictionary<string, string> { [subject] = "FULL_TRANSITIVE" };
        Assert.All(await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects(), levels), o => Assert.Null(o.Refused));
        Assert.Equal(Compatibility.FullTransitive, await client.GetCompatibilityAsync(subject));

        // A new field without a default: BACKWARD-incompatible anyway; a removed field without a default (unit): fine for BACKWARD,
        // refused under FULL.
        var removed = Edit(AvroSchemas.For(Topics.InsightsMetrics).Value.ToString(),
            fields => fields.RemoveAt(fields.Select(f => f!["name"]!.GetValue<string>()).ToList().IndexOf("unit")));
        var removedElsewhere = Edit(AvroSchemas.For(Topics.CgmLatest).Value.ToString(), fields => fields.RemoveAt(fields.Count - 1));
        var outcomes = await SchemaRegistration.RegisterAsync(client,
            [(subject, removed), (SchemaRegistration.ValueSubject(Topics.CgmLatest), removedElsewhere)], levels);
        Assert.NotNull(outcomes[0].Refused);
        Assert.Null(outcomes[1].Refused);
        Assert.Equal(2, outcomes[1].Version);
    }

    [Fact]
    public void Compatibility_settings_name_a_catalogue_subject_and_a_level()
    {
        var e = Assert.Throws<StreamHealth.Runtime.Configuration.ConfigurationException>(() => StreamHealth.Runtime.Configuration.StreamHealthOptions.Load(
            new Dictionary<string, string?>
            {
                ["SchemaRegistry:Compatibility:weights.raww-value"] = "FULL",
                ["SchemaRegistry:Compatibility:weights.raw-value"] = "STRICT",
            }));
        Assert.Contains("SchemaRegistry:Compatibility:weights.raww-value: not a subject of a StreamHealth topic", e.Message);
        Assert.Contains("SchemaRegistry:Compatibility:weights.raw-value = STRICT: not a level", e.Message);
        Assert.True(StreamHealth.Runtime.Configuration.SchemaRegistryOptions.TryParseLevel("backward_transitive", out var level));
        Assert.Equal(Compatibility.BackwardTransitive, level);
    }
}
