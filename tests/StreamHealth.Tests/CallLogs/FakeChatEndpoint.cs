using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace StreamHealth.Tests.CallLogs;

/// <summary>An OpenAI-compatible chat-completions endpoint as the tests need one, on a real Kestrel port on 127.0.0.1 (nothing
/// leaves the machine). It "extracts" by reading the labels the test gave for each transcript (<see cref="Label"/>; an unknown
/// transcript has nothing to extract) and answers in the chat-completion envelope, the content being the JSON the extractor's
/// schema describes. <see cref="Fault"/> makes it misbehave in one of the ways a real endpoint or model can, for
/// <see cref="FaultyRequests"/> requests (then it answers well again).</summary>
public sealed class FakeChatEndpoint : IAsyncDisposable
{
    public enum Faults
    {
        None, Status500, Status429, Status400, Hang, NotJson, NoContent, ContentNotJson,
        /// <summary>A medication status outside taken/skipped/stopped/mentioned.</summary>
        BadStatus,
        /// <summary>Confidence 1.5.</summary>
        ConfidenceOutOfRange,
        /// <summary>dose_unit "teaspoons" (not one of DoseUnits).</summary>
        BadDoseUnit,
        /// <summary>A field the schema does not have.</summary>
        ExtraField,
        /// <summary>An entry whose evidence is not in its transcript (an invented entry).</summary>
        EvidenceNotInTranscript,
        /// <summary>One more transcript than was asked.</summary>
        ExtraTranscript,
        /// <summary>The last transcript left out.</summary>
        MissingTranscript,
        /// <summary>The first transcript answered twice.</summary>
        DuplicateTranscript,
    }

    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, JsonObject> _labels = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<IReadOnlyList<string>> _batches = new();
    private readonly ConcurrentQueue<JsonNode> _requestBodies = new();
    private readonly ConcurrentQueue<string> _authorizations = new();
    private int _requests, _faultsLeft;

    public string BaseUrl { get; }
    public Faults Fault { get; set; }
    /// <summary>How many requests get <see cref="Fault"/> (then it answers well); int.MaxValue by default.</summary>
    public int FaultyRequests { get => Volatile.Read(ref _faultsLeft); set => Volatile.Write(ref _faultsLeft, value); }
    /// <summary>Requests received, whatever was answered.</summary>
    public int Requests => Volatile.Read(ref _requests);
    /// <summary>The transcripts of each request received, in order of arrival.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Batches => _batches.ToArray();
    public IReadOnlyList<JsonNode> RequestBodies => _requestBodies.ToArray();
    public IReadOnlyList<string> Authorizations => _authorizations.ToArray();

    private FakeChatEndpoint(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
        FaultyRequests = int.MaxValue;
    }

