using System.Globalization;
using Google.Protobuf.Collections;
using StreamHealth.Schemas;

namespace StreamHealth.Weight.Filter;

/// <summary>64-bit identity of a measurement for duplicate detection: time, source, unit and the raw
/// value's exact bits (the same reading re-sent, not merely an equal weight in another unit).</summary>
/// <remarks>Fingerprints are stored in <c>WeightFilterState.recent_fingerprints</c>, so the function is
/// part of the state format: it must not change (no <see cref="HashCode"/>, which is seeded per process).
/// Two different measurements collide with probability about 16 / 2⁶⁴ per check.</remarks>
public static class MeasurementFingerprint
{
    /// <summary>The bound of the ring in the state: a re-upload is almost always of the last few readings,
    /// and 16 × 8 bytes keeps a user's state small; a duplicate older than 16 newer readings is OUT_OF_ORDER
    /// instead, which does not move the filter either.</summary>
    public const int RingSize = 16;

    public static ulong Of(in WeightObservation observation)
    {
        var h = Mix((ulong)observation.TimeUnixMs ^ 0x9E3779B97F4A7C15UL);
        h = Mix(h ^ (ulong)BitConverter.DoubleToInt64Bits(observation.Value));
        return Mix(h ^ ((ulong)(uint)observation.Unit << 32 | (uint)observation.Source));
    }

    /// <summary>What a measurement id stands for (the gateway's claim, the topology's retry check, the sink's claim):
    /// the measurement's fingerprint, or for an initialisation command the fold of its batch's, in order. The user is
    /// not part of it: the id registry compares users separately.</summary>
    public static ulong Of(WeightMeasurement measurement)
    {
        if (measurement.InitializationBatch.Count == 0) return Of(WeightObservation.From(measurement));
        var h = 0x6A09E667F3BCC908UL;   // distinct start: a one-element batch is not the same event as that measurement
        foreach (var m in measurement.InitializationBatch) h = Mix(h ^ Of(WeightObservation.From(m)));
        return h;
    }

    /// <summary>The fingerprint as it is stored (streamhealth.event_ids, WeightResult.measurement_fingerprint): 16 hex digits.</summary>
    public static string Text(ulong fingerprint) => fingerprint.ToString("x16", CultureInfo.InvariantCulture);

    public static bool Contains(RepeatedField<ulong> ring, ulong fingerprint)
    {
        for (var i = 0; i < ring.Count; i++)
            if (ring[i] == fingerprint) return true;
        return false;
    }

    /// <summary>Appends until the ring holds <see cref="RingSize"/>, then overwrites the oldest (at the cursor).</summary>
    public static void Add(RepeatedField<ulong> ring, ref uint cursor, ulong fingerprint)
    {
        if (ring.Count < RingSize)
        {
            ring.Add(fingerprint);
            return;
        }
        var slot = cursor % RingSize;
        ring[(int)slot] = fingerprint;
        cursor = (slot + 1) % RingSize;
    }

    // splitmix64's finaliser: every input bit affects every output bit.
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
