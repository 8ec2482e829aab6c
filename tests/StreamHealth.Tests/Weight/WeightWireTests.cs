using StreamHealth.Schemas;
using StreamHealth.Weight.Pipeline;
using AvroWeights = StreamHealth.Schemas.Avro.Weights;

namespace StreamHealth.Tests.Weight;

/// <summary>The boundary between the weights topics' Avro records and the Protobuf messages the weights code keeps
/// (<see cref="WeightWire"/>): every field survives the round trip, so what the topology, the sinks and the gateway see
/// is what they saw when the topics carried Protobuf.</summary>
public sealed class WeightWireTests
{
    private static readonly long T0 = DateTimeOffset.Parse("2026-03-01T07:00:00.123Z").ToUnixTimeMilliseconds();

    [Fact]
    public void A_measurement_with_every_field_set_round_trips_through_avro()
    {
        var m = new WeightMeasurement
        {
            SchemaVersion = 1, EventTimeUnixMs = T0, MeasurementId = "m-1", UserId = "u-1", Value = 181.5, Unit = WeightUnit.Lb,
            Source = WeightSource.CareTeam, SourceDetail = "scale v2", DeclaredEvent = WeightEvent.Surgery,
        };
        m.InitializationBatch.Add(new WeightMeasurement { SchemaVersion = 1, EventTimeUnixMs = T0 - 86_400_000, MeasurementId = "b-1", UserId = "u-1", Value = 82, Unit = WeightUnit.Kg, Source = WeightSource.PatientReported });
        var avro = WeightWire.ToAvro(m);
        Assert.Equal(DateTimeKind.Utc, avro.event_time_unix_ms.Kind);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(T0).UtcDateTime, avro.event_time_unix_ms);
        Assert.Equal(AvroWeights.WeightUnit.WEIGHT_UNIT_LB, avro.unit);
        Assert.Equal(AvroWeights.WeightSource.WEIGHT_SOURCE_CARE_TEAM, avro.source);
        Assert.Equal(AvroWeights.WeightEvent.WEIGHT_EVENT_SURGERY, avro.declared_event);
        Assert.Equal("scale v2", avro.source_detail);
        Assert.Single(avro.initialization_batch);
        Assert.Equal(m, WeightWire.ToProto(avro));
    }

    [Fact]
    public void An_empty_source_detail_is_avro_null_and_an_enum_value_the_other_side_lacks_is_unspecified()
    {
        var m = new WeightMeasurement { SchemaVersion = 1, EventTimeUnixMs = T0, MeasurementId = "m", UserId = "u", Value = 80, Unit = (WeightUnit)42 };
        var avro = WeightWire.ToAvro(m);
        Assert.Null(avro.source_detail);
        Assert.Equal(AvroWeights.WeightUnit.WEIGHT_UNIT_UNSPECIFIED, avro.unit);
        Assert.Equal("", WeightWire.ToProto(avro).SourceDetail);
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightWire.ToAvro(new WeightMeasurement { EventTimeUnixMs = long.MaxValue }));
    }

    [Fact]
    public void A_result_with_every_field_set_round_trips_through_avro()
    {
        var r = new WeightResult
        {
            SchemaVersion = 1, EventTimeUnixMs = T0, MeasurementId = "m-1", UserId = "u-1", Accepted = true, Confidence = 0.75,
            RawWeightKg = 82.3, FilteredWeightKg = 82.1, TrendKgPerWeek = -0.25, PredictionErrorKg = 0.2, NeedsInitialization = false,
            NeedsReinitialization = true, NormalizedInnovation = double.NaN, SourceOffset = 1234567890123, Source = WeightSource.ConnectedScale,
            SourcePartition = 3, MeasurementFingerprint = "0123456789abcdef",
            Reasons = { WeightReason.Accepted, WeightReason.ReanchoredAfterStepChange, WeightReason.OtherPersonSuspected },
        };
        var avro = WeightWire.ToAvro(r);
        Assert.Equal([AvroWeights.WeightReason.WEIGHT_REASON_ACCEPTED, AvroWeights.WeightReason.WEIGHT_REASON_REANCHORED_AFTER_STEP_CHANGE,
            AvroWeights.WeightReason.WEIGHT_REASON_OTHER_PERSON_SUSPECTED], avro.reasons);
        var back = WeightWire.ToProto(avro);
        Assert.True(double.IsNaN(back.NormalizedInnovation));
        back.NormalizedInnovation = r.NormalizedInnovation = 0;
        Assert.Equal(r, back);
    }
}
