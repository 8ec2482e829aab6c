using Confluent.Kafka;
using Npgsql;
using StreamHealth.Runtime.Storage;
using StreamHealth.Schemas;
using StreamHealth.Tests.Infrastructure;
using StreamHealth.Weight.Filter;
using StreamHealth.Weight.Samples;
using static StreamHealth.Tests.Infrastructure.StreamTestKit;

namespace StreamHealth.Tests.Weight;

/// <summary>`streamhealth run` (the weights topology and both sinks, as deployed) killed with SIGKILL
/// mid-stream: after a restart every measurement is stored once and every user's filter ends where a
/// single-threaded replay of that user's measurements ends.</summary>
public sealed class WeightCrashTests(EmbeddedKafkaFixture kafka) : IClassFixture<EmbeddedKafkaFixture>
{
    [Fact]
    public async Task A_weights_processor_killed_mid_stream_loses_nothing_and_applies_nothing_twice()
    {
        var database = LocalServices.NewDatabaseName("weights_crash");
        var connectionString = LocalServices.PostgresConnectionString(database);
        await PostgresMigrator.MigrateAsync(connectionString);
        using var registry = TestRegistry.Start(connectionString);
        var stateDir = Directory.CreateTempSubdirectory("streamhealth-weights-kill-").FullName;
        var env = ChildHost.RunEnvironment(kafka.BootstrapServers, stateDir, database, registry.Url);
        string[] args = ["run", "--topology", "weights", "--host-id", "weights-kill-test"];

        var run = Guid.NewGuid().ToString("N")[..8];
        var cohort = new SyntheticWeightCohort(150, seed: 7);
        var weighIns = cohort.Stream().ToList();
        var messages = weighIns.Select((w, i) => new WeightMeasurement
        {
            SchemaVersion = 1, EventTimeUnixMs = w.Observation.TimeUnixMs, MeasurementId = $"{run}-{i}", UserId = $"{run}-{w.UserId}",
            Value = w.Observation.Value, Unit = w.Observation.Unit, Source = w.Observation.Source,
        }).ToList();
        void Produce(IEnumerable<WeightMeasurement> batch, int perSecond)
        {
            using var p = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 5 }).Build();
            var sent = 0;
            foreach (var m in batch)
            {
                p.Produce(Topics.WeightsRaw, new Message<byte[], byte[]>
                {
                    Key = registry.Key(Topics.WeightsRaw, m.UserId), Value = registry.Value(Topics.WeightsRaw, m),
                    Timestamp = new Timestamp(m.EventTimeUnixMs, TimestampType.CreateTime),
                });
                if (++sent % 1000 == 0 && perSecond > 0) Thread.Sleep(1000 * 1000 / perSecond);
            }
            p.Flush(TimeSpan.FromSeconds(30));
        }

        try
        {
            var half = messages.Count / 2;
            using (var first = ChildHost.Start(args, env))
            {
                Produce(messages.Take(half), perSecond: 10_000);
                WaitFor(() => Progress(kafka.BootstrapServers, "weights", Topics.WeightsRaw, 4).Committed >= 3_000, TimeSpan.FromSeconds(60),
                    () => $"no progress before the kill:\n{first.Output}");
                first.KillHard();
            }
            Produce(messages.Skip(half), perSecond: 0);
            using (var second = ChildHost.Start(args, env))
            {
                WaitFor(() => Count(connectionString) == messages.Count, TimeSpan.FromSeconds(120),
                    () => $"rows {Count(connectionString)}/{messages.Count}\n{second.Output}");
                Assert.Equal(0, second.Terminate());
            }

            // Reference: each user's measurements through one filter, in order, single-threaded.
            var filter = new WeightKalmanFilter(new WeightFilterOptions());
            var expected = new Dictionary<string, (double LastFilteredKg, int Accepted)>();
            foreach (var group in messages.GroupBy(m => m.UserId))
            {
                var state = WeightStateCodec.NewState();
                WeightStep last = default;
                var accepted = 0;
                foreach (var m in group)
                {
                    last = filter.Process(state, WeightObservation.From(m));
                    if (last.Accepted) accepted++;
                }
                expected[group.Key] = (last.FilteredWeightKg, accepted);
            }
            var lastIds = messages.GroupBy(m => m.UserId).ToDictionary(g => g.Key, g => g.Last().MeasurementId);
            await using var db = NpgsqlDataSource.Create(connectionString);
            await using var cmd = db.CreateCommand("SELECT user_id, measurement_id, filtered_weight_kg, accepted FROM weights.measurements");
            await using var reader = await cmd.ExecuteReaderAsync();
            var acceptedByUser = new Dictionary<string, int>();
            var lastFiltered = new Dictionary<string, double>();
            while (await reader.ReadAsync())
            {
                var user = reader.GetString(0);
                if (reader.GetBoolean(3)) acceptedByUser[user] = acceptedByUser.GetValueOrDefault(user) + 1;
                if (lastIds[user] == reader.GetString(1)) lastFiltered[user] = reader.GetDouble(2);
            }
            var wrong = expected.Where(e => !lastFiltered.TryGetValue(e.Key, out var kg) || Math.Abs(kg - e.Value.LastFilteredKg) > 1e-9
                                            || acceptedByUser.GetValueOrDefault(e.Key) != e.Value.Accepted)
                .Select(e => $"{e.Key}: filtered {lastFiltered.GetValueOrDefault(e.Key)} vs {e.Value.LastFilteredKg}, accepted {acceptedByUser.GetValueOrDefault(e.Key)} vs {e.Value.Accepted}")
                .ToList();
            Assert.True(wrong.Count == 0, $"{wrong.Count} of {expected.Count} users differ from the reference: {string.Join("; ", wrong.Take(5))}");
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    private static long Count(string connectionString)
    {
        using var c = new NpgsqlConnection(connectionString);
        c.Open();
        using var cmd = new NpgsqlCommand("SELECT count(*) FROM weights.measurements", c);
        return (long)cmd.ExecuteScalar()!;
    }
}
