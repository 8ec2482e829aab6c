using Confluent.SchemaRegistry;
using StreamHealth.Runtime.SchemaRegistry;
using static StreamHealth.Tests.SchemaRegistry.Avsc;

namespace StreamHealth.Tests.SchemaRegistry;

/// <summary>Registrations at once, from clients of two servers on one database: one id per distinct schema, no gaps,
/// consecutive versions.</summary>
public sealed class SchemaRegistryConcurrencyTests
{
    [Fact]
    public async Task Twenty_parallel_registrations_get_one_id_per_schema_and_consecutive_versions()
    {
        var cs = await RegistryFixture.NewDatabaseAsync();
        await using var a = await SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0");
        await using var b = await SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0");

        // Even tasks register one shared schema; odd tasks each a schema of their own. Every schema adds an optional
        // field to the same record, so any order is BACKWARD compatible.
        var shared = Record("Conc", Field("id", AvroString));
        string Own(int i) => Record("Conc", Field("id", AvroString), Field($"f{i}", AvroInt, "0"));
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tasks = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            // A client per task: one client would answer repeats from its cache instead of asking.
            using var client = RegistryFixture.ClientWithoutRetries(i % 4 < 2 ? a : b);
            var schema = i % 2 == 0 ? shared : Own(i);
            await go.Task;
            return (Schema: schema, Id: await client.RegisterSchemaAsync("conc-value", Of(schema)));
        })).ToList();
        go.SetResult();
        var results = await Task.WhenAll(tasks);

        var sharedIds = results.Where(r => r.Schema == shared).Select(r => r.Id).Distinct().ToList();
        Assert.Single(sharedIds);
        var idsBySchema = results.GroupBy(r => r.Schema).ToDictionary(g => g.Key, g => Assert.Single(g.Select(r => r.Id).Distinct()));
        Assert.Equal(11, idsBySchema.Count);
        Assert.Equal(Enumerable.Range(1, 11), idsBySchema.Values.Order());

        using var reader = RegistryFixture.Client(a);
        Assert.Equal(Enumerable.Range(1, 11), await reader.GetSubjectVersionsAsync("conc-value"));
        var byVersion = new HashSet<int>();
        foreach (var version in Enumerable.Range(1, 11))
            byVersion.Add((await reader.GetRegisteredSchemaAsync("conc-value", version)).Id);
        Assert.Equal(idsBySchema.Values.ToHashSet(), byVersion);
    }

    [Fact]
    public async Task The_same_new_schema_under_many_subjects_at_once_gets_one_global_id()
    {
        var cs = await RegistryFixture.NewDatabaseAsync();
        await using var server = await SchemaRegistryServer.StartAsync(cs, "http://127.0.0.1:0");
        var schema = Record("Everywhere", Field("x", AvroLong));
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var registrations = Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            using var client = RegistryFixture.ClientWithoutRetries(server);
            await go.Task;
            return await client.RegisterSchemaAsync($"everywhere-{i % 5}-value", Of(schema));
        })).ToList();
        go.SetResult();
        var ids = await Task.WhenAll(registrations);
        Assert.Equal([1], ids.Distinct());
        using var reader = RegistryFixture.Client(server);
        foreach (var i in Enumerable.Range(0, 5))
            Assert.Equal([1], await reader.GetSubjectVersionsAsync($"everywhere-{i}-value"));
    }
}
