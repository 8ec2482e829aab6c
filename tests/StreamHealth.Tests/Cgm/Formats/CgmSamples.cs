using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>The shared sample exports and small helpers to read inline ones.</summary>
internal static class CgmSamples
{
    public const string Clarity = "Clarity_Export_synthetic.csv";
    public const string ClarityUnified = "Clarity_Export_synthetic_unified.csv";
    public const string Libre = "FreeStyle_Libre_3_synthetic.csv";
    public const string LibreUnified = "FreeStyle_Libre_3_synthetic_unified.csv";
    public const string Unified = "Unified_synthetic.csv";

    public static string PathOf(string name) => Path.Combine(Repo.SharedData, "cgm", name);

    public static byte[] Bytes(string name) => File.ReadAllBytes(PathOf(name));

    /// <summary>Rows in file order (unsorted), through detection, as the reader yields them.</summary>
    public static (CgmFormat Format, List<CgmRow> Rows) ReadInFileOrder(byte[] file)
    {
        using var reader = CgmFormats.Open(new MemoryStream(file));
        return (reader.Format, reader.ReadAll());
    }

    public static (CgmFormat Format, List<CgmRow> Rows) ReadInFileOrder(string text) => ReadInFileOrder(Encoding.UTF8.GetBytes(text));

    /// <summary>Converts to unified CSV text.</summary>
    public static string Convert(byte[] file, out ConversionResult result)
    {
        var output = new MemoryStream();
        result = CgmConverter.Convert(new MemoryStream(file), output);
        return Encoding.UTF8.GetString(output.ToArray());
    }

    public static long Ms(string isoLocal) => CgmTime.TryParseIso(Encoding.ASCII.GetBytes(isoLocal), out var ms)
        ? ms : throw new ArgumentException(isoLocal);
}

/// <summary>A stream that can only be read forward (an HTTP request body): detection must not seek.</summary>
internal sealed class ForwardOnlyStream(byte[] data) : Stream
{
    private int _position;

    public override int Read(byte[] buffer, int offset, int count)
    {
        // Short reads on purpose, as a socket gives them.
        var n = Math.Min(Math.Min(count, 1000), data.Length - _position);
        Array.Copy(data, _position, buffer, offset, n);
        _position += n;
        return n;
    }

    public bool Disposed { get; private set; }
    protected override void Dispose(bool disposing) { Disposed = true; base.Dispose(disposing); }
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
