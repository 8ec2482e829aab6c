using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Streams;
using AvroRecords = StreamHealth.Schemas.Avro;
using Proto = StreamHealth.Schemas;

namespace StreamHealth.Weight.Pipeline;

/// <summary>The weights topics' records (weights.raw: key UserKey, value WeightMeasurement; weights.filtered: key UserKey,
/// value WeightResult) are Avro in the Confluent wire format (schemas/avro). Inside the processes the weights code keeps
/// working on the Protobuf messages it always had (the filter's inputs and outputs, the gateway's commands, the
/// topology's RocksDB state, which holds recent WeightResults and is not a topic): this is the one place that converts
/// between the two, field by field (the Avro records have the proto's fields minus schema_version; times are
/// timestamp-millis; enums keep the proto symbols in order, so a value converts by its number; a value outside the
/// other side's enum becomes its UNSPECIFIED).</summary>
public static class WeightWire
{
    // ---- serialisation (through the serdes a SchemaRegistryConnection keeps, one per record type)

    /// <summary>The key bytes of a user's records on <paramref name="topic"/> (what producers send; what partitioning hashes).</summary>
    public static byte[] Key(AvroSerDes<AvroRecords.Common.UserKey> serdes, string topic, string userId) =>
        serdes.Serialize(new AvroRecords.Common.UserKey { user_id = userId }, new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Key, topic));

    public static byte[] Key(SchemaRegistryConnection registry, string topic, string userId) => Key(registry.SerDes<AvroRecords.Common.UserKey>(), topic, userId);

    public static byte[] Value<T>(AvroSerDes<T> serdes, string topic, T value) where T : global::Avro.Specific.ISpecificRecord, new() =>
        serdes.Serialize(value, new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Value, topic));

    public static T Read<T>(AvroSerDes<T> serdes, string topic, byte[] value) where T : global::Avro.Specific.ISpecificRecord, new() =>
        serdes.Deserialize(value, new Confluent.Kafka.SerializationContext(Confluent.Kafka.MessageComponentType.Value, topic));

    /// <summary>A weights.raw value: <paramref name="m"/> as Avro, serialised for <paramref name="topic"/>.</summary>
    public static byte[] Measurement(AvroSerDes<AvroRecords.Weights.WeightMeasurement> serdes, string topic, Proto.WeightMeasurement m) =>
        Value(serdes, topic, ToAvro(m));

    /// <summary>A weights.filtered value read back as the Protobuf message the weights code uses.</summary>
    public static Proto.WeightResult Result(AvroSerDes<AvroRecords.Weights.WeightResult> serdes, string topic, byte[] value) =>
        ToProto(Read(serdes, topic, value));

    // ---- times

    public static DateTime Time(long unixMs) => AvroTime.FromUnixMs(unixMs);

    public static long UnixMs(DateTime time) => AvroTime.ToUnixMs(time);

    // ---- WeightMeasurement

    public static AvroRecords.Weights.WeightMeasurement ToAvro(Proto.WeightMeasurement m) => new()
    {
        event_time_unix_ms = Time(m.EventTimeUnixMs),
        measurement_id = m.MeasurementId,
        user_id = m.UserId,
        value = m.Value,
        unit = Enum<Proto.WeightUnit, AvroRecords.Weights.WeightUnit>(m.Unit),
        source = Enum<Proto.WeightSource, AvroRecords.Weights.WeightSource>(m.Source),
        source_detail = m.SourceDetail.Length == 0 ? null : m.SourceDetail,
        initialization_batch = [.. m.InitializationBatch.Select(ToAvro)],
        declared_event = Enum<Proto.WeightEvent, AvroRecords.Weights.WeightEvent>(m.DeclaredEvent),
    };

    public static Proto.WeightMeasurement ToProto(AvroRecords.Weights.WeightMeasurement m)
    {
        var proto = new Proto.WeightMeasurement
        {
            SchemaVersion = 1,
            EventTimeUnixMs = UnixMs(m.event_time_unix_ms),
            MeasurementId = m.measurement_id ?? "",
            UserId = m.user_id ?? "",
            Value = m.value,
            Unit = Enum<AvroRecords.Weights.WeightUnit, Proto.WeightUnit>(m.unit),
            Source = Enum<AvroRecords.Weights.WeightSource, Proto.WeightSource>(m.source),
            SourceDetail = m.source_detail ?? "",
            DeclaredEvent = Enum<AvroRecords.Weights.WeightEvent, Proto.WeightEvent>(m.declared_event),
        };
        if (m.initialization_batch is { } batch) proto.InitializationBatch.AddRange(batch.Select(ToProto));
        return proto;
    }

    // ---- WeightResult

    public static AvroRecords.Weights.WeightResult ToAvro(Proto.WeightResult r) => new()
    {
        event_time_unix_ms = Time(r.EventTimeUnixMs),
        measurement_id = r.MeasurementId,
        user_id = r.UserId,
        accepted = r.Accepted,
        confidence = r.Confidence,
        raw_weight_kg = r.RawWeightKg,
        filtered_weight_kg = r.FilteredWeightKg,
        trend_kg_per_week = r.TrendKgPerWeek,
        prediction_error_kg = r.PredictionErrorKg,
        needs_initialization = r.NeedsInitialization,
        needs_reinitialization = r.NeedsReinitialization,
        reasons = [.. r.Reasons.Select(Enum<Proto.WeightReason, AvroRecords.Weights.WeightReason>)],
        normalized_innovation = r.NormalizedInnovation,
        source_offset = r.SourceOffset,
        source = Enum<Proto.WeightSource, AvroRecords.Weights.WeightSource>(r.Source),
        source_partition = r.SourcePartition,
        measurement_fingerprint = r.MeasurementFingerprint,
    };

    public static Proto.WeightResult ToProto(AvroRecords.Weights.WeightResult r)
    {
        var proto = new Proto.WeightResult
        {
            SchemaVersion = 1,
            EventTimeUnixMs = UnixMs(r.event_time_unix_ms),
            MeasurementId = r.measurement_id ?? "",
            UserId = r.user_id ?? "",
            Accepted = r.accepted,
            Confidence = r.confidence,
            RawWeightKg = r.raw_weight_kg,
            FilteredWeightKg = r.filtered_weight_kg,
            TrendKgPerWeek = r.trend_kg_per_week,
            PredictionErrorKg = r.prediction_error_kg,
            NeedsInitialization = r.needs_initialization,
            NeedsReinitialization = r.needs_reinitialization,
            NormalizedInnovation = r.normalized_innovation,
            SourceOffset = r.source_offset,
            Source = Enum<AvroRecords.Weights.WeightSource, Proto.WeightSource>(r.source),
            SourcePartition = r.source_partition,
            MeasurementFingerprint = r.measurement_fingerprint ?? "",
        };
        if (r.reasons is { } reasons) proto.Reasons.AddRange(reasons.Select(Enum<AvroRecords.Weights.WeightReason, Proto.WeightReason>));
        return proto;
    }

    /// <summary>An enum value by number (the two enums list the same symbols in the same order; a test holds them to it);
    /// a number the target does not define becomes its zero, UNSPECIFIED.</summary>
    private static TTo Enum<TFrom, TTo>(TFrom value) where TFrom : struct, System.Enum where TTo : struct, System.Enum
    {
        // Both are int enums (BitCast refuses a size mismatch); no boxing: this runs for every enum of every record.
        var converted = System.Runtime.CompilerServices.Unsafe.BitCast<int, TTo>(System.Runtime.CompilerServices.Unsafe.BitCast<TFrom, int>(value));
        return System.Enum.IsDefined(converted) ? converted : default;
    }
}
