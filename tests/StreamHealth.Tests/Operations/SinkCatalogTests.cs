using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StackExchange.Redis;
using StreamHealth.Forecast.Service;
using StreamHealth.Host.Topologies;
using StreamHealth.Host.Verbs;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Operations;

/// <summary>`lag`, `reset-sink` and `sink` find a sink by the catalogue (the embedded broker cannot list groups): every sink a
/// host runs must be in it under the same name, topic and consumer group, or an operator's reset moves a group nobody reads.</summary>
public sealed class SinkCatalogTests
{
    [Fact]
    public void Every_sink_the_hosts_run_is_in_the_catalogue_under_its_topic_and_group()
    {
        LocalServices.EnsureStarted();
        var options = StreamHealthOptions.Load();
        using var postgres = NpgsqlDataSource.Create(LocalServices.PostgresConnectionString("postgres"));
        using var redis = ConnectionMultiplexer.Connect(LocalServices.RedisConfiguration);
        // Building a sink contacts neither the registry nor the broker (both happen when it starts).
        using var registry = SchemaRegistryConnection.Connect("http://127.0.0.1:9", autoRegister: false);
        var logs = NullLoggerFactory.Instance;

        var running = RunVerb.CreateSinks(TopologyCatalog.Names.ToList(), options, postgres, redis, registry, logs);
        var (forecastPg, forecastRedis) = ForecastService.CreateSinks(ForecastNames.Default, "127.0.0.1:9", postgres, redis, registry, logs);
        running.Add(forecastPg);
        running.Add(forecastRedis);

        var fromHosts = running.Select(s => (s.Name, s.Topic, s.GroupId)).OrderBy(s => s.Name).ToList();
        var catalogue = SinkCatalog.Sinks.Select(s => (s.Name, s.Topic, s.GroupId)).OrderBy(s => s.Name).ToList();
        Assert.Equal(fromHosts, catalogue);
        Assert.Equal(catalogue.Count, catalogue.Select(s => s.Name).Distinct().Count());
        foreach (var sink in running) sink.Dispose();

        // Every deployed topology's application id (its group) is there for `lag`, with the topic the topology reads (key-sum is
        // the reference topology of the benchmarks, never deployed).
        foreach (var name in TopologyCatalog.Names.Where(n => n != "key-sum"))
        {
            var topology = TopologyCatalog.Create(name, new Args([]), new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build(), postgres);
            Assert.Contains((topology.ApplicationId, topology.SourceTopic), SinkCatalog.Topologies);
        }
    }
}
