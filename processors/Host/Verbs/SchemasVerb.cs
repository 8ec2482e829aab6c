using Confluent.SchemaRegistry;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Schemas;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth schemas register|check`: the deploy step that registers the Avro schemas with the Schema
/// Registry, and the gate that asks it whether the schemas (compiled in, or a directory of .avsc files) may follow the
/// versions registered there (<see cref="SchemaCheck"/>).</summary>
internal static class SchemasVerb
{
    public static int Run(string[] argv)
    {
        switch (argv.FirstOrDefault())
        {
            case "register":
                return RegisterAsync().GetAwaiter().GetResult();
            case "check":
                return CheckAsync(argv.Length > 1 ? argv[1] : null).GetAwaiter().GetResult();
            default:
                throw new UsageException("schemas needs 'register' or 'check [DIR]'");
        }
    }

    /// <summary>Checks the catalogue (or the .avsc files in <paramref name="directory"/>) against the latest registered
    /// version of each subject; exit 1 naming every incompatible subject and why, 2 when the registry cannot be reached.</summary>
    private static async Task<int> CheckAsync(string? directory)
    {
        var options = StreamHealthOptions.Load();
        IReadOnlyList<(string Subject, string Schema)> subjects;
        try
        {
            subjects = directory is null ? SchemaRegistration.CatalogueSubjects().ToList() : SchemaCheck.SubjectsFromDirectory(directory);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
        using var http = new HttpClient { BaseAddress = new Uri(options.SchemaRegistry.Url.TrimEnd('/') + "/"), Timeout = TimeSpan.FromSeconds(10) };
        IReadOnlyList<SchemaCheck.Verdict> verdicts;
        try
        {
            verdicts = await SchemaCheck.CheckAsync(http, subjects);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new ConfigurationException($"SchemaRegistry:Url = {options.SchemaRegistry.Url}: the schema registry cannot be reached ({e.Message})");
        }
        foreach (var verdict in verdicts)
            if (verdict.Compatible) Console.WriteLine(verdict);
            else Console.Error.WriteLine(verdict);
        var refused = verdicts.Count(v => !v.Compatible);
        Console.WriteLine(refused == 0
            ? $"{verdicts.Count} subjects compatible with {options.SchemaRegistry.Url}"
            : $"{refused} of {verdicts.Count} subjects incompatible with {options.SchemaRegistry.Url}");
        return refused == 0 ? 0 : 1;
    }

    /// <summary>Registers every topic's key and value schema at SchemaRegistry:Url (the registry checks each against the
    /// subject's compatibility level); exit 1 when it refuses any, naming the subject and the registry's reasons.</summary>
    private static async Task<int> RegisterAsync()
    {
        var options = StreamHealthOptions.Load();
        using var client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = options.SchemaRegistry.Url, RequestTimeoutMs = 10_000 });
        IReadOnlyList<SchemaRegistration.Outcome> outcomes;
        try
        {
            outcomes = await SchemaRegistration.RegisterAsync(client, SchemaRegistration.CatalogueSubjects(), options.SchemaRegistry.Compatibility);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new ConfigurationException($"SchemaRegistry:Url = {options.SchemaRegistry.Url}: the schema registry cannot be reached ({e.Message})");
        }
        foreach (var outcome in outcomes)
            if (outcome.Refused is null) Console.WriteLine(outcome);
            else Console.Error.WriteLine(outcome);
        var refused = outcomes.Count(o => o.Refused is not null);
        Console.WriteLine(refused == 0
            ? $"{outcomes.Count} subjects registered at {options.SchemaRegistry.Url}"
            : $"{refused} of {outcomes.Count} subjects refused by {options.SchemaRegistry.Url}");
        return refused == 0 ? 0 : 1;
    }
}
