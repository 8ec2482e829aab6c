using Confluent.SchemaRegistry;
using StreamHealth.Schemas;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>Registers every topic's key and value schema under its TopicNameStrategy subjects (<c>{topic}-key</c>,
/// <c>{topic}-value</c>) with Confluent's client: the deploy step `streamhealth schemas register` against Confluent Schema
/// Registry in production, and what the embedded stack does at start-up. The registry enforces the subject's
/// compatibility level: a schema it refuses (409, 42201) is reported with the registry's reasons and registers nothing
/// for that subject; the others still register.</summary>
public static class SchemaRegistration
{
    /// <summary>One subject's result: its id and version, or why the registry refused it.</summary>
    public sealed record Outcome(string Subject, int Id, int Version, string? Refused)
    {
        public override string ToString() =>
            Refused is null ? $"{Subject}: id {Id}, version {Version}" : $"{Subject}: refused: {Refused}";
    }

    /// <summary>The catalogue's schemas (<see cref="AvroSchemas.All"/>) as (subject, schema text) pairs.</summary>
    public static IEnumerable<(string Subject, string Schema)> CatalogueSubjects() =>
        AvroSchemas.All.SelectMany(t => new[] { (KeySubject(t.Topic), t.Key.ToString()), (ValueSubject(t.Topic), t.Value.ToString()) });

    public static string KeySubject(string topic) => topic + "-key";
    public static string ValueSubject(string topic) => topic + "-value";

    /// <summary>Registers each schema; an unreachable registry throws (<see cref="HttpRequestException"/>) naming
    /// its URL, a refused schema is an <see cref="Outcome"/> with the reason.</summary>
    /// <param name="levels">Compatibility levels to set on subjects before registering (SchemaRegistry:Compatibility).</param>
    public static async Task<IReadOnlyList<Outcome>> RegisterAsync(ISchemaRegistryClient client, IEnumerable<(string Subject, string Schema)> subjects,
        IReadOnlyDictionary<string, string>? levels = null)
    {
        var outcomes = new List<Outcome>();
        foreach (var (subject, text) in subjects)
        {
            var schema = new Schema(text, SchemaType.Avro);
            try
            {
                if (levels is not null && levels.TryGetValue(subject, out var level) && Configuration.SchemaRegistryOptions.TryParseLevel(level, out var parsed))
                    await client.UpdateCompatibilityAsync(parsed, subject);
                var id = await client.RegisterSchemaAsync(subject, schema, normalize: false);
                var registered = await client.LookupSchemaAsync(subject, schema, ignoreDeletedSchemas: true, normalize: false);
                outcomes.Add(new Outcome(subject, id, registered.Version, null));
            }
            catch (SchemaRegistryException e) when (e.ErrorCode is 409 or 42201 or 422)
            {
                outcomes.Add(new Outcome(subject, 0, 0, e.Message.ReplaceLineEndings(" ")));
            }
        }
        return outcomes;
    }
}

/// <summary>The embedded stack's registry: the stand-in server at <c>SchemaRegistry:Url</c>, on the stack's PostgreSQL,
/// with the catalogue registered. Hosted by the process that runs the embedded broker (`streamhealth kafka`, `up`).</summary>
public static class EmbeddedSchemaRegistry
{
    public static async Task<SchemaRegistryServer> StartAsync(Configuration.SchemaRegistryOptions options, string postgresConnectionString,
        Microsoft.Extensions.Logging.ILoggerFactory logs)
    {
        await Storage.PostgresMigrator.MigrateAsync(postgresConnectionString);
        var url = new Uri(options.Url);
        SchemaRegistryServer server;
        try
        {
            server = await SchemaRegistryServer.StartAsync(postgresConnectionString, $"http://{url.Host}:{url.Port}", logs);
        }
        catch (IOException e)
        {
            throw new Configuration.ConfigurationException($"SchemaRegistry:Url = {options.Url}: the embedded registry cannot listen there ({e.Message})");
        }
        try
        {
            using var client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = server.Url });
            var refused = (await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects(), options.Compatibility))
                .Where(o => o.Refused is not null).ToList();
            if (refused.Count > 0)
                throw new Configuration.ConfigurationException(
                    $"the schema registry at {server.Url} refused {refused.Count} of the catalogue's schemas (an incompatible change to schemas/avro?): " +
                    string.Join("; ", refused));
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}
