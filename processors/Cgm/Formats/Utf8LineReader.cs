using System.Buffers;

namespace StreamHealth.Cgm.Formats;

/// <summary>Splits a UTF-8 stream into lines without allocating per line: a pooled buffer is refilled
/// as lines are consumed, so memory is bounded by the longest line (capped at
/// <see cref="MaxLineBytes"/>). Lines end at \n; a trailing \r is removed. A UTF-8 BOM at the start
/// is skipped.</summary>
public sealed class Utf8LineReader : IDisposable
{
    public const int MaxLineBytes = 1 << 20;
    private readonly Stream _stream;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _eof;
    private bool _first = true;

    public Utf8LineReader(Stream stream, int bufferBytes = 64 * 1024)
    {
        _stream = stream;
        _buffer = ArrayPool<byte>.Shared.Rent(bufferBytes);
    }

    /// <summary>1-based number of the line last returned.</summary>
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
                LineNumber++;
                return true;
            }
            if (_eof)
            {
                if (available.IsEmpty) { line = default; return false; }
                line = Trim(available);
                _start = _end;
                LineNumber++;
                return true;
            }
            Fill();
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

    private void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length)
        {
            if (_buffer.Length >= MaxLineBytes)
                throw new CgmFormatException(null, LineNumber + 1, $"line longer than {MaxLineBytes} bytes");
            var bigger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
            Buffer.BlockCopy(_buffer, 0, bigger, 0, _end);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        var read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0) _eof = true;
        else _end += read;
    }

    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        _start = _end = 0;
    }
}
