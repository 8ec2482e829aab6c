using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace StreamHealth.Tests.Gateway.Contract;

/// <summary>One operation of the gateway's OpenAPI document.</summary>
public sealed record ApiOperation(string Method, string PathTemplate, JsonElement Node)
{
    public string Id => Node.TryGetProperty("operationId", out var id) ? id.GetString()! : $"{Method} {PathTemplate}";
    public bool RequiresApiKey => Node.TryGetProperty("security", out var s) && s.GetArrayLength() > 0;
    public JsonElement? RequestBody => Node.TryGetProperty("requestBody", out var b) ? b : null;
    public IEnumerable<string> RequestContentTypes =>
        RequestBody is { } b && b.TryGetProperty("content", out var c) ? c.EnumerateObject().Select(p => p.Name) : [];
    public IEnumerable<JsonElement> Parameters =>
        Node.TryGetProperty("parameters", out var p) ? p.EnumerateArray() : [];
    public IEnumerable<(string Status, JsonElement Response)> Responses =>
        Node.GetProperty("responses").EnumerateObject().Select(p => (p.Name, p.Value));
    public override string ToString() => $"{Method} {PathTemplate}";
}

/// <summary>The gateway's OpenAPI document, and the check that a real response is one it documents: the status
/// is listed for the operation, the content type is one listed for that status, and a JSON body validates
/// against the documented schema (JSON Schema 2020-12, which OpenAPI 3.1 schemas are, by JsonSchema.Net).</summary>
public sealed class OpenApiContract
{
    private readonly JsonElement _root;
    private readonly string _definitions;
    private readonly ConcurrentDictionary<string, JsonSchema> _schemas = new();

    public OpenApiContract(string documentJson)
    {
        _root = JsonDocument.Parse(documentJson).RootElement.Clone();
        // Components become $defs of every schema built from the document, so that $refs resolve inside it.
        _definitions = _root.TryGetProperty("components", out var c) && c.TryGetProperty("schemas", out var s)
            ? RewriteRefs(s.GetRawText()) : "{}";
        Operations = [.. _root.GetProperty("paths").EnumerateObject()
            .SelectMany(path => path.Value.EnumerateObject()
                .Where(m => m.Name is "get" or "post" or "put" or "patch" or "delete")
                .Select(m => new ApiOperation(m.Name.ToUpperInvariant(), path.Name, m.Value)))];
    }

    public IReadOnlyList<ApiOperation> Operations { get; }

    public JsonElement Root => _root;

    public static async Task<OpenApiContract> FetchAsync(HttpClient client)
    {
        var response = await client.GetAsync("/openapi/v1.json");
        Assert.True(response.IsSuccessStatusCode, $"/openapi/v1.json: {(int)response.StatusCode}");
        return new OpenApiContract(await response.Content.ReadAsStringAsync());
    }

    public ApiOperation Operation(string method, string pathTemplate) =>
        Operations.Single(o => o.Method == method && o.PathTemplate == pathTemplate);

    /// <summary>A schema, with $refs resolved against the document's components.</summary>
    public JsonElement Resolve(JsonElement schema)
    {
        while (schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out var r))
            schema = _root.GetProperty("components").GetProperty("schemas").GetProperty(r.GetString()!.Split('/')[^1]);
        return schema;
    }

    /// <summary>Null when the response is documented and its body matches; otherwise what is wrong.</summary>
    public string? Check(ApiOperation operation, int status, string? contentType, string body)
    {
        var documented = operation.Responses.Where(r => r.Status == status.ToString() || r.Status == "default").Select(r => r.Response).ToList();
        if (documented.Count == 0)
            return $"{operation} answered {status}, which the document does not list (it lists {string.Join(", ", operation.Responses.Select(r => r.Status))})";
        var response = documented[0];
        if (!response.TryGetProperty("content", out var content))
            return body.Length == 0 ? null : $"{operation} {status}: the document declares no body but one came ({contentType})";
        var mediaType = contentType?.Split(';')[0].Trim();
        if (mediaType is null || !content.TryGetProperty(mediaType, out var media))
            return $"{operation} {status}: content type {mediaType ?? "(none)"} is not documented (documented: {string.Join(", ", content.EnumerateObject().Select(p => p.Name))})";
        if (!media.TryGetProperty("schema", out var schema))
            return $"{operation} {status} {mediaType}: the document gives no schema";
        if (!mediaType.EndsWith("json", StringComparison.Ordinal))
            return Resolve(schema).TryGetProperty("type", out var t) && t.GetString() == "string" ? null
                : $"{operation} {status} {mediaType}: a non-JSON body needs a string schema";
        JsonElement instance;
        try { instance = JsonDocument.Parse(body).RootElement; }
        catch (JsonException e) { return $"{operation} {status}: the body is not JSON ({e.Message})"; }
        var compiled = _schemas.GetOrAdd(schema.GetRawText(), Build);
        var result = compiled.Evaluate(instance, new EvaluationOptions { OutputFormat = OutputFormat.List });
        if (result.IsValid) return null;
        var errors = (result.Details ?? []).Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key} {e.Value}")).Take(5);
        return $"{operation} {status}: the body does not match the documented schema: {string.Join("; ", errors)}\nbody: {Shorten(body)}";
    }

    private JsonSchema Build(string schemaJson)
    {
        var schema = JsonNode.Parse(RewriteRefs(schemaJson))!.AsObject();
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema";
        schema["$defs"] = JsonNode.Parse(_definitions);
        return JsonSchema.FromText(schema.ToJsonString(), baseUri: new Uri($"https://streamhealth.test/schemas/{Guid.NewGuid():N}"));
    }

    private static string RewriteRefs(string json) => json.Replace("#/components/schemas/", "#/$defs/", StringComparison.Ordinal);

    public static string Shorten(string text) => text.Length <= 600 ? text : text[..600] + "…";
}
