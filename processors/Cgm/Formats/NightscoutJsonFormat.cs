using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Text.Json;

namespace StreamHealth.Cgm.Formats;

/// <summary>Nightscout's REST entries (<c>/api/v1/entries.json</c>): a JSON array of entry objects.
/// Recognised by an array whose first element is an object, with an <c>"sgv"</c> or <c>"mbg"</c> key
/// in the head.</summary>
public sealed class NightscoutJsonFormat : ICgmFormatReader
{
    public CgmFormat Format => CgmFormat.NightscoutJson;

    public bool Matches(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith("\uFEFF"u8)) head = head[3..];
        var text = head.TrimStart(" \t\r\n"u8);
        if (text.IsEmpty || text[0] != '[') return false;
        text = text[1..].TrimStart(" \t\r\n"u8);
        return !text.IsEmpty && text[0] == '{'
            && (head.IndexOf("\"sgv\""u8) >= 0 || head.IndexOf("\"mbg\""u8) >= 0);
    }

    public CgmRowReader Open(Stream file) => new NightscoutJsonReader(file);
}

/// <summary>Streams the entries array with <see cref="Utf8JsonReader"/> over a pooled buffer that is
/// refilled as tokens are consumed (and grown only for a token longer than the buffer), so the array is
/// never held whole. Entry types: "sgv" → EGV_READ, "mbg" (meter) → CALIBRAT, "cal" and others skipped;
/// an entry without a type is read by the value it carries. Times are UTC: "date" (ms), else "dateString",
/// else "sysTime". Values are mg/dL unless the entry says <c>"units": "mmol"</c>. <see cref="Line"/> is the
/// 1-based index of the entry.</summary>
internal sealed class NightscoutJsonReader : CgmRowReader
{
    private const int MaxBufferBytes = 16 << 20;
    private const int MaxTextBytes = 64;

    private readonly Stream _stream;
    private byte[] _buffer;
    private int _start, _end;
    private bool _eof, _started, _arrayOpen, _arrayClosed, _done;
    private JsonReaderState _state = new();
    private long _entry;
    private Property _property;
    private Entry _current;

    public NightscoutJsonReader(Stream file, int bufferBytes = 64 * 1024)
    {
        _stream = file;
        _buffer = ArrayPool<byte>.Shared.Rent(bufferBytes);
    }

    public override CgmFormat Format => CgmFormat.NightscoutJson;

    public override long Line => _entry;

    public override bool TryRead(out CgmRow row)
    {
        row = default;
        if (_done) return false;
        while (true)
        {
            if (!_started)
            {
                while (_end - _start < 3 && !_eof) Fill();
                _started = true;
                if (_buffer.AsSpan(_start, _end - _start).StartsWith("\uFEFF"u8)) _start += 3;
            }
            var reader = new Utf8JsonReader(_buffer.AsSpan(_start, _end - _start), _eof, _state);
            bool produced;
            try
            {
                produced = ReadTokens(ref reader, out row);
            }
            catch (JsonException e)
            {
                throw Error($"invalid JSON: {e.Message}");
            }
            _start += (int)reader.BytesConsumed;
            _state = reader.CurrentState;
            if (produced) return true;
            if (_eof)
            {
                // The final block is read to the end, so the reader has already rejected an unclosed array.
                if (!_arrayClosed) throw Error("the file ends before the entries array is closed");
                _done = true;
                return false;
            }
            Fill();
        }
    }

    private bool ReadTokens(ref Utf8JsonReader reader, out CgmRow row)
    {
        while (reader.Read())
        {
            var depth = reader.CurrentDepth;
            var token = reader.TokenType;
            if (depth == 0)
            {
                if (token == JsonTokenType.StartArray && !_arrayOpen) _arrayOpen = true;
                else if (token == JsonTokenType.EndArray && _arrayOpen) _arrayClosed = true;
                else throw Error("the file is not a JSON array of entries");
            }
            else if (depth == 1)
            {
                if (token == JsonTokenType.StartObject)
                {
                    _entry++;
                    _current = Entry.Empty;
                    _property = Property.None;
                }
                else if (token == JsonTokenType.EndObject)
                {
                    if (Complete(out row)) return true;
                }
                else
                {
                    _entry++;
                    throw Error("the entry is not a JSON object");
                }
            }
            else if (depth == 2)
            {
                if (token == JsonTokenType.PropertyName) _property = Identify(ref reader);
                else
                {
                    Assign(ref reader);
                    _property = Property.None;
                }
            }
            // Deeper tokens belong to nested values no entry field needs.
        }
        row = default;
        return false;
    }

    private enum Property : byte { None, Date, DateString, SysTime, Sgv, Mbg, Type, Units }

