using System.Net;
using System.Text;
using System.Text.Json;
using Confluent.SchemaRegistry;
using StreamHealth.Runtime.SchemaRegistry;
using static StreamHealth.Tests.SchemaRegistry.Avsc;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>The embedded registry as Confluent's own client (CachedSchemaRegistryClient 2.16) sees it, over real
/// PostgreSQL. Each test uses subjects of its own in the class's database, or a database of its own where it changes
/// the global level or restarts the server.</summary>
public sealed class SchemaRegistryClientTests(RegistryFixture fixture) : IClassFixture<RegistryFixture>
{
    private SchemaRegistryServer Server => fixture.Server;

    [Fact]
    public async Task A_registered_schema_is_served_by_id_to_a_fresh_client()
    {
        int id;
        using (var writer = RegistryFixture.Client(Server))
            id = await writer.RegisterSchemaAsync("byid-value", Of(WeightV1));

        using var reader = RegistryFixture.Client(Server);
        var schema = await reader.GetSchemaAsync(id);
        Assert.Equal(SchemaType.Avro, schema.SchemaType);
        Assert.Equal(global::Avro.Schema.Parse(WeightV1).ToString(), schema.SchemaString);
        Assert.Contains("byid-value", await reader.GetAllSubjectsAsync());
        Assert.Equal([1], await reader.GetSubjectVersionsAsync("byid-value"));
    }

    [Fact]
    public async Task Registering_again_returns_the_same_id_and_whitespace_does_not_count()
    {
        using var client = RegistryFixture.Client(Server);
        var id = await client.RegisterSchemaAsync("again-value", Of(WeightV1));
        var pretty = JsonSerializer.Serialize(JsonDocument.Parse(WeightV1).RootElement, new JsonSerializerOptions { WriteIndented = true });
        Assert.NotEqual(WeightV1, pretty);

        using var fresh = RegistryFixture.Client(Server);
        Assert.Equal(id, await fresh.RegisterSchemaAsync("again-value", Of(pretty)));
        Assert.Equal([1], await fresh.GetSubjectVersionsAsync("again-value"));
    }

    [Fact]
    public async Task The_same_schema_under_another_subject_keeps_its_global_id()
    {
        using var client = RegistryFixture.Client(Server);
        var schema = Record("Shared", Field("x", AvroLong));
        var id = await client.RegisterSchemaAsync("shared-a-value", Of(schema));
        using var fresh = RegistryFixture.Client(Server);
        Assert.Equal(id, await fresh.RegisterSchemaAsync("shared-b-value", Of(schema)));

        // Which subjects use the id: an endpoint the client library does not call.
        using var http = new HttpClient();
        var uses = JsonDocument.Parse(await http.GetStringAsync($"{Server.Url}/schemas/ids/{id}/versions")).RootElement;
        Assert.Equal(
            ["shared-a-value:1", "shared-b-value:1"],
            uses.EnumerateArray().Select(u => $"{u.GetProperty("subject").GetString()}:{u.GetProperty("version").GetInt32()}").ToList());
    }

    [Fact]
    public async Task Lookup_answers_subject_id_version_and_schema()
    {
        using var client = RegistryFixture.Client(Server);
        var id = await client.RegisterSchemaAsync("lookup-value", Of(WeightV1));
        await client.RegisterSchemaAsync("lookup-value", Of(WeightV2));

        using var fresh = RegistryFixture.Client(Server);
        var found = await fresh.LookupSchemaAsync("lookup-value", Of(WeightV1), ignoreDeletedSchemas: true);
        Assert.Equal(("lookup-value", id, 1), (found.Subject, found.Id, found.Version));
        Assert.Equal(global::Avro.Schema.Parse(WeightV1).ToString(), found.SchemaString);
        Assert.Equal(id, await RegistryFixture.Client(Server).GetSchemaIdAsync("lookup-value", Of(WeightV1)));
    }

    [Fact]
    public async Task A_compatible_evolution_becomes_version_2_and_the_latest()
    {
        using var client = RegistryFixture.Client(Server);
        var id1 = await client.RegisterSchemaAsync("evolve-value", Of(WeightV1));
        Assert.True(await client.IsCompatibleAsync("evolve-value", Of(WeightV2)));
        var id2 = await client.RegisterSchemaAsync("evolve-value", Of(WeightV2));
        Assert.NotEqual(id1, id2);

        using var fresh = RegistryFixture.Client(Server);
        var latest = await fresh.GetLatestSchemaAsync("evolve-value");
        Assert.Equal(("evolve-value", id2, 2), (latest.Subject, latest.Id, latest.Version));
        Assert.Contains("\"source\"", latest.SchemaString);
        var first = await fresh.GetRegisteredSchemaAsync("evolve-value", 1);
        Assert.Equal((id1, 1), (first.Id, first.Version));
        Assert.Equal([1, 2], await fresh.GetSubjectVersionsAsync("evolve-value"));
    }

