using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>The subset of Confluent Schema Registry's REST API that Confluent's .NET client (CachedSchemaRegistryClient
/// 2.16) and its Avro serializers use, so the embedded (local, dev, test) stack can run the Confluent wire format without
/// Confluent's Java server. Requests and answers as the client sends and reads them (its RestService): bodies and
/// answers in <c>application/vnd.schemaregistry.v1+json</c>, refusals as <c>{"error_code": N, "message": "..."}</c> with
/// Confluent's codes. AVRO schemas only; no schema references, deletion, contexts, metadata, rule sets or associations
/// (it answers that a topic has none). The query flags the client adds (normalize, deleted, subject, format, ...) are
/// accepted and do not change the answer.</summary>
public static class SchemaRegistryApi
{
    public const string ContentType = "application/vnd.schemaregistry.v1+json";

    // Property names exactly as written (error_code, is_compatible, compatibilityLevel): no naming policy.
    // Schemas are JSON inside a JSON string: escape only what JSON requires (the default encoder writes every quote
    // as \u0022, valid but unreadable for a person reading a subject with curl). Nothing here is rendered as HTML.
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.General)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void MapSchemaRegistryApi(this IEndpointRouteBuilder app, SchemaRegistryStore store, ILogger? log = null)
    {
        log ??= NullLogger.Instance;

        // Register: {"schema": "...", "schemaType": "AVRO", "references": []} -> {"id": N}.
        app.MapPost("/subjects/{subject}/versions", (string subject, HttpContext http) => Answer(http, log, async ct =>
        {
            var schema = await ReadSchemaAsync(http, ct);
            var (id, _) = await store.RegisterAsync(subject, schema, ct);
            return new { id };
        }));

        // Lookup: is this schema a version of the subject -> {subject, id, version, schema}.
        app.MapPost("/subjects/{subject}", (string subject, HttpContext http) => Answer(http, log, async ct =>
        {
            var schema = await ReadSchemaAsync(http, ct);
            var found = await store.LookupAsync(subject, schema, ct);
            if (found is null)
            {
                if ((await store.VersionsAsync(subject, ct)).Count == 0) throw SchemaRegistryError.SubjectNotFound(subject);
                throw SchemaRegistryError.SchemaNotFound("Schema not found");
            }
            return Registered(found);
        }));

        app.MapGet("/schemas/ids/{id:int}", (int id, HttpContext http) => Answer(http, log, async ct =>
        {
            var text = await store.SchemaByIdAsync(id, ct) ?? throw SchemaRegistryError.SchemaNotFound($"Schema {id} not found");
            return new { schema = text };   // schemaType left out: AVRO, as Confluent answers
        }));

        app.MapGet("/schemas/ids/{id:int}/versions", (int id, HttpContext http) => Answer(http, log, async ct =>
        {
            var uses = await store.SubjectVersionsOfIdAsync(id, ct);
            if (uses.Count == 0) throw SchemaRegistryError.SchemaNotFound($"Schema {id} not found");
            return uses.Select(u => new { subject = u.Subject, version = u.Version }).ToList();
        }));

        app.MapGet("/subjects", Handler(http => Answer(http, log, async ct => await store.SubjectsAsync(ct))));

        app.MapGet("/subjects/{subject}/versions", (string subject, HttpContext http) => Answer(http, log, async ct =>
        {
            var versions = await store.VersionsAsync(subject, ct);
            if (versions.Count == 0) throw SchemaRegistryError.SubjectNotFound(subject);
            return versions.Select(v => v.Version).ToList();
        }));

        app.MapGet("/subjects/{subject}/versions/{version}", (string subject, string version, HttpContext http) => Answer(http, log, async ct =>
        {
            var wanted = ParseVersion(version);
            var found = await store.VersionAsync(subject, wanted, ct);
            if (found is not null) return Registered(found);
            if ((await store.VersionsAsync(subject, ct)).Count == 0) throw SchemaRegistryError.SubjectNotFound(subject);
            throw SchemaRegistryError.VersionNotFound(subject, wanted ?? -1);
        }));

        app.MapGet("/config", Handler(http => Answer(http, log, async ct =>
            new { compatibilityLevel = (await store.EffectiveLevelAsync(null, ct)).ToWire() })));

        app.MapPut("/config", Handler(http => Answer(http, log, async ct =>
        {
            var level = await ReadLevelAsync(http, ct);
            await store.SetLevelAsync(null, level, ct);
            return new { compatibility = level.ToWire() };
        })));

        // The client's GetCompatibilityAsync(subject) sends no defaultToGlobal: a subject without its own level is 40408,
        // as Confluent answers.
        app.MapGet("/config/{subject}", (string subject, HttpContext http) => Answer(http, log, async ct =>
        {
            var level = await store.ConfiguredLevelAsync(subject, ct);
            if (level is null && Flag(http, "defaultToGlobal")) level = await store.EffectiveLevelAsync(null, ct);
            if (level is null) throw SchemaRegistryError.SubjectNotConfigured(subject);
            return new { compatibilityLevel = level.Value.ToWire() };
        }));

        app.MapPut("/config/{subject}", (string subject, HttpContext http) => Answer(http, log, async ct =>
        {
            var level = await ReadLevelAsync(http, ct);
            await store.SetLevelAsync(subject, level, ct);
            return new { compatibility = level.ToWire() };
        }));

        app.MapPost("/compatibility/subjects/{subject}/versions/{version}", (string subject, string version, HttpContext http) =>
            Answer(http, log, ct => CompatibilityAsync(store, http, subject, ParseVersion(version), againstOne: !IsLatest(version), ct)));

        // The 2.16 serdes' default subject name strategy (Associated) first asks which subject is associated with the topic
        // (GET /associations/resources/{cluster id or -}/{topic}?resourceType=topic&associationType=value) and falls back to
        // <topic>-key / <topic>-value when there is none. This registry keeps no associations: none, always.
        app.MapGet("/associations/resources/{resourceNamespace}/{resourceName}", (string resourceNamespace, string resourceName, HttpContext http) =>
            Answer(http, log, _ => Task.FromResult<object>(Array.Empty<object>())));

        // Without a version: against the versions the subject's level names, as registration would check.
        app.MapPost("/compatibility/subjects/{subject}/versions", (string subject, HttpContext http) =>
            Answer(http, log, ct => CompatibilityAsync(store, http, subject, null, againstOne: false, ct)));
    }

    // A handler of the context alone would be taken for a RequestDelegate, which drops the IResult it returns.
    private static Delegate Handler(Func<HttpContext, Task<IResult>> handle) => handle;

    /// <summary>Confluent's answer to an unknown path (its server's 404), for servers that serve only this API.</summary>
    public static IResult NotFound() =>
        Results.Json(new { error_code = 404, message = "HTTP 404 Not Found" }, Json, ContentType, StatusCodes.Status404NotFound);

    private static async Task<object> CompatibilityAsync(SchemaRegistryStore store, HttpContext http, string subject, int? version, bool againstOne, CancellationToken ct)
    {
        var schema = await ReadSchemaAsync(http, ct);
        var level = await store.EffectiveLevelAsync(subject, ct);
        var versions = await store.VersionsAsync(subject, ct);
        IReadOnlyList<string> problems;
        if (againstOne)
        {
            // One named version: checked in the level's directions, transitive or not.
            if (versions.Count == 0) throw SchemaRegistryError.SubjectNotFound(subject);
            var old = versions.FirstOrDefault(v => v.Version == version) ?? throw SchemaRegistryError.VersionNotFound(subject, version!.Value);
            problems = AvroCompatibility.Check(level, schema.Schema, [(old.Version, Avro.Schema.Parse(old.Schema))]);
        }
        else
        {
            // latest: the latest, or all versions when the level is transitive; a subject with none accepts anything.
            problems = AvroCompatibility.Check(level, schema.Schema, versions.Select(v => (v.Version, Avro.Schema.Parse(v.Schema))).ToList());
        }
        return Flag(http, "verbose")
            ? new { is_compatible = problems.Count == 0, messages = problems }
            : (object)new { is_compatible = problems.Count == 0 };
    }

    private static object Registered(SchemaRegistryStore.SubjectVersion v) =>
        new { subject = v.Subject, id = v.Id, version = v.Version, schema = v.Schema };

    /// <summary>Runs a handler and writes its answer, or the refusal it threw, in the registry's JSON.</summary>
    private static async Task<IResult> Answer(HttpContext http, ILogger log, Func<CancellationToken, Task<object>> handle)
    {
        try
        {
            var value = await handle(http.RequestAborted);
            return Results.Json(value, Json, ContentType, StatusCodes.Status200OK);
        }
        catch (SchemaRegistryError e)
        {
            return Refuse(e);
        }
        catch (NpgsqlException e)
        {
            // Confluent's clients retry a 500: a store outage that passes is ridden out.
            log.LogWarning(e, "schema registry: store error on {Method} {Path}", http.Request.Method, http.Request.Path);
            return Refuse(SchemaRegistryError.StoreError(e.Message));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Confluent answers what it did not foresee as error_code 500 (50001 is kept for the store).
            log.LogError(e, "schema registry: failed on {Method} {Path}", http.Request.Method, http.Request.Path);
            return Refuse(new SchemaRegistryError(StatusCodes.Status500InternalServerError, 500, e.Message));
        }
    }

    private static IResult Refuse(SchemaRegistryError e) =>
        Results.Json(new { error_code = e.ErrorCode, message = e.Message }, Json, ContentType, e.HttpStatus);

    /// <summary>Reads a schema request body (the client's Schema object: schema, schemaType, references, metadata,
    /// ruleSet), whatever the content type it is declared with.</summary>
    private static async Task<AvroSchemaText> ReadSchemaAsync(HttpContext http, CancellationToken ct)
    {
        using var body = await ReadBodyAsync(http, ct);
        var root = body.RootElement;
        var type = root.TryGetProperty("schemaType", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        if (type is not null && type != "AVRO")
            throw SchemaRegistryError.InvalidSchema($"Invalid schema: schema type {type} is not supported by this registry (AVRO only)");
        if (root.TryGetProperty("references", out var refs) && refs.ValueKind == JsonValueKind.Array && refs.GetArrayLength() > 0)
            throw SchemaRegistryError.InvalidSchema("Invalid schema: schema references are not supported by this registry");
        foreach (var unsupported in new[] { "metadata", "ruleSet" })
            if (root.TryGetProperty(unsupported, out var p) && p.ValueKind != JsonValueKind.Null &&
                !(p.ValueKind == JsonValueKind.Object && !p.EnumerateObject().Any()))
                throw SchemaRegistryError.InvalidSchema($"Invalid schema: {unsupported} is not supported by this registry");
        if (!root.TryGetProperty("schema", out var text) || text.ValueKind != JsonValueKind.String)
            throw SchemaRegistryError.InvalidSchema("Invalid schema: the request has no \"schema\" string");
        return AvroSchemaText.Parse(text.GetString());
    }

    /// <summary>Reads <c>{"compatibility": "FULL"}</c> (Confluent's own servers also accept "compatibilityLevel").</summary>
    private static async Task<CompatibilityLevel> ReadLevelAsync(HttpContext http, CancellationToken ct)
    {
        using var body = await ReadBodyAsync(http, ct);
        string? text = null;
        foreach (var name in new[] { "compatibility", "compatibilityLevel" })
            if (body.RootElement.TryGetProperty(name, out var p) && p.ValueKind == JsonValueKind.String) text = p.GetString();
        return CompatibilityLevels.TryParse(text, out var level) ? level : throw SchemaRegistryError.InvalidCompatibilityLevel(text);
    }

    private static async Task<JsonDocument> ReadBodyAsync(HttpContext http, CancellationToken ct)
    {
        JsonDocument body;
        try
        {
            // Read whatever the declared content type: the client sends application/vnd.schemaregistry.v1+json.
            body = await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: ct);
        }
        catch (JsonException e)
        {
            throw SchemaRegistryError.BadRequest($"The request body is not JSON: {e.Message}");
        }
        if (body.RootElement.ValueKind == JsonValueKind.Object) return body;
        body.Dispose();
        throw SchemaRegistryError.BadRequest("The request body is not a JSON object");
    }

    /// <summary>"latest" (or -1) is null; 1 to 2^31-1 is that version; anything else is 42202.</summary>
    private static int? ParseVersion(string version)
    {
        if (IsLatest(version)) return null;
        return int.TryParse(version, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) && v >= 1
            ? v
            : throw SchemaRegistryError.InvalidVersion(version);
    }

    private static bool IsLatest(string version) => version is "latest" or "-1";

    private static bool Flag(HttpContext http, string name) =>
        bool.TryParse(http.Request.Query[name].ToString(), out var on) && on;
}