    private static Property Identify(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("date"u8) ? Property.Date
        : reader.ValueTextEquals("dateString"u8) ? Property.DateString
        : reader.ValueTextEquals("sysTime"u8) ? Property.SysTime
        : reader.ValueTextEquals("sgv"u8) ? Property.Sgv
        : reader.ValueTextEquals("mbg"u8) ? Property.Mbg
        : reader.ValueTextEquals("type"u8) ? Property.Type
        : reader.ValueTextEquals("units"u8) ? Property.Units
        : Property.None;

    private void Assign(ref Utf8JsonReader reader)
    {
        if (_property == Property.None || reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray) return;
        if (reader.TokenType == JsonTokenType.Null) return;
        var token = reader.TokenType;
        var raw = reader.ValueSpan;
        Span<byte> unescaped = stackalloc byte[MaxTextBytes];
        // Strings are parsed unescaped; one longer than any field this reader parses reads as empty.
        var text = token != JsonTokenType.String || !reader.ValueIsEscaped ? raw
            : raw.Length <= unescaped.Length ? unescaped[..reader.CopyString(unescaped)]
            : default;
        switch (_property)
        {
            case Property.Date:
                if (token is not (JsonTokenType.Number or JsonTokenType.String) || !NightscoutEntry.TryParseEpochMs(text, out _current.DateMs))
                    throw Error($"date {Show(token, raw)} is not a time in milliseconds since 1970");
                break;
            case Property.DateString:
                if (token != JsonTokenType.String || !NightscoutEntry.TryParseIsoUtc(text, out _current.DateStringMs)) _current.DateStringMs = 0;
                break;
            case Property.SysTime:
                if (token != JsonTokenType.String || !NightscoutEntry.TryParseIsoUtc(text, out _current.SysTimeMs)) _current.SysTimeMs = 0;
                break;
            case Property.Sgv:
            case Property.Mbg:
                if (token is not (JsonTokenType.Number or JsonTokenType.String)
                    || !Utf8Parser.TryParse(text, out double value, out var n) || n != text.Length || !double.IsFinite(value))
                    throw Error($"{(_property == Property.Sgv ? "sgv" : "mbg")} {Show(token, raw)} is not a number");
                if (_property == Property.Sgv) _current.Sgv = value;
                else _current.Mbg = value;
                break;
            case Property.Type:
                if (token != JsonTokenType.String) throw Error($"type {Show(token, raw)} is not a string");
                _current.Kind = NightscoutEntry.ParseKind(text);
                _current.HasKind = true;
                break;
            case Property.Units:
                if (token != JsonTokenType.String || !NightscoutEntry.TryParseUnits(text, out _current.Mmol))
                    throw Error($"units {Show(token, raw)} is neither mg/dl nor mmol");
                break;
        }
    }

    private static string Show(JsonTokenType token, ReadOnlySpan<byte> raw) => token switch
    {
        JsonTokenType.String or JsonTokenType.Number => CsvLine.Show(raw),
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        _ => "(an object or array)",
    };

    private bool Complete(out CgmRow row)
    {
        row = default;
        var e = _current;
        var kind = e.HasKind ? e.Kind
            : !double.IsNaN(e.Sgv) ? NightscoutEntry.Kind.Sgv
            : !double.IsNaN(e.Mbg) ? NightscoutEntry.Kind.Mbg
            : NightscoutEntry.Kind.Other;
        if (kind is not (NightscoutEntry.Kind.Sgv or NightscoutEntry.Kind.Mbg))
        {
            Skip(NightscoutEntry.SkipOtherType);
            return false;
        }
        var name = kind == NightscoutEntry.Kind.Sgv ? "sgv" : "mbg";
        var value = kind == NightscoutEntry.Kind.Sgv ? e.Sgv : e.Mbg;
        if (double.IsNaN(value)) throw Error($"an {name} entry without an {name} value");
        var timeMs = e.DateMs != 0 ? e.DateMs : e.DateStringMs != 0 ? e.DateStringMs : e.SysTimeMs;
        if (timeMs == 0) throw Error("no time: date is missing, and dateString and sysTime are missing or not ISO 8601");
        var ok = NightscoutEntry.TryGlucose(value, e.Mmol, out var mgDl, out var statusCode);
        if (statusCode && kind == NightscoutEntry.Kind.Sgv)
        {
            Skip(NightscoutEntry.SkipStatusCode);
            return false;
        }
        if (!ok) throw Error($"{name} {value.ToString(CultureInfo.InvariantCulture)}{(e.Mmol ? " mmol/L" : "")} is out of range");
        row = NightscoutEntry.Reading(kind, timeMs, mgDl);
        return true;
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
            if (_buffer.Length >= MaxBufferBytes) throw Error($"a JSON token longer than {MaxBufferBytes} bytes");
            var bigger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
            Buffer.BlockCopy(_buffer, 0, bigger, 0, _end);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        var read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0) _eof = true;
        else _end += read;
    }

    public override void Dispose()
    {
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
            _start = _end = 0;
        }
        _stream.Dispose();
        base.Dispose();
    }

    /// <summary>The fields of the entry being read; 0 / NaN = absent.</summary>
    private struct Entry
    {
        public long DateMs, DateStringMs, SysTimeMs;
        public double Sgv, Mbg;
        public NightscoutEntry.Kind Kind;
        public bool HasKind, Mmol;

        public static Entry Empty => new() { Sgv = double.NaN, Mbg = double.NaN };
    }
}
