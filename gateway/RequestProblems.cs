using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using StreamHealth.Runtime.Streams;
using StackExchange.Redis;

namespace StreamHealth.Gateway;

/// <summary>The last line between an exception and the client: what a client's input caused (a body that is
/// not JSON, a value of the wrong type, a body over a limit, a value PostgreSQL refuses) becomes a 4xx problem
/// naming the field where it can, and an unreachable Kafka, PostgreSQL or Redis a 503 with Retry-After, so
/// that no input a client can send is answered 5xx and no message carries a .NET type name or stack trace.
/// Handlers still validate first; a 400 that arrives here from PostgreSQL is logged as a missing check.</summary>
internal sealed partial class RequestProblems(IProblemDetailsService problems, ILogger<RequestProblems> log) : IExceptionHandler
{
    /// <summary>Seconds a client is told to wait before retrying after a backing service was unreachable.</summary>
    public const int RetryAfterSeconds = 5;

    public async ValueTask<bool> TryHandleAsync(HttpContext http, Exception exception, CancellationToken ct)
    {
        if (Describe(exception) is not { } problem) return false;
        if (problem.Status >= 500)
            log.LogWarning("{Method} {Path}: {Service} unreachable ({Error})", http.Request.Method, http.Request.Path,
                problem.Title, exception.GetType().Name);
        else if (exception is PostgresException pg)
            log.LogWarning("{Method} {Path}: PostgreSQL refused a client's value ({SqlState}); the handler should have rejected it",
                http.Request.Method, http.Request.Path, pg.SqlState);
        if (http.Response.HasStarted) return false;
        http.Response.StatusCode = problem.Status!.Value;
        if (problem.Status == StatusCodes.Status503ServiceUnavailable) http.Response.Headers.RetryAfter = RetryAfterSeconds.ToString();
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = http, ProblemDetails = problem });
    }

    /// <summary>The problem for an exception a client or an outage caused; null for a bug (left a 500).</summary>
    internal static ProblemDetails? Describe(Exception exception) => exception switch
    {
        BadHttpRequestException { InnerException: JsonException json } => NotJson(json),
        JsonException json => NotJson(json),
        BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } => new ProblemDetails
        {
            Status = StatusCodes.Status413PayloadTooLarge, Title = "Payload too large",
            Detail = "The request body is larger than this endpoint accepts.",
        },
        BadHttpRequestException { StatusCode: StatusCodes.Status415UnsupportedMediaType } e => new ProblemDetails
        {
            Status = StatusCodes.Status415UnsupportedMediaType, Title = "Unsupported content type",
            Detail = Scrub(e.Message) + " Send the body as application/json.",
        },
        BadHttpRequestException e => new ProblemDetails { Status = e.StatusCode, Title = "Bad request", Detail = Scrub(e.Message) },
        // The form reader's own: no boundary, a malformed part, a section over its limits.
        InvalidDataException e => new ProblemDetails
        {
            Status = StatusCodes.Status400BadRequest, Title = "The form body cannot be read", Detail = e.Message,
        },
        IOException e when e.Message.StartsWith("Unexpected end of Stream", StringComparison.Ordinal) => new ProblemDetails
        {
            Status = StatusCodes.Status400BadRequest, Title = "The form body cannot be read",
            Detail = "The multipart body ended before its closing boundary.",
        },
        // Class 22 (data exception: a NUL byte, a value out of a column's range) and 23 (integrity) come from
        // values a client sent that a handler let through; the client can fix them, so they are not 5xx.
        PostgresException { SqlState: var state } e when state.StartsWith("22", StringComparison.Ordinal) => new ProblemDetails
        {
            Status = StatusCodes.Status400BadRequest, Title = "A value in the request cannot be stored",
            Detail = $"PostgreSQL refused a value of this request: {e.MessageText}.",
        },
        PostgresException { SqlState: var state } e when state.StartsWith("23", StringComparison.Ordinal) => new ProblemDetails
        {
            Status = StatusCodes.Status409Conflict, Title = "The request conflicts with stored data", Detail = e.MessageText,
        },
        PostgresException { SqlState: var state } when !IsOutage(state) => null,
        NpgsqlException or SocketException => Unavailable("PostgreSQL"),
        RedisConnectionException or RedisTimeoutException => Unavailable("Redis"),
        KafkaException => Unavailable("Kafka"),
        // A schema id not cached yet while the registry cannot answer (after the client's retries with backoff).
        _ when ConfluentWire.IsRegistryUnavailable(exception) => Unavailable("Schema Registry"),
        _ => null,
    };

    /// <summary>SQLSTATE classes of a server that cannot serve now (08 connection, 53 resources, 57 operator
    /// intervention such as a restart, 58 system error); any other class is a bug, left a 500.</summary>
    private static bool IsOutage(string sqlState) => sqlState[..2] is "08" or "53" or "57" or "58";

    private static ProblemDetails Unavailable(string service) => new()
    {
        Status = StatusCodes.Status503ServiceUnavailable, Title = service,
        Detail = $"{service} did not answer; nothing was changed by this request. Retry after {RetryAfterSeconds} s.",
    };

    /// <summary>A body that is not JSON, or a field of the wrong JSON type: 400 naming the field by its JSON path.
    /// JsonException's own message names the .NET target type, so only its position is reused.</summary>
    private static HttpValidationProblemDetails NotJson(JsonException json)
    {
        var field = json.Path is { Length: > 2 } path ? path.TrimStart('$', '.') : "body";
        var where = json.LineNumber is { } line ? $" (line {line + 1}, byte {json.BytePositionInLine + 1})" : "";
        return new HttpValidationProblemDetails(new Dictionary<string, string[]>
        {
            [field] = [field == "body"
                ? $"the body is not a JSON value of the documented shape{where}"
                : $"{field} has the wrong JSON type or is not valid JSON{where}; see the OpenAPI document for its type"],
        })
        {
            Status = StatusCodes.Status400BadRequest, Title = "The request body is not valid for this endpoint",
        };
    }

    /// <summary>Binding messages quote a parameter as "TypeName name": keep the name, drop the .NET type.</summary>
    private static string Scrub(string message) => ParameterQuote().Replace(message, "\"$1\"");

    [GeneratedRegex("\"[\\w.`\\[\\]<>, ]+ (\\w+)\"")]
    private static partial Regex ParameterQuote();
}
