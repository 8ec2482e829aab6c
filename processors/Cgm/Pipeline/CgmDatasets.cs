using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Series;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>A resampled series stored under its content hash (POST /process_unified; the forecast and plot
/// endpoints read it back by handle).</summary>
public sealed record CgmDataset(string Handle, string SourceFormat, int StepMinutes, long[] TimesUnixMs, float[] GlucoseMgDl,
    short[] QualityFlags, int[] SequenceIds)
{
    public int Points => TimesUnixMs.Length;
    public int Sequences => SequenceIds.Length == 0 ? 0 : SequenceIds[^1] - SequenceIds[0] + 1;

    /// <summary>Resamples an export's rows (in file order) and keeps the glucose series.</summary>
    public static CgmDataset Resample(CgmFormat format, List<CgmRow> fileOrder, CgmSeriesOptions options, out ResampleReport report)
    {
        var series = new List<CgmRow>(fileOrder.Count + fileOrder.Count / 4);
        report = CgmResampler.Resample(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fileOrder), options, series);
        return FromSeries(format, options.StepMinutes, series);
    }

    /// <summary>The points of a resampled series (<see cref="CgmRow.IsSeriesPoint"/>: sensor and imputed rows, one per
    /// step); events, calibrations among them, are not points.</summary>
    public static CgmDataset FromSeries(CgmFormat format, int stepMinutes, IReadOnlyList<CgmRow> series)
    {
        var n = 0;
        foreach (var r in series) if (r.IsSeriesPoint) n++;
        var times = new long[n];
        var glucose = new float[n];
        var flags = new short[n];
        var sequences = new int[n];
        var i = 0;
        foreach (var r in series)
        {
            if (!r.IsSeriesPoint) continue;
            times[i] = r.TimeMs;
            glucose[i] = (float)r.GlucoseMgDl;
            flags[i] = (short)r.Quality;
            sequences[i] = r.SequenceId;
            i++;
        }
        return new CgmDataset(ContentHandle(stepMinutes, times, glucose, flags), format.Name(), stepMinutes, times, glucose, flags, sequences);
    }

    /// <summary>SHA-256 over the step, times, values and flags (not the source format or file bytes): the same
    /// data gets the same handle whichever export it came from.</summary>
    public static string ContentHandle(int stepMinutes, long[] times, float[] glucose, short[] flags)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(BitConverter.GetBytes(stepMinutes));
        sha.AppendData(MemoryMarshal.AsBytes(times.AsSpan()));
        sha.AppendData(MemoryMarshal.AsBytes(glucose.AsSpan()));
        sha.AppendData(MemoryMarshal.AsBytes(flags.AsSpan()));
        return Convert.ToHexStringLower(sha.GetHashAndReset().AsSpan(0, 16));
    }

    /// <summary>True when this series is the tail of <paramref name="other"/>: same step, same end, and every
    /// point of this one present in the other with the same value and flags.</summary>
    public bool IsTailOf(CgmDataset other)
    {
        if (other.StepMinutes != StepMinutes || Points == 0 || other.Points < Points) return false;
        var offset = other.Points - Points;
        return other.TimesUnixMs.AsSpan(offset).SequenceEqual(TimesUnixMs)
               && other.GlucoseMgDl.AsSpan(offset).SequenceEqual(GlucoseMgDl)
               && other.QualityFlags.AsSpan(offset).SequenceEqual(QualityFlags);
    }
}

/// <summary>cgm.datasets in PostgreSQL.</summary>
public sealed class CgmDatasetStore(NpgsqlDataSource db)
{
    /// <summary>Stores <paramref name="dataset"/> and returns the handle to use: an existing dataset's when
    /// this one is identical to it or covers a subset of its range ending at the same time (Reused = true),
    /// else its own. Idempotent under concurrent identical requests (primary key on the handle).
    /// With an <paramref name="owner"/> (cgm.dataset_owners), a subset is matched only to the owner's own datasets:
    /// another person's longer dataset holds readings this owner never sent. Identical data may share a handle.</summary>
    public async Task<(string Handle, bool Reused)> SaveAsync(CgmDataset dataset, CancellationToken ct = default, string? owner = null)
    {
        var saved = await SaveDatasetAsync(dataset, owner, ct);
        if (owner is not null)
        {
            await using var own = db.CreateCommand("INSERT INTO cgm.dataset_owners (handle, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING");
            own.Parameters.Add(new NpgsqlParameter { Value = saved.Handle });
            own.Parameters.Add(new NpgsqlParameter { Value = owner });
            await own.ExecuteNonQueryAsync(ct);
        }
        return saved;
    }

