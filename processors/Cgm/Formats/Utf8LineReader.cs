using System.Buffers;

namespace StreamHealth.Cgm.Formats;

/// <summary>Splits a UTF-8 stream into lines without allocating per line: a pooled buffer is refilled
/// as lines are consumed, so memory is bounded by the longest line (capped at
/// <see cref="MaxLineBytes"/>). Lines end at \n; a trailing \r is removed. A UTF-8 BOM at the start
/// is skipped. <see cref="TryReadRecord"/> instead returns one CSV record, which may span lines when a
/// quoted field holds a line break (a note typed into the app).</summary>
public sealed class Utf8LineReader : IDisposable
{
    public const int MaxLineBytes = 1 << 20;
    private readonly Stream _stream;
    private readonly CgmFormat? _format;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _eof;
    private bool _first = true;
    private long _linesConsumed;

    /// <param name="format">Named in the error a too-long line raises (null while the format is unknown).</param>
    public Utf8LineReader(Stream stream, int bufferBytes = 64 * 1024, CgmFormat? format = null)
    {
        _stream = stream;
        _format = format;
        _buffer = ArrayPool<byte>.Shared.Rent(bufferBytes);
    }

    /// <summary>1-based number of the line last returned (for a record, the line it starts on).</summary>
    public long LineNumber { get; private set; }

    /// <summary>The next line (valid until the next call), or false at the end of the stream.</summary>
    /// <exception cref="CgmFormatException">A line longer than <see cref="MaxLineBytes"/>.</exception>
    public bool TryReadLine(out ReadOnlySpan<byte> line)
    {
        while (true)
        {
            var available = _buffer.AsSpan(_start, _end - _start);
            var newline = available.IndexOf((byte)'\n');
            if (newline >= 0)
            {
                line = Trim(available[..newline]);
                _start += newline + 1;
                LineNumber = ++_linesConsumed;
                return true;
            }
            if (_eof)
            {
                if (available.IsEmpty) { line = default; return false; }
                line = Trim(available);
                _start = _end;
                LineNumber = ++_linesConsumed;
                return true;
            }
            Fill();
        }
    }

    /// <summary>The next CSV record (valid until the next call), or false at the end of the stream. Like
    /// <see cref="TryReadLine"/>, except that a line break inside a quoted field (a quote at the start of
    /// a field, as <see cref="CsvLine.Split"/> reads it) continues the record on the next line. Lines
    /// without a quote, which is nearly every data line, cost one extra vectorised scan.</summary>
    /// <exception cref="CgmFormatException">A record longer than <see cref="MaxLineBytes"/>.</exception>
    public bool TryReadRecord(byte separator, out ReadOnlySpan<byte> record)
    {
        var scan = _start;          // where the current physical line starts
        var inQuotes = false;
        var fieldStart = true;
        var lines = 0;
        while (true)
        {
            var available = _buffer.AsSpan(scan, _end - scan);
            var newline = available.IndexOf((byte)'\n');
            var physical = newline >= 0 ? available[..newline] : available;
            if (newline >= 0 || _eof)
            {
                if (inQuotes || physical.Contains((byte)'"')) Scan(physical, separator, ref inQuotes, ref fieldStart);
                if (newline >= 0 && inQuotes)
                {
                    // The line break belongs to a quoted field: the record goes on.
                    scan += newline + 1;
                    lines++;
                    fieldStart = false;
                    continue;
                }
                if (newline < 0 && scan + physical.Length == _start) { record = default; return false; }
                var length = scan - _start + physical.Length;
                record = Trim(_buffer.AsSpan(_start, length));
                _start = newline >= 0 ? _start + length + 1 : _end;
                LineNumber = _linesConsumed + 1;
                _linesConsumed += lines + 1;
                return true;
            }
            scan -= Fill();
        }
    }

    /// <summary>Follows the quoting state of CsvLine.Split across one physical line.</summary>
    private static void Scan(ReadOnlySpan<byte> line, byte separator, ref bool inQuotes, ref bool fieldStart)
    {
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (inQuotes)
            {
                if (c != (byte)'"') continue;
                if (i + 1 < line.Length && line[i + 1] == (byte)'"') { i++; continue; }
                inQuotes = false;
            }
            else if (c == separator) fieldStart = true;
            else
            {
                if (fieldStart && c == (byte)'"') inQuotes = true;
                fieldStart = false;
            }
        }
    }

    private ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> line)
    {
        if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
        if (_first)
        {
            _first = false;
            if (line.StartsWith("\uFEFF"u8)) line = line[3..];
        }
        return line;
    }

    /// <summary>Moves the unread bytes to the front (growing the buffer when it is full) and reads more;
    /// returns how far the unread bytes moved.</summary>
    private int Fill()
    {
        var shift = _start;
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length)
        {
            if (_buffer.Length >= MaxLineBytes)
                throw new CgmFormatException(_format, _linesConsumed + 1, $"line longer than {MaxLineBytes} bytes");
            var bigger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
            Buffer.BlockCopy(_buffer, 0, bigger, 0, _end);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        var read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0) _eof = true;
        else _end += read;
        return shift;
    }

    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        _start = _end = 0;
    }
}
