using System.Text.Json;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>The JSON body rules every command endpoint shares: the body is read as a document, then field by field, so
/// that a missing or mistyped field is a 400 naming it in the API's own terms (no .NET type names, no coercion of "80").</summary>
internal static class JsonBodyInput
{
    /// <summary>The body as a JSON object, or the problem to answer. Values are then read field by field, so that a
    /// missing or mistyped field is a 400 naming it in the API's own terms (no .NET type names, no coercion of "80").</summary>
    public static async Task<(JsonElement Body, IResult? Problem)> ReadAsync(HttpRequest http, int MaxBodyBytes, CancellationToken ct)
    {
        if (http.ContentLength > MaxBodyBytes)
        {
            // The body is left unread, and Kestrel will not drain more than the limit: it closes the connection after
            // this answer. Saying so keeps the client from sending its next request on a connection about to close.
            http.HttpContext.Response.Headers.Connection = "close";
            return (default, TypedResults.Problem($"request body is {http.ContentLength} bytes; the limit is {MaxBodyBytes}",
                statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large"));
        }
        try
        {
            using var document = await JsonDocument.ParseAsync(http.Body, new JsonDocumentOptions { MaxDepth = 8 }, ct);
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object ? (root.Clone(), null) : (default, Invalid("body", $"body must be a JSON object, not {Kind(root)}"));
        }
        catch (JsonException e)
        {
            return (default, Invalid("body", $"body is not valid JSON: {e.Message.Split(" Path:")[0]}"));
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            http.HttpContext.Response.Headers.Connection = "close";
            return (default, TypedResults.Problem($"request body exceeds {MaxBodyBytes} bytes", statusCode: StatusCodes.Status413PayloadTooLarge, title: "Payload too large"));
        }
    }

    public static IResult Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] });

    /// <summary>A JSON value's kind as an error names it.</summary>
    public static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    /// <summary>The string at <paramref name="field"/>; null (with an error when required) if missing, null or not a string.</summary>
    public static string? String(JsonElement body, string field, bool required, Dictionary<string, string[]> errors)
    {
        if (!body.TryGetProperty(field.AsSpan(field.LastIndexOf('.') + 1), out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (required) errors[field] = [$"{field} is required"];
            return null;
        }
        if (value.ValueKind == JsonValueKind.String)
        {
            try
            {
                return value.GetString();
            }
            catch (InvalidOperationException)
            {
                // JSON may escape a lone surrogate ("\ud861"), which is no Unicode text: UTF-8 (PostgreSQL, Redis, Kafka) cannot hold it.
                errors[field] = [$"{field} contains an unpaired surrogate escape; text must be valid Unicode"];
                return null;
            }
        }
        errors[field] = [$"{field} must be a string, not {Kind(value)}"];
        return null;
    }

    public static string? RequiredId(JsonElement body, string field, Dictionary<string, string[]> errors)
    {
        var id = String(body, field, required: true, errors);
        if (id is not null && InputRules.CheckId(field, id) is { } problem) errors[field] = [problem];
        return id;
    }

    public static string? OptionalId(JsonElement body, string field, Dictionary<string, string[]> errors)
    {
        var id = String(body, field, required: false, errors);
        if (id is null) return null;
        if (InputRules.CheckId(field, id) is { } problem)
        {
            errors[field] = [problem];
            return null;
        }
        return id;
    }

    /// <summary>The finite number at <paramref name="field"/>; null (with an error when required) if missing or null, and
    /// with an error if it is a string ("80" is not coerced), another JSON type or beyond a double.</summary>
    public static double? Number(JsonElement body, string field, bool required, Dictionary<string, string[]> errors)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (required) errors[field] = [$"{field} is required"];
            return null;
        }
        if (value.ValueKind != JsonValueKind.Number)
            errors[field] = [$"{field} must be a number, not {Kind(value)}"];
        else if (!value.TryGetDouble(out var number) || !double.IsFinite(number))
            errors[field] = [$"{field} = {InputRules.Quote(value.GetRawText())}: must be a finite number"];
        else return number;
        return null;
    }

    /// <summary>The event time at <paramref name="field"/> (required: an ISO-8601 date-time with an offset, within the
    /// event-time rule) in Unix milliseconds; null with an error naming the field otherwise.</summary>
    public static long? EventTime(JsonElement body, string field, EventTimeRule rule, Dictionary<string, string[]> errors) =>
        EventTime(body, field, rule, errors, out _);

    /// <summary>As <see cref="EventTime(JsonElement, string, EventTimeRule, Dictionary{string, string[]})"/>, with the
    /// person's local offset when the time carries a numeric one. "Z" says the instant, not where the person was (clients
    /// serialise UTC so): then <paramref name="localOffsetMinutes"/> is null and the profile's time zone decides.</summary>
    public static long? EventTime(JsonElement body, string field, EventTimeRule rule, Dictionary<string, string[]> errors, out int? localOffsetMinutes)
    {
        localOffsetMinutes = null;
        var text = String(body, field, required: true, errors);
        if (text is null) return null;
        if (!body.GetProperty(field).TryGetDateTimeOffset(out var time) || !HasOffset(text))
            errors[field] = [$"{field} = {InputRules.Quote(text)}: must be an ISO-8601 date-time with an offset, such as 2026-01-31T07:30:00Z"];
        else if (rule.Check(field, time, DateTimeOffset.UtcNow) is { } problem)
            errors[field] = [problem];
        else
        {
            if (text[^1] is not ('Z' or 'z')) localOffsetMinutes = (int)time.Offset.TotalMinutes;
            return time.ToUnixTimeMilliseconds();
        }
        return null;
    }

    // "2026-01-31T07:30:00" alone would be read in the server's zone: the caller must say which instant it means.
    public static bool HasOffset(string time) =>
        time.Length > 19 && (time[^1] is 'Z' or 'z' || time[^6] is '+' or '-');

}
