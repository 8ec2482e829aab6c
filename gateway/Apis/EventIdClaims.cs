using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Apis;

/// <summary>One event id, one event of one user, whatever its time: the commands that take a producer-assigned id
/// (weight measurements, health metrics) claim it in <see cref="EventIds"/> before anything is produced, so a conflicting
/// reuse never reaches the pipeline. The problem does not say whose the id is.</summary>
internal static class EventIdClaims
{
    /// <summary>Null when the id is this event's (new, or a retry with the same fingerprint); else the problem to answer:
    /// 409 naming <paramref name="idField"/> (another event holds the id), or 503 titled <paramref name="pipelineTitle"/>
    /// (the registry cannot be reached: nothing was sent).</summary>
    /// <param name="kind">What the event is called in the messages ("measurement", "metric").</param>
    /// <param name="retryRepeats">What a retry must repeat, e.g. "user, timestamp, weight, unit and source".</param>
    public static async Task<ProblemHttpResult?> ClaimAsync(NpgsqlDataSource postgres, string workload, string idField, string id, string userId,
        string fingerprint, string kind, string retryRepeats, string pipelineTitle, ILogger log, CancellationToken ct)
    {
        EventIdClaim claim;
        try
        {
            claim = await EventIds.ClaimAsync(postgres, workload, id, userId, fingerprint, ct);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            log.LogWarning(e, "claiming {Kind} id failed", kind);
            return TypedResults.Problem($"the {kind} id registry (PostgreSQL) is unreachable; nothing was sent",
                statusCode: StatusCodes.Status503ServiceUnavailable, title: pipelineTitle);
        }
        return claim == EventIdClaim.Owned
            ? null
            : TypedResults.Problem(
                $"{idField} {InputRules.Quote(id)} is already used for a different {kind}; a retry must repeat the {kind} exactly " +
                $"({retryRepeats}), a new {kind} needs a new {idField}",
                statusCode: StatusCodes.Status409Conflict, title: $"{idField} already used");
    }
}