    public static TheoryData<string, Compatibility, string, string> Incompatible => new()
    {
        { "removed field without default, FORWARD", Compatibility.Forward,
            Record("W", Field("user_id", AvroString), Field("kg", AvroDouble)), Record("W", Field("user_id", AvroString)) },
        { "removed field without default, FULL", Compatibility.Full,
            Record("W", Field("user_id", AvroString), Field("kg", AvroDouble)), Record("W", Field("user_id", AvroString)) },
        { "changed type, BACKWARD", Compatibility.Backward,
            Record("W", Field("kg", AvroDouble)), Record("W", Field("kg", AvroString)) },
        { "renamed enum symbol, BACKWARD", Compatibility.Backward,
            Record("W", Field("unit", Enum("Unit", "KG", "LB"))), Record("W", Field("unit", Enum("Unit", "KG", "POUND"))) },
    };

    [Theory]
    [MemberData(nameof(Incompatible))]
    public async Task An_incompatible_schema_is_refused_with_409(string change, Compatibility level, string v1, string v2)
    {
        var subject = "incompatible-" + Guid.NewGuid().ToString("N")[..8];
        using var client = RegistryFixture.Client(Server);
        Assert.Equal(level, await client.UpdateCompatibilityAsync(level, subject));
        await client.RegisterSchemaAsync(subject, Of(v1));

        Assert.False(await client.IsCompatibleAsync(subject, Of(v2)), change);
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.RegisterSchemaAsync(subject, Of(v2)));
        Assert.Equal(409, e.ErrorCode);
        Assert.Equal(HttpStatusCode.Conflict, e.Status);
        Assert.Contains("incompatible", e.Message);
        Assert.Equal([1], await client.GetSubjectVersionsAsync(subject));
    }

    public static TheoryData<string, Compatibility, string, string> AllowedByLevel => new()
    {
        { "removed field without default, BACKWARD", Compatibility.Backward,
            Record("W", Field("user_id", AvroString), Field("kg", AvroDouble)), Record("W", Field("user_id", AvroString)) },
        { "changed type, NONE", Compatibility.None,
            Record("W", Field("kg", AvroDouble)), Record("W", Field("kg", AvroString)) },
        { "added enum symbol, BACKWARD", Compatibility.Backward,
            Record("W", Field("unit", Enum("Unit", "KG", "LB"))), Record("W", Field("unit", Enum("Unit", "KG", "LB", "ST"))) },
    };

    [Theory]
    [MemberData(nameof(AllowedByLevel))]
    public async Task A_change_the_level_allows_becomes_the_next_version(string change, Compatibility level, string v1, string v2)
    {
        var subject = "allowed-" + Guid.NewGuid().ToString("N")[..8];
        using var client = RegistryFixture.Client(Server);
        await client.UpdateCompatibilityAsync(level, subject);
        await client.RegisterSchemaAsync(subject, Of(v1));
        await client.RegisterSchemaAsync(subject, Of(v2));
        Assert.True((await client.GetSubjectVersionsAsync(subject)).SequenceEqual([1, 2]), change);
    }

    [Fact]
    public async Task Backward_transitive_checks_every_earlier_version_where_backward_checks_the_latest()
    {
        // v3 reads v2 (no field a; v3's a has a default) but not v1 (a is an int there, a string in v3).
        string[] versions =
        [
            Record("T", Field("a", AvroInt)),
            Record("T", Field("b", AvroLong, "0")),
            Record("T", Field("a", AvroString, "\"x\"")),
        ];
        using var client = RegistryFixture.Client(Server);
        await client.UpdateCompatibilityAsync(Compatibility.Backward, "bt-plain");
        await client.UpdateCompatibilityAsync(Compatibility.BackwardTransitive, "bt-transitive");
        foreach (var v in versions) await client.RegisterSchemaAsync("bt-plain", Of(v));
        await client.RegisterSchemaAsync("bt-transitive", Of(versions[0]));
        await client.RegisterSchemaAsync("bt-transitive", Of(versions[1]));

        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.RegisterSchemaAsync("bt-transitive", Of(versions[2])));
        Assert.Equal(409, e.ErrorCode);
        Assert.Contains("version 1", e.Message);
        Assert.Equal([1, 2, 3], await client.GetSubjectVersionsAsync("bt-plain"));
        Assert.Equal([1, 2], await client.GetSubjectVersionsAsync("bt-transitive"));
    }

    [Fact]
    public async Task Forward_transitive_checks_every_earlier_version_where_forward_checks_the_latest()
    {
        // v2 reads v3 (its a has a default), v1 does not (its a has none and v3 has no a).
        string[] versions =
        [
            Record("F", Field("a", AvroInt)),
            Record("F", Field("a", AvroInt, "0"), Field("b", AvroInt)),
            Record("F", Field("b", AvroInt)),
        ];
        using var client = RegistryFixture.Client(Server);
        await client.UpdateCompatibilityAsync(Compatibility.Forward, "ft-plain");
        await client.UpdateCompatibilityAsync(Compatibility.ForwardTransitive, "ft-transitive");
        foreach (var v in versions) await client.RegisterSchemaAsync("ft-plain", Of(v));
        await client.RegisterSchemaAsync("ft-transitive", Of(versions[0]));
        await client.RegisterSchemaAsync("ft-transitive", Of(versions[1]));

        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.RegisterSchemaAsync("ft-transitive", Of(versions[2])));
        Assert.Equal(409, e.ErrorCode);
        Assert.Equal([1, 2, 3], await client.GetSubjectVersionsAsync("ft-plain"));
        Assert.Equal([1, 2], await client.GetSubjectVersionsAsync("ft-transitive"));
    }

    [Fact]
    public async Task A_subject_level_overrides_the_global_level()
    {
        await using var server = await SchemaRegistryServer.StartAsync(await RegistryFixture.NewDatabaseAsync(), "http://127.0.0.1:0");
        using var client = RegistryFixture.Client(server);
        Assert.Equal(Compatibility.Backward, await client.GetCompatibilityAsync());   // Confluent's default
        Assert.Equal(Compatibility.Full, await client.UpdateCompatibilityAsync(Compatibility.Full));
        Assert.Equal(Compatibility.None, await client.UpdateCompatibilityAsync(Compatibility.None, "loose-value"));
        Assert.Equal(Compatibility.Full, await RegistryFixture.Client(server).GetCompatibilityAsync());
        Assert.Equal(Compatibility.None, await RegistryFixture.Client(server).GetCompatibilityAsync("loose-value"));

        // A subject without a level of its own: 40408 unless the caller asks for the global default.
        var e = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.GetCompatibilityAsync("strict-value"));
        Assert.Equal(40408, e.ErrorCode);
        using var http = new HttpClient();
        var withDefault = JsonDocument.Parse(await http.GetStringAsync($"{server.Url}/config/strict-value?defaultToGlobal=true")).RootElement;
        Assert.Equal("FULL", withDefault.GetProperty("compatibilityLevel").GetString());

        var v1 = Record("W", Field("kg", AvroDouble));
        var v2 = Record("W", Field("kg", AvroString));
        foreach (var subject in new[] { "loose-value", "strict-value" }) await client.RegisterSchemaAsync(subject, Of(v1));
        await client.RegisterSchemaAsync("loose-value", Of(v2));
        var refused = await Assert.ThrowsAsync<SchemaRegistryException>(() => client.RegisterSchemaAsync("strict-value", Of(v2)));
        Assert.Equal(409, refused.ErrorCode);
        Assert.Contains("FULL", refused.Message);
    }

    [Fact]
    public async Task Refusals_carry_Confluents_error_codes()
    {
        using var client = RegistryFixture.Client(Server);
        await client.RegisterSchemaAsync("errors-value", Of(WeightV1));

        using var fresh = RegistryFixture.Client(Server);
        async Task<SchemaRegistryException> Refused(Func<Task> call) => await Assert.ThrowsAsync<SchemaRegistryException>(call);

        var noSubject = await Refused(() => fresh.GetLatestSchemaAsync("errors-missing-value"));
        Assert.Equal((40401, HttpStatusCode.NotFound), (noSubject.ErrorCode, noSubject.Status));
        Assert.Equal(40401, (await Refused(() => fresh.LookupSchemaAsync("errors-missing-value", Of(WeightV1), true))).ErrorCode);
        Assert.Equal(40401, (await Refused(() => fresh.GetSubjectVersionsAsync("errors-missing-value"))).ErrorCode);

        Assert.Equal(40402, (await Refused(() => fresh.GetRegisteredSchemaAsync("errors-value", 99))).ErrorCode);
        Assert.Equal(42202, (await Refused(() => fresh.GetRegisteredSchemaAsync("errors-value", 0))).ErrorCode);

        var noSchema = await Refused(() => fresh.GetSchemaAsync(int.MaxValue));
        Assert.Equal((40403, HttpStatusCode.NotFound), (noSchema.ErrorCode, noSchema.Status));
        Assert.Equal(40403, (await Refused(() => fresh.LookupSchemaAsync("errors-value", Of(WeightV2), true))).ErrorCode);

        var notJson = await Refused(() => client.RegisterSchemaAsync("errors-value", Of("{\"type\": \"record\", ")));
        Assert.Equal((42201, HttpStatusCode.UnprocessableEntity), (notJson.ErrorCode, notJson.Status));
        var badDefault = await Refused(() => client.RegisterSchemaAsync("errors-value", Of(Record("W", Field("n", AvroInt, "\"seven\"")))));
        Assert.Equal(42201, badDefault.ErrorCode);
        Assert.Contains("/fields/n", badDefault.Message);
        var protobuf = await Refused(() => client.RegisterSchemaAsync("errors-proto-value", new Schema("syntax = \"proto3\"; message M {}", SchemaType.Protobuf)));
        Assert.Equal(42201, protobuf.ErrorCode);
        Assert.Contains("PROTOBUF", protobuf.Message);
        var json = await Refused(() => client.RegisterSchemaAsync("errors-json-value", new Schema("{\"type\":\"object\"}", SchemaType.Json)));
        Assert.Contains("JSON", json.Message);

        // An unknown level cannot be sent with the client (its Compatibility is an enum).
        using var http = new HttpClient();
        var put = await http.PutAsync($"{Server.Url}/config/errors-value",
            new StringContent("{\"compatibility\":\"SIDEWAYS\"}", Encoding.UTF8, SchemaRegistryApi.ContentType));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, put.StatusCode);
        Assert.Equal(42203, JsonDocument.Parse(await put.Content.ReadAsStringAsync()).RootElement.GetProperty("error_code").GetInt32());
        Assert.Equal([1], await client.GetSubjectVersionsAsync("errors-value"));
    }

    [Fact]
    public async Task Verbose_compatibility_names_the_path_and_the_problem()
    {
        using var client = RegistryFixture.Client(Server);
        await client.RegisterSchemaAsync("verbose-value", Of(Record("W", Field("unit", Enum("Unit", "KG", "LB")))));
        var body = JsonSerializer.Serialize(new { schema = Record("W", Field("unit", Enum("Unit", "KG", "POUND"))) });

        // The client sends no verbose flag and reads only is_compatible; the messages are for people.
        using var http = new HttpClient();
        var answer = await http.PostAsync($"{Server.Url}/compatibility/subjects/verbose-value/versions/latest?verbose=true",
            new StringContent(body, Encoding.UTF8, SchemaRegistryApi.ContentType));
        Assert.Equal(SchemaRegistryApi.ContentType, answer.Content.Headers.ContentType?.MediaType);
        var json = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement;
        Assert.False(json.GetProperty("is_compatible").GetBoolean());
        var message = Assert.Single(json.GetProperty("messages").EnumerateArray()).GetString();
        Assert.Contains("/fields/unit/symbols", message);
        Assert.Contains("LB", message);

        var unknown = await http.GetAsync($"{Server.Url}/no/such/path");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(404, JsonDocument.Parse(await unknown.Content.ReadAsStringAsync()).RootElement.GetProperty("error_code").GetInt32());
    }

    [Fact]
    public async Task Ids_and_versions_survive_a_restart_on_the_same_database()
    {
        var cs = await RegistryFixture.NewDatabaseAsync();
        int id1, id2;
        await using (var first = await SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0"))
        {
            using var client = RegistryFixture.Client(first);
            id1 = await client.RegisterSchemaAsync("restart-value", Of(WeightV1));
            id2 = await client.RegisterSchemaAsync("restart-value", Of(WeightV2));
            await client.UpdateCompatibilityAsync(Compatibility.Full, "restart-value");
        }

        await using var second = await SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0");
        using var fresh = RegistryFixture.Client(second);
        Assert.Equal(global::Avro.Schema.Parse(WeightV1).ToString(), (await fresh.GetSchemaAsync(id1)).SchemaString);
        var latest = await fresh.GetLatestSchemaAsync("restart-value");
        Assert.Equal((id2, 2), (latest.Id, latest.Version));
        Assert.Equal(Compatibility.Full, await fresh.GetCompatibilityAsync("restart-value"));
        Assert.Equal(id1, await fresh.RegisterSchemaAsync("restart-other-value", Of(WeightV1)));
        Assert.Equal(id2 + 1, await fresh.RegisterSchemaAsync("restart-third-value", Of(Record("Other", Field("x", AvroInt)))));
    }

    [Fact]
    public async Task A_server_refuses_to_start_on_a_database_without_the_registry_migration()
    {
        var cs = Infrastructure.LocalServices.PostgresConnectionString(Infrastructure.LocalServices.NewDatabaseName("registry_bare"));
        await Runtime.Storage.PostgresMigrator.EnsureDatabaseAsync(cs);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0"));
        Assert.Contains("V0008__schema_registry", e.Message);
    }
}
