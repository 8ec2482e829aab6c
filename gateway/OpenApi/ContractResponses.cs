using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.OpenApi;
using StreamHealth.Gateway.Apis;

namespace StreamHealth.Gateway.OpenApi;

/// <summary>The statuses an operation gets from the shared pipeline rather than from its handler, added to
/// every operation they apply to so that the document lists every status a client can receive: 400 for any
/// input (a route or query value, a body that is not JSON or has a field of the wrong type:
/// <see cref="RequestProblems"/>), 413 for any body, 415 for a JSON-only body, 429 wherever the chained rate
/// limits apply (401 is added by <see cref="ApiKeyAuthentication"/>). Statuses a handler decides are declared
/// beside its endpoint. Also gives a schema to plain-text responses (CSV, SVG), which minimal APIs leave without.</summary>
internal static class ContractResponses
{
    /// <summary>Request bodies their handlers read themselves with snake_case names (the global JSON options
    /// that generate schemas are camelCase); renaming here keeps the document true to what the handler reads.</summary>
    private static readonly HashSet<Type> SnakeCaseBodies =
        [typeof(WeightCommandsApi.MeasurementRequest), typeof(WeightCommandsApi.InitializeRequest)];

    internal static void Describe(OpenApiOptions options)
    {
        options.AddOperationTransformer(async (operation, context, ct) =>
        {
            var takesInput = operation.RequestBody is not null || operation.Parameters is { Count: > 0 };
            if (takesInput)
                await AddProblemAsync(operation, context, StatusCodes.Status400BadRequest, typeof(HttpValidationProblemDetails), ct);
            // Kestrel answers a request line over its limit (8 KiB) before any endpoint runs, without a body.
            if (operation.Parameters is { Count: > 0 })
            {
                operation.Responses ??= new OpenApiResponses();
                operation.Responses.TryAdd("414", new OpenApiResponse { Description = "URI Too Long (the server's request-line limit; no body)" });
            }
            if (operation.RequestBody?.Content is { } body)
            {
                await AddProblemAsync(operation, context, StatusCodes.Status413PayloadTooLarge, typeof(ProblemDetails), ct);
                if (body.Keys.All(type => type == "application/json"))
                    await AddProblemAsync(operation, context, StatusCodes.Status415UnsupportedMediaType, typeof(ProblemDetails), ct);
            }
            // Every endpoint is under the chained rate limits (ApiRateLimiting) except those that opt out (the health probes).
            if (!context.Description.ActionDescriptor.EndpointMetadata.OfType<DisableRateLimitingAttribute>().Any())
                await AddProblemAsync(operation, context, StatusCodes.Status429TooManyRequests, typeof(ProblemDetails), ct);
            // Produces(200, contentType: "text/csv") without a CLR type leaves the response without content.
            foreach (var declared in context.Description.ActionDescriptor.EndpointMetadata.OfType<IProducesResponseTypeMetadata>())
            {
                var key = declared.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (operation.Responses is null || !operation.Responses.TryGetValue(key, out var declaredResponse)
                    || declaredResponse is not OpenApiResponse response) continue;
                foreach (var mediaType in declared.ContentTypes)
                {
                    if (!mediaType.StartsWith("text/", StringComparison.Ordinal) && mediaType != "image/svg+xml") continue;
                    response.Content ??= new Dictionary<string, OpenApiMediaType>();
                    if (!response.Content.TryGetValue(mediaType, out var media) || media.Schema is null)
                        response.Content[mediaType] = new OpenApiMediaType { Schema = new OpenApiSchema { Type = JsonSchemaType.String } };
                }
            }
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            if (!SnakeCaseBodies.Contains(context.JsonTypeInfo.Type) || schema.Properties is not { } properties) return Task.CompletedTask;
            foreach (var name in properties.Keys.ToList())
            {
                var snake = System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(name);
                if (snake == name) continue;
                properties[snake] = properties[name];
                properties.Remove(name);
                if (schema.Required?.Remove(name) == true) schema.Required.Add(snake);
            }
            return Task.CompletedTask;
        });
    }

    /// <summary>Adds a problem-details response for <paramref name="status"/> unless the endpoint declared one.</summary>
    internal static async Task AddProblemAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, int status, Type problemType,
        CancellationToken ct)
    {
        operation.Responses ??= new OpenApiResponses();
        var key = status.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (operation.Responses.ContainsKey(key)) return;
        var schema = await context.GetOrCreateSchemaAsync(problemType, null, ct);
        operation.Responses[key] = new OpenApiResponse
        {
            Description = ReasonPhrases.GetReasonPhrase(status),
            Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = new() { Schema = schema } },
        };
    }
}
