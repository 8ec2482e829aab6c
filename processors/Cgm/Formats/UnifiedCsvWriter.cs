using System.Buffers;
using System.Globalization;

namespace StreamHealth.Cgm.Formats;

/// <summary>Writes rows in the unified CSV layout (cgm_format convention):
/// <c>sequence_id,original_datetime,quality,event_type,datetime,glucose,carbs,insulin_slow,insulin_fast,exercise</c>.
/// Numbers are written shortest-round-trip with at least one decimal ("144.0"), absent values as
/// empty fields, times as <c>yyyy-MM-ddTHH:mm:ss.fff</c>. Buffers into a pooled array; no allocation per row.</summary>
public sealed class UnifiedCsvWriter : IDisposable
{
    public static ReadOnlySpan<byte> Header =>
        "sequence_id,original_datetime,quality,event_type,datetime,glucose,carbs,insulin_slow,insulin_fast,exercise\n"u8;

    private const int RowMaxBytes = 512;
    private readonly Stream _output;
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
    private int _length;

    public UnifiedCsvWriter(Stream output)
    {
        _output = output;
        Header.CopyTo(_buffer);
        _length = Header.Length;
    }

    public long RowsWritten { get; private set; }

    public void Write(in CgmRow row)
    {
        if (_buffer.Length - _length < RowMaxBytes) FlushBuffer();
        var d = _buffer.AsSpan(_length);
        var n = 0;
        row.SequenceId.TryFormat(d, out var w, default, CultureInfo.InvariantCulture); n += w;
        d[n++] = (byte)',';
        n += CgmTime.FormatIso(row.OriginalTimeMs, d[n..]);
        d[n++] = (byte)',';
        ((int)row.Quality).TryFormat(d[n..], out w, default, CultureInfo.InvariantCulture); n += w;
        d[n++] = (byte)',';
        row.EventType.Utf8Code().CopyTo(d[n..]); n += 8;
        d[n++] = (byte)',';
        n += CgmTime.FormatIso(row.TimeMs, d[n..]);
        d[n++] = (byte)','; n += Number(row.GlucoseMgDl, d[n..]);
        d[n++] = (byte)','; n += Number(row.CarbsG, d[n..]);
        d[n++] = (byte)','; n += Number(row.InsulinSlowU, d[n..]);
        d[n++] = (byte)','; n += Number(row.InsulinFastU, d[n..]);
        d[n++] = (byte)','; n += Number(row.ExerciseSeconds, d[n..]);
        d[n++] = (byte)'\n';
        _length += n;
        RowsWritten++;
    }

    private static int Number(double value, Span<byte> d)
    {
        if (double.IsNaN(value)) return 0;
        value.TryFormat(d, out var n, "R", CultureInfo.InvariantCulture);
        if (d[..n].IndexOfAny((byte)'.', (byte)'E') < 0)
        {
            d[n++] = (byte)'.';
            d[n++] = (byte)'0';
        }
        return n;
    }

    private void FlushBuffer()
    {
        _output.Write(_buffer, 0, _length);
        _length = 0;
    }

    public void Flush()
    {
        FlushBuffer();
        _output.Flush();
    }

    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        Flush();
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