    /// <summary>Who uploaded a dataset (empty for one stored before owners were recorded: then only admin reaches it).</summary>
    public async Task<IReadOnlyCollection<string>> OwnersAsync(string handle, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("SELECT owner FROM cgm.dataset_owners WHERE handle = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = handle });
        var owners = new List<string>();
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) owners.Add(reader.GetString(0));
        return owners;
    }

    private async Task<(string Handle, bool Reused)> SaveDatasetAsync(CgmDataset dataset, string? owner, CancellationToken ct)
    {
        if (dataset.Points == 0) throw new ArgumentException("the series has no glucose points", nameof(dataset));
        var last = DateTime.UnixEpoch.AddMilliseconds(dataset.TimesUnixMs[^1]);
        var first = DateTime.UnixEpoch.AddMilliseconds(dataset.TimesUnixMs[0]);
        await using (var find = db.CreateCommand("""
            SELECT handle, source_format, step_minutes, times_unix_ms, glucose_mg_dl, quality_flags, sequence_ids
            FROM cgm.datasets d WHERE last_time = $1 AND first_time <= $2 AND points >= $3 AND step_minutes = $4
              AND ($5::text IS NULL OR handle = $6 OR EXISTS (SELECT 1 FROM cgm.dataset_owners o WHERE o.handle = d.handle AND o.owner = $5))
            ORDER BY points, handle LIMIT 20
            """))
        {
            find.Parameters.Add(new NpgsqlParameter { Value = last, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            find.Parameters.Add(new NpgsqlParameter { Value = first, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            find.Parameters.Add(new NpgsqlParameter { Value = dataset.Points });
            find.Parameters.Add(new NpgsqlParameter { Value = dataset.StepMinutes });
            find.Parameters.Add(new NpgsqlParameter { Value = (object?)owner ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
            find.Parameters.Add(new NpgsqlParameter { Value = dataset.Handle });
            await using var reader = await find.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var existing = Read(reader);
                if (existing.Handle == dataset.Handle || dataset.IsTailOf(existing)) return (existing.Handle, existing.Handle != dataset.Handle);
            }
        }
        await using var insert = db.CreateCommand("""
            INSERT INTO cgm.datasets (handle, source_format, step_minutes, first_time, last_time, points, sequences,
                                      times_unix_ms, glucose_mg_dl, quality_flags, sequence_ids)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (handle) DO NOTHING
            """);
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.Handle });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.SourceFormat });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.StepMinutes });
        insert.Parameters.Add(new NpgsqlParameter { Value = first, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        insert.Parameters.Add(new NpgsqlParameter { Value = last, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.Points });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.Sequences });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.TimesUnixMs });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.GlucoseMgDl });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.QualityFlags });
        insert.Parameters.Add(new NpgsqlParameter { Value = dataset.SequenceIds });
        await insert.ExecuteNonQueryAsync(ct);
        return (dataset.Handle, false);
    }

    public async Task<CgmDataset?> LoadAsync(string handle, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("""
            SELECT handle, source_format, step_minutes, times_unix_ms, glucose_mg_dl, quality_flags, sequence_ids
            FROM cgm.datasets WHERE handle = $1
            """);
        cmd.Parameters.Add(new NpgsqlParameter { Value = handle });
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? Read(reader) : null;
    }

    /// <summary>Deletes a dataset; false when there was none.</summary>
    public async Task<bool> DeleteAsync(string handle, CancellationToken ct = default)
    {
        await using var cmd = db.CreateCommand("DELETE FROM cgm.datasets WHERE handle = $1");
        cmd.Parameters.Add(new NpgsqlParameter { Value = handle });
        return await cmd.ExecuteNonQueryAsync(ct) > 0;
    }

    private static CgmDataset Read(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetInt32(2),
        r.GetFieldValue<long[]>(3), r.GetFieldValue<float[]>(4), r.GetFieldValue<short[]>(5), r.GetFieldValue<int[]>(6));
}
