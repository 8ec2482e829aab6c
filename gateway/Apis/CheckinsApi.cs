using System.ComponentModel;
using System.Text.Json.Serialization;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Gateway.Identity;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>/api/v1/checkins and /api/v1/health-entries: what the call-log pipeline extracted from a person's calls
/// (issue 17). The calllogs sinks store each call as a row of calllogs.checkins and its entries in one table per kind
/// (medication_entries, food_entries, symptom_entries); these GETs read them a page at a time with the same paging,
/// time-range and access rules as the health metrics and nutrition logs lists. Read-only: check-ins arrive through the
/// call providers' webhooks, never from a client.</summary>
public static class CheckinsApi
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1_000;
    public static readonly TimeSpan DefaultRange = TimeSpan.FromDays(30);

    /// <summary>The entry kinds, as the <c>kind</c> field and filter spell them (the tables' own names).</summary>
    public static readonly string[] EntryKinds = ["medication", "food", "symptom"];
    private const string EntryKindsText = "medication, food or symptom";

    public sealed record Checkin(
        [property: JsonPropertyName("call_id")] string CallId,
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("started_at"), Description("when the call started (UTC)")] DateTime StartedAt,
        [property: JsonPropertyName("provider"), Description("the call provider that reported the call")] string Provider,
        [property: JsonPropertyName("duration_s"), Description("the call's length in seconds")] int DurationS,
        [property: JsonPropertyName("medication_count")] int MedicationCount,
        [property: JsonPropertyName("food_count")] int FoodCount,
        [property: JsonPropertyName("symptom_count")] int SymptomCount,
        [property: JsonPropertyName("extractor"), Description("the extractor (and version) that read the transcript")] string Extractor);

    public sealed record CheckinPage(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("checkins")] IReadOnlyList<Checkin> Checkins,
        [property: JsonPropertyName("next_cursor"), Description("pass as `cursor` for the next page; null on the last page")] string? NextCursor);

    public sealed record MedicationAttributes(
        [property: JsonPropertyName("dose_value"), Description("in dose_unit; null when not said")] double? DoseValue,
        [property: JsonPropertyName("dose_unit"), Description("mg, mcg, ml, units, tablets, …; null when not said")] string? DoseUnit,
        [property: JsonPropertyName("frequency"), Description("as said (\"twice a day\"); null when not said")] string? Frequency,
        [property: JsonPropertyName("status"), Description("taken, skipped, stopped, mentioned or unspecified")] string Status);

    public sealed record FoodAttributes(
        [property: JsonPropertyName("quantity_value"), Description("in quantity_unit; null when not said")] double? QuantityValue,
        [property: JsonPropertyName("quantity_unit"), Description("servings, g, cups, …; null when not said")] string? QuantityUnit,
        [property: JsonPropertyName("meal"), Description("breakfast, lunch, dinner, snack or unspecified; null when not said")] string? Meal);

    public sealed record SymptomAttributes(
        [property: JsonPropertyName("present"), Description("false: the person denied having it")] bool Present,
        [property: JsonPropertyName("severity"), Description("mild, moderate, severe or a pain score \"N/10\"; null when not said")] string? Severity,
        [property: JsonPropertyName("onset"), Description("as said (\"since Monday\"); null when not said")] string? Onset);

    /// <summary>One extracted entry: the fields every kind has, and the attributes of its own kind (the other two null).</summary>
    public sealed record HealthEntry(
        [property: JsonPropertyName("entry_id")] string EntryId,
        [property: JsonPropertyName("call_id")] string CallId,
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("kind"), Description(EntryKindsText)] string Kind,
        [property: JsonPropertyName("call_started_at"), Description("when the call the entry was said in started (UTC)")] DateTime CallStartedAt,
        [property: JsonPropertyName("name"), Description("normalised: a medication's generic name, a food item, a symptom")] string Name,
        [property: JsonPropertyName("confidence"), Description("the extractor's confidence, 0-1")] double Confidence,
        [property: JsonPropertyName("span_start"), Description("where in the call's transcript the entry was read (UTF-16 offset)")] int SpanStart,
        [property: JsonPropertyName("span_length"), Description("its length in UTF-16 code units")] int SpanLength,
        [property: JsonPropertyName("extractor")] string Extractor,
        [property: JsonPropertyName("medication"), Description("kind medication only")] MedicationAttributes? Medication,
        [property: JsonPropertyName("food"), Description("kind food only")] FoodAttributes? Food,
        [property: JsonPropertyName("symptom"), Description("kind symptom only")] SymptomAttributes? Symptom);

    public sealed record HealthEntryPage(
        [property: JsonPropertyName("user_id")] string UserId,
        [property: JsonPropertyName("from")] DateTime From,
        [property: JsonPropertyName("to")] DateTime To,
        [property: JsonPropertyName("kind")] string? Kind,
        [property: JsonPropertyName("limit")] int Limit,
        [property: JsonPropertyName("entries")] IReadOnlyList<HealthEntry> Entries,
        [property: JsonPropertyName("next_cursor"), Description("pass as `cursor` for the next page; null on the last page")] string? NextCursor);

    public static IEndpointRouteBuilder MapCheckinsApi(this IEndpointRouteBuilder app)
    {
        app.MapGroup("/api/v1/checkins")
            .WithTags("Check-ins")
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .MapGet("/user/{userId}", ListCheckinsAsync).WithName("ListCheckins")
            .WithSummary("A person's call check-ins in a time range, oldest first, a page at a time")
            .WithDescription("One per call the call-log pipeline has extracted: from <= started_at < to, at most `limit` per page, with the " +
                             "number of medication, food and symptom entries read from it (`GET /api/v1/health-entries/user/{userId}` lists " +
                             "them); `next_cursor` continues the same query. A person with no check-ins gets an empty page, not 404.")
            .Produces<CheckinPage>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.CheckinsRead));

        app.MapGroup("/api/v1/health-entries")
            .WithTags("Check-ins")
            .ProducesProblem(StatusCodes.Status429TooManyRequests)
            .MapGet("/user/{userId}", ListEntriesAsync).WithName("ListHealthEntries")
            .WithSummary("The medications, foods and symptoms extracted from a person's calls in a time range, oldest first, a page at a time")
            .WithDescription("One list of every kind (or one `kind`), ordered by the call's start and then the entry id: from <= " +
                             "call_started_at < to, at most `limit` per page; `next_cursor` continues the same query. Each entry carries " +
                             "its kind's attributes in `medication`, `food` or `symptom` (the other two null). A person with no entries " +
                             "gets an empty page, not 404.")
            .Produces<HealthEntryPage>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .RequireAccess(Access.OwnData("userId", Scopes.CheckinsRead));
        return app;
    }

    private static async Task<IResult> ListCheckinsAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 30 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now plus the allowed clock skew")] string? to,
        [Description("Most check-ins per page, 1-1000; default 100")] string? limit,
        [Description("`next_cursor` of the previous page")] string? cursor,
        StreamHealthOptions options, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var page = KeysetPaging.Parse(from, to, limit, cursor, DefaultRange, DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        await using var cmd = KeysetPaging.Command(pg, """
            SELECT call_id, patient_id, event_time, provider, duration_s, medication_count, food_count, symptom_count, extractor
            FROM calllogs.checkins
            WHERE patient_id = $1 AND event_time >= $2 AND event_time < $3 AND ($4::timestamptz IS NULL OR (event_time, call_id) > ($4, $5))
            ORDER BY event_time, call_id
            LIMIT $6
            """, userId, page);
        var (rows, next) = await KeysetPaging.ReadAsync(cmd, page, ReadCheckin, static c => (c.StartedAt, c.CallId), ct);
        return TypedResults.Ok(new CheckinPage(userId, page.FromUtc, page.ToUtc, page.Limit, rows, next));
    }

    private static async Task<IResult> ListEntriesAsync(
        [Description(InputRules.IdRuleText)] string userId,
        [Description("ISO-8601 date-time, inclusive (UTC when no offset is given); default: `to` minus 30 days")] string? from,
        [Description("ISO-8601 date-time, exclusive (UTC when no offset is given); default: now plus the allowed clock skew")] string? to,
        [Description("one kind: " + EntryKindsText + "; default: all")] string? kind,
        [Description("Most entries per page, 1-1000; default 100")] string? limit,
        [Description("`next_cursor` of the previous page")] string? cursor,
        StreamHealthOptions options, NpgsqlDataSource pg, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        ApiInput.ValidateUserId(userId, errors);
        var page = KeysetPaging.Parse(from, to, limit, cursor, DefaultRange, DefaultLimit, MaxLimit, options.Input.TimeRule, errors);
        if (kind is not null && Array.IndexOf(EntryKinds, kind) < 0)
            errors["kind"] = [$"kind = {InputRules.Quote(kind)}: must be {EntryKindsText}"];
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        // Each kind's page from its own (patient_id, event_time) index, then the first page of the three: an entry id is
        // unique across the kinds (claimed in streamhealth.event_ids), so (event_time, entry_id) orders the union totally.
        await using var cmd = KeysetPaging.Command(pg, $"""
            SELECT * FROM (
              (SELECT 'medication' AS kind, {Common("generic_name")}, dose_value, dose_unit, frequency, status,
                      NULL::double precision AS quantity_value, NULL::text AS quantity_unit, NULL::text AS meal,
                      NULL::boolean AS present, NULL::text AS severity, NULL::text AS onset
               FROM calllogs.medication_entries WHERE {Page("medication")})
              UNION ALL
              (SELECT 'food', {Common("item")}, NULL, NULL, NULL, NULL,
                      quantity_value, quantity_unit, meal, NULL, NULL, NULL
               FROM calllogs.food_entries WHERE {Page("food")})
              UNION ALL
              (SELECT 'symptom', {Common("name")}, NULL, NULL, NULL, NULL,
                      NULL, NULL, NULL, present, severity, onset
               FROM calllogs.symptom_entries WHERE {Page("symptom")})
            ) e
            ORDER BY event_time, entry_id
            LIMIT $6
            """, userId, page);
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)kind ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        var (rows, next) = await KeysetPaging.ReadAsync(cmd, page, ReadEntry, static e => (e.CallStartedAt, e.EntryId), ct);
        return TypedResults.Ok(new HealthEntryPage(userId, page.FromUtc, page.ToUtc, kind, page.Limit, rows, next));

        static string Common(string nameColumn) =>
            $"entry_id, call_id, patient_id, event_time, {nameColumn} AS name, confidence, span_start, span_length, extractor";
        static string Page(string tableKind) => $"""
            patient_id = $1 AND event_time >= $2 AND event_time < $3 AND ($4::timestamptz IS NULL OR (event_time, entry_id) > ($4, $5))
                 AND ($7::text IS NULL OR $7 = '{tableKind}')
               ORDER BY event_time, entry_id LIMIT $6
            """;
    }

    private static Checkin ReadCheckin(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), DateTime.SpecifyKind(r.GetDateTime(2), DateTimeKind.Utc),
        r.GetString(3), r.GetInt32(4), r.GetInt32(5), r.GetInt32(6), r.GetInt32(7), r.GetString(8));

    // Columns: 0 kind, 1 entry_id, 2 call_id, 3 patient_id, 4 event_time, 5 name, 6 confidence, 7 span_start, 8 span_length,
    // 9 extractor, 10-13 the medication's, 14-16 the food's, 17-19 the symptom's.
    private static HealthEntry ReadEntry(NpgsqlDataReader r)
    {
        var kind = r.GetString(0);
        return new HealthEntry(r.GetString(1), r.GetString(2), r.GetString(3), kind, DateTime.SpecifyKind(r.GetDateTime(4), DateTimeKind.Utc),
            r.GetString(5), r.GetDouble(6), r.GetInt32(7), r.GetInt32(8), r.GetString(9),
            kind == "medication" ? new MedicationAttributes(Number(r, 10), Text(r, 11), Text(r, 12), r.GetString(13)) : null,
            kind == "food" ? new FoodAttributes(Number(r, 14), Text(r, 15), Text(r, 16)) : null,
            kind == "symptom" ? new SymptomAttributes(r.GetBoolean(17), Text(r, 18), Text(r, 19)) : null);
    }

    private static double? Number(NpgsqlDataReader r, int column) => r.IsDBNull(column) ? null : r.GetDouble(column);
    private static string? Text(NpgsqlDataReader r, int column) => r.IsDBNull(column) ? null : r.GetString(column);
}
