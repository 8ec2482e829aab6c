namespace StreamHealth.Runtime.SchemaRegistry;

/// <summary>A refusal the registry's REST API answers as Confluent does, <c>{"error_code": N, "message": "..."}</c> with
/// the HTTP status Confluent pairs with the code, so Confluent's clients raise the same SchemaRegistryException.</summary>
public sealed class SchemaRegistryError(int httpStatus, int errorCode, string message) : Exception(message)
{
    public int HttpStatus { get; } = httpStatus;
    public int ErrorCode { get; } = errorCode;

    public static SchemaRegistryError SubjectNotFound(string subject) => new(404, 40401, $"Subject '{subject}' not found.");
    public static SchemaRegistryError VersionNotFound(string subject, int version) =>
        new(404, 40402, $"Version {version} not found for subject '{subject}'.");
    public static SchemaRegistryError SchemaNotFound(string detail) => new(404, 40403, detail);
    public static SchemaRegistryError SubjectNotConfigured(string subject) =>
        new(404, 40408, $"Subject '{subject}' does not have subject-level compatibility configured");
    public static SchemaRegistryError Incompatible(string detail) => new(409, 409, detail);
    public static SchemaRegistryError InvalidSchema(string detail) => new(422, 42201, detail);
    public static SchemaRegistryError InvalidVersion(string version) =>
        new(422, 42202, $"The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"");
    public static SchemaRegistryError InvalidCompatibilityLevel(string? level) =>
        new(422, 42203, $"Invalid compatibility level '{level}'. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE");
    public static SchemaRegistryError BadRequest(string detail) => new(400, 400, detail);
    public static SchemaRegistryError StoreError(string detail) => new(500, 50001, "Error in the backend data store: " + detail);
}
