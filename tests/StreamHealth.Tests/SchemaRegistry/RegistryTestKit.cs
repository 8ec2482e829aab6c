using Confluent.SchemaRegistry;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Storage;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>A migrated database of its own and the embedded registry over it, for one test class; tests that change
/// the global level or restart the server make their own with <see cref="NewDatabaseAsync"/>.</summary>
public sealed class RegistryFixture : IAsyncLifetime
{
    public string ConnectionString { get; private set; } = "";
    public SchemaRegistryServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        ConnectionString = await NewDatabaseAsync();
        Server = await SchemaRegistryServer.StartAsync(ConnectionString, "http://127.0.0.1:0");
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public static async Task<string> NewDatabaseAsync()
    {
        var cs = LocalServices.PostgresConnectionString(LocalServices.NewDatabaseName("registry"));
        await PostgresMigrator.MigrateAsync(cs);
        return cs;
    }

    /// <summary>A client with empty caches: what it answers came from the server.</summary>
    public static CachedSchemaRegistryClient Client(SchemaRegistryServer server) =>
        new(new SchemaRegistryConfig { Url = server.Url });

    /// <summary>A client that sends each request once: the client retries a 5xx (a store conflict would be one) by
    /// default, which would hide a race in the server.</summary>
    public static CachedSchemaRegistryClient ClientWithoutRetries(SchemaRegistryServer server) =>
        new(new SchemaRegistryConfig { Url = server.Url, MaxRetries = 1 });
}

/// <summary>Avro schema texts for the registry tests.</summary>
public static class Avsc
{
    /// <summary>A record of the given fields, each written as JSON (<c>{"name":"a","type":"int"}</c>).</summary>
    public static string Record(string name, params string[] fields) =>
        $$"""{"type":"record","name":"{{name}}","namespace":"streamhealth.test","fields":[{{string.Join(",", fields)}}]}""";

    public static string Field(string name, string type) => $$"""{"name":"{{name}}","type":{{type}}}""";

    public static string Field(string name, string type, string defaultJson) => $$"""{"name":"{{name}}","type":{{type}},"default":{{defaultJson}}}""";

    public static string Enum(string name, params string[] symbols) =>
        $$"""{"type":"enum","name":"{{name}}","symbols":[{{string.Join(",", symbols.Select(s => $"\"{s}\""))}}]}""";

    public const string AvroInt = "\"int\"";
    public const string AvroLong = "\"long\"";
    public const string AvroDouble = "\"double\"";
    public const string AvroString = "\"string\"";

    /// <summary>Version 1 of a weight measurement.</summary>
    public static readonly string WeightV1 = Record("Weight",
        Field("user_id", AvroString), Field("kg", AvroDouble), Field("at_ms", AvroLong));

    /// <summary>Version 2: adds a field with a default (BACKWARD, FORWARD and FULL compatible with version 1).</summary>
    public static readonly string WeightV2 = Record("Weight",
        Field("user_id", AvroString), Field("kg", AvroDouble), Field("at_ms", AvroLong), Field("source", AvroString, "\"scale\""));

    /// <summary>The client's schema object for an Avro text.</summary>
    public static Schema Of(string text) => new(text, SchemaType.Avro);
}
