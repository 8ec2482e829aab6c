using Confluent.Kafka;
using Microsoft.AspNetCore.Http.Features;
using StreamHealth.Cgm;
using StreamHealth.Cgm.Formats;
using StreamHealth.Cgm.Pipeline;
using StreamHealth.Cgm.Series;
using StreamHealth.Runtime.Configuration;
using StreamHealth.Runtime.SchemaRegistry;

namespace StreamHealth.Gateway.Cgm;

/// <summary>The body of an upload endpoint exceeded Gateway:Cgm:MaxUploadBytes (answered 413).</summary>
public sealed class UploadTooLargeException(long limitBytes)
    : Exception($"the upload is larger than the {limitBytes}-byte limit (Gateway:Cgm:MaxUploadBytes)")
{
    public long LimitBytes { get; } = limitBytes;
}

/// <summary>Receives an uploaded export: either the raw request body (any declared content type: the format is
/// detected from the bytes) or the first file of a multipart/form-data body (field name free, like GluRPC's
/// <c>file</c>). <c>curl --data-binary @FILE</c> declares application/x-www-form-urlencoded; that body is the file
/// itself, not a form. The bytes are copied,
/// asynchronously and under the size limit, into a temporary file deleted on close, which the parsers
/// then read synchronously; nothing is kept in memory whole.</summary>
public static class CgmUploads
{
    /// <summary>Receives an upload and resamples it, in the file's own order, into its 5-minute series
    /// (<see cref="CgmDataset.SourceFormat"/> names the format detected).</summary>
    public static async Task<(CgmDataset Dataset, ResampleReport Report, CgmReadReport Read)> ReceiveSeriesAsync(HttpRequest request,
        long maxBytes, CancellationToken ct)
    {
        List<CgmRow> rows;
        CgmFormat format;
        var read = new CgmReadReport();
        await using (var file = await ReceiveAsync(request, maxBytes, ct))
            rows = CgmFormats.ReadFileOrder(file, out format, read);
        var dataset = CgmDataset.Resample(format, rows, new CgmSeriesOptions(), out var report);
        return (dataset, report, read);
    }

    /// <summary>Raw-body content types an upload endpoint declares. The last, */*, is what the endpoint really takes (the
    /// format is detected from the bytes); without it ASP.NET Core's endpoint matching answers 415 to anything else,
    /// curl's default application/x-www-form-urlencoded included.</summary>
    public static readonly string[] RawContentTypes = ["text/csv", "application/json", "application/octet-stream", "*/*"];

    /// <summary>Only multipart/form-data is a form here; any other content type is the raw file.</summary>
    public static bool IsMultipart(HttpRequest request) =>
        request.ContentType is { } type && type.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase);

    public static async Task<FileStream> ReceiveAsync(HttpRequest request, long maxBytes, CancellationToken ct)
    {
        if (request.ContentLength > maxBytes) throw new UploadTooLargeException(maxBytes);
        // Kestrel's own limit (30 MB by default) would answer before ours with a bare 413; ours decides.
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = maxBytes + 64 * 1024;   // multipart framing on top of the file itself
        Stream source;
        if (IsMultipart(request))
        {
            IFormCollection form;
            try
            {
                form = await request.ReadFormAsync(new FormOptions { MultipartBodyLengthLimit = maxBytes + 64 * 1024 }, ct);
            }
            catch (InvalidDataException e) when (e.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
            {
                throw new UploadTooLargeException(maxBytes);
            }
            var file = form.Files.Count > 0 ? form.Files[0] : throw new BadHttpRequestException("multipart body has no file part");
            if (file.Length > maxBytes) throw new UploadTooLargeException(maxBytes);
            source = file.OpenReadStream();
        }
        else
        {
            source = request.Body;
        }
        var path = Path.Combine(Path.GetTempPath(), "streamhealth-upload-" + Guid.NewGuid().ToString("N"));
        var temp = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 64 * 1024,
            FileOptions.DeleteOnClose | FileOptions.Asynchronous);
        try
        {
            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            while ((n = await source.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
                if (total > maxBytes) throw new UploadTooLargeException(maxBytes);
                await temp.WriteAsync(buffer.AsMemory(0, n), ct);
            }
            temp.Position = 0;
            return temp;
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await temp.DisposeAsync();
            throw new UploadTooLargeException(maxBytes);
        }
        catch
        {
            await temp.DisposeAsync();
            throw;
        }
        finally
        {
            if (source != request.Body) await source.DisposeAsync();
        }
    }
}

/// <summary>The gateway's producer of cgm.readings (uploads), created on first use; records are Avro through the gateway's
/// schema registry connection (<see cref="Registry"/>, the DI singleton).</summary>
public sealed class CgmReadingsPublisher(StreamHealthOptions options, SchemaRegistryConnection registry) : IDisposable
{
    private readonly Lazy<IProducer<byte[], byte[]>> _producer = new(() => new ProducerBuilder<byte[], byte[]>(new ProducerConfig
    {
        BootstrapServers = options.Kafka.BootstrapServers, EnableIdempotence = true, LingerMs = 5, ClientId = "gateway-cgm-uploads",
        MessageTimeoutMs = 30_000,
    }).Build());

    public bool Configured => !string.IsNullOrEmpty(options.Kafka.BootstrapServers);
    public string Topic { get; init; } = Schemas.Topics.CgmReadings;
    public IProducer<byte[], byte[]> Producer => _producer.Value;
    public SchemaRegistryConnection Registry => registry;

    public void Dispose()
    {
        if (_producer.IsValueCreated) _producer.Value.Dispose();
    }
}
