using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.Storage;

namespace StreamHealth.Host.Verbs;

internal static class MigrateVerb
{
    public static async Task<int> RunAsync()
    {
        var options = StreamHealthOptions.Load();
        var applied = await PostgresMigrator.MigrateAsync(options.Postgres.ConnectionString);
        Console.WriteLine(applied.Count == 0
            ? $"PostgreSQL {options.Postgres.Host}:{options.Postgres.Port}/{options.Postgres.Database}: schema up to date"
            : $"PostgreSQL {options.Postgres.Host}:{options.Postgres.Port}/{options.Postgres.Database}: applied {string.Join(", ", applied.Select(v => $"V{v:D4}"))}");
        return 0;
    }
}
