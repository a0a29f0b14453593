using System.Text.Json;

namespace Sluice.Protocol.Responses;

/// <summary>What every response object of one call says besides its output: its id, time, model and the request's settings.</summary>
/// <param name="Id">The response id (<c>resp_…</c>).</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="Model">The model name reported.</param>
/// <param name="Echo">The request's settings, echoed as OpenAI does.</param>
public sealed record ResponseHeader(string Id, long CreatedAt, string Model, ResponsesEcho Echo);

/// <summary>The request settings a response object repeats (<c>instructions</c>, <c>tools</c>, <c>text</c>, …).</summary>
public sealed record ResponsesEcho
{
    /// <summary>An empty echo (every setting at its default).</summary>
    public static ResponsesEcho Empty { get; } = new();

    /// <summary><c>instructions</c>.</summary>
    public string? Instructions { get; init; }

    /// <summary><c>max_output_tokens</c>.</summary>
    public int? MaxOutputTokens { get; init; }

    /// <summary><c>temperature</c>.</summary>
    public double? Temperature { get; init; }

    /// <summary><c>top_p</c>.</summary>
    public double? TopP { get; init; }

    /// <summary><c>top_logprobs</c>.</summary>
    public int? TopLogprobs { get; init; }

    /// <summary><c>parallel_tool_calls</c>.</summary>
    public bool? ParallelToolCalls { get; init; }

    /// <summary><c>previous_response_id</c>.</summary>
    public string? PreviousResponseId { get; init; }

    /// <summary><c>store</c>.</summary>
    public bool Store { get; init; } = true;

    /// <summary><c>user</c>.</summary>
    public string? User { get; init; }

    /// <summary><c>tools</c> as sent.</summary>
    public JsonElement? Tools { get; init; }

    /// <summary><c>tool_choice</c> as sent.</summary>
    public JsonElement? ToolChoice { get; init; }

    /// <summary><c>text.format</c> as sent.</summary>
    public JsonElement? TextFormat { get; init; }

    /// <summary><c>metadata</c> as sent.</summary>
    public JsonElement? Metadata { get; init; }

    /// <summary>Reads the settings from a Responses request body (already validated by <see cref="ResponsesRequestParser"/>).</summary>
    public static ResponsesEcho Read(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = JsonDocument.Parse(utf8Json);
        var root = document.RootElement;
        return new ResponsesEcho
        {
            Instructions = String(root, "instructions"),
            MaxOutputTokens = root.TryGetProperty("max_output_tokens", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetInt32() : null,
            Temperature = root.TryGetProperty("temperature", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : null,
            TopP = root.TryGetProperty("top_p", out var p) && p.ValueKind == JsonValueKind.Number ? p.GetDouble() : null,
            TopLogprobs = root.TryGetProperty("top_logprobs", out var l) && l.ValueKind == JsonValueKind.Number ? l.GetInt32() : null,
            ParallelToolCalls = root.TryGetProperty("parallel_tool_calls", out var c) && c.ValueKind is JsonValueKind.True or JsonValueKind.False ? c.GetBoolean() : null,
            PreviousResponseId = String(root, "previous_response_id"),
            Store = !(root.TryGetProperty("store", out var s) && s.ValueKind == JsonValueKind.False),
            User = String(root, "user"),
            Tools = Copy(root, "tools"),
            ToolChoice = Copy(root, "tool_choice"),
            TextFormat = root.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.Object ? Copy(text, "format") : null,
            Metadata = Copy(root, "metadata"),
        };
    }

    private static string? String(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static JsonElement? Copy(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value.Clone() : null;
}
