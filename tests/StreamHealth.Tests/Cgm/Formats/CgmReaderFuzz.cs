using System.Text;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Cgm.Formats;

/// <summary>Helpers for the reader tests: sample paths, reading text, and the garbage drills (truncation
/// and seeded byte flips) after which a reader may only ever throw <see cref="CgmFormatException"/>.</summary>
internal static class CgmReaderFuzz
{
    public static string Sample(string name) => Path.Combine(Repo.SharedData, "cgm", name);

    public static List<CgmRow> Read(ICgmFormatReader format, string text) => Read(format, Encoding.UTF8.GetBytes(text));

    public static List<CgmRow> Read(ICgmFormatReader format, byte[] bytes)
    {
        using var reader = format.Open(new MemoryStream(bytes));
        return reader.ReadAll();
    }

    public static CgmFormatException ReadFails(ICgmFormatReader format, string text) =>
        Assert.ThrowsAny<CgmFormatException>(() => Read(format, text));

    public static string Time(long ms) => CgmTime.FormatIso(ms);

    /// <summary>Reads every prefix cut at <paramref name="cuts"/> random offsets, then
    /// <paramref name="flips"/> copies with 1-4 random bytes overwritten; returns how many of the mutated
    /// copies were rejected, so a caller can check the drill really reached the error paths.</summary>
    public static int AssertOnlyFormatErrors(ICgmFormatReader format, byte[] sample, int seed, int cuts, int flips)
    {
        var random = new Random(seed);
        var rejected = 0;
        for (var i = 0; i < cuts; i++)
            rejected += ReadRejects(format, sample.AsSpan(0, random.Next(sample.Length + 1)).ToArray(), $"cut {i}");
        var copy = new byte[sample.Length];
        for (var i = 0; i < flips; i++)
        {
            sample.CopyTo(copy, 0);
            for (var k = random.Next(1, 5); k > 0; k--) copy[random.Next(copy.Length)] = (byte)random.Next(256);
            rejected += ReadRejects(format, copy, $"flip {i}");
        }
        return rejected;
    }

    private static int ReadRejects(ICgmFormatReader format, byte[] bytes, string what)
    {
        try
        {
            format.Matches(bytes.AsSpan(0, Math.Min(bytes.Length, CgmFormats.HeadBytes)));
            using var reader = format.Open(new MemoryStream(bytes));
            while (reader.TryRead(out _)) { }
            return 0;
        }
        catch (CgmFormatException e)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Problem));
            return 1;
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"{format.Format.Name()} {what}: {e.GetType().Name} instead of CgmFormatException: {e}");
        }
    }

    /// <summary>A stream that cannot seek and hands out at most <paramref name="chunk"/> bytes a read, as a
    /// network upload does.</summary>
    public sealed class TrickleStream(byte[] bytes, int chunk = int.MaxValue) : Stream
    {
        private int _position;

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = Math.Min(Math.Min(count, chunk), bytes.Length - _position);
            Array.Copy(bytes, _position, buffer, offset, n);
            _position += n;
            return n;
        }

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
}