    public static async Task<FakeChatEndpoint> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        FakeChatEndpoint? self = null;
        app.MapPost("/v1/chat/completions", async (HttpRequest request, CancellationToken ct) =>
        {
            var body = await JsonNode.ParseAsync(request.Body, cancellationToken: ct);
            return await self!.AnswerAsync(body!, request.Headers.Authorization.ToString(), ct);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single().TrimEnd('/');
        self = new FakeChatEndpoint(app, address + "/v1");
        return self;
    }

    /// <summary>What the "model" extracts from <paramref name="transcript"/>: lists of entries in the answer's wire form
    /// (<see cref="Medication"/>, <see cref="Food"/>, <see cref="Symptom"/>).</summary>
    public void Label(string transcript, JsonObject[]? medications = null, JsonObject[]? foods = null, JsonObject[]? symptoms = null) =>
        _labels[transcript] = new JsonObject
        {
            ["medications"] = new JsonArray((medications ?? []).Select(JsonNode? (m) => m.DeepClone()).ToArray()),
            ["foods"] = new JsonArray((foods ?? []).Select(JsonNode? (f) => f.DeepClone()).ToArray()),
            ["symptoms"] = new JsonArray((symptoms ?? []).Select(JsonNode? (s) => s.DeepClone()).ToArray()),
        };

    public static JsonObject Medication(string name, double? dose, string? unit, string? frequency, string status, string evidence, double confidence = 0.9) =>
        new() { ["generic_name"] = name, ["dose_value"] = dose, ["dose_unit"] = unit, ["frequency"] = frequency, ["status"] = status,
                ["confidence"] = confidence, ["evidence"] = evidence };

    public static JsonObject Food(string item, double? quantity, string? unit, string? meal, string evidence, double confidence = 0.8) =>
        new() { ["item"] = item, ["quantity"] = quantity, ["unit"] = unit, ["meal"] = meal, ["confidence"] = confidence, ["evidence"] = evidence };

    public static JsonObject Symptom(string name, bool present, string? severity, string? onset, string evidence, double confidence = 0.85) =>
        new() { ["name"] = name, ["present"] = present, ["severity"] = severity, ["onset"] = onset, ["confidence"] = confidence, ["evidence"] = evidence };

    private async Task<IResult> AnswerAsync(JsonNode body, string authorization, CancellationToken ct)
    {
        Interlocked.Increment(ref _requests);
        _requestBodies.Enqueue(body);
        _authorizations.Enqueue(authorization);
        var user = body["messages"]!.AsArray().Single(m => (string?)m!["role"] == "user")!;
        var asked = JsonNode.Parse((string)user["content"]!)!["transcripts"]!.AsArray()
            .Select(t => (Index: (int)t!["index"]!, Transcript: (string)t["transcript"]!)).ToList();
        _batches.Enqueue(asked.Select(a => a.Transcript).ToList());

        var fault = Interlocked.Decrement(ref _faultsLeft) >= 0 ? Fault : Faults.None;
        switch (fault)
        {
            case Faults.Status500: return Results.Problem("model overloaded", statusCode: 500);
            case Faults.Status429: return Results.Problem("slow down", statusCode: 429);
            case Faults.Status400: return Results.Problem("bad request", statusCode: 400);
            case Faults.Hang:
                await Task.Delay(Timeout.Infinite, ct);
                return Results.Ok();
            case Faults.NotJson: return Results.Content("<html>gateway error</html>", "text/html");
            case Faults.NoContent: return Results.Json(new { choices = new[] { new { message = new { role = "assistant", refusal = "no" } } } });
            case Faults.ContentNotJson: return Envelope("Sure! Here are the entries: metformin.");
        }

        var answers = new JsonArray();
        foreach (var (index, transcript) in asked)
        {
            var entries = _labels.TryGetValue(transcript, out var label) ? (JsonObject)label.DeepClone()
                : new JsonObject { ["medications"] = new JsonArray(), ["foods"] = new JsonArray(), ["symptoms"] = new JsonArray() };
            entries.Insert(0, "index", index);
            answers.Add(entries);
        }
        Spoil(fault, answers, asked.Count);
        return Envelope(new JsonObject { ["transcripts"] = answers }.ToJsonString());
    }

    /// <summary>A well-formed answer made wrong in exactly one way (each needs a first transcript with a first medication).</summary>
    private static void Spoil(Faults fault, JsonArray answers, int asked)
    {
        JsonObject FirstMedication() => (JsonObject)answers[0]!["medications"]!.AsArray()[0]!;
        switch (fault)
        {
            case Faults.BadStatus: FirstMedication()["status"] = "forgot"; break;
            case Faults.ConfidenceOutOfRange: FirstMedication()["confidence"] = 1.5; break;
            case Faults.BadDoseUnit: FirstMedication()["dose_unit"] = "teaspoons"; break;
            case Faults.ExtraField: FirstMedication()["route"] = "oral"; break;
            case Faults.EvidenceNotInTranscript: FirstMedication()["evidence"] = "warfarin 5 mg"; break;
            case Faults.ExtraTranscript:
                answers.Add(new JsonObject { ["index"] = asked, ["medications"] = new JsonArray(), ["foods"] = new JsonArray(), ["symptoms"] = new JsonArray() });
                break;
            case Faults.MissingTranscript: answers.RemoveAt(answers.Count - 1); break;
            case Faults.DuplicateTranscript: answers.Add(answers[0]!.DeepClone()); break;
        }
    }

    private static IResult Envelope(string content) => Results.Json(new
    {
        id = "chatcmpl-fake", @object = "chat.completion", model = "fake",
        choices = new[] { new { index = 0, message = new { role = "assistant", content }, finish_reason = "stop" } },
    });

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
