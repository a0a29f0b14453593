using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Sluice.Protocol.Events;

namespace Sluice.Client.Internal;

/// <summary>
/// Turns decoded OpenAI chunks into <see cref="ChatResponseUpdate"/>s: text as it arrives, tool-call fragments
/// assembled per index and emitted whole (arguments parsed) with the finish reason, usage as <see cref="UsageContent"/>.
/// Only choice 0 is read (the client asks for one answer).
/// </summary>
internal sealed class UpdateAssembler
{
    private readonly SortedDictionary<int, ToolCallBuilder> _tools = [];
    private string? _responseId;
    private string? _modelId;
    private DateTimeOffset? _created;

    /// <summary>Streams <paramref name="url"/> through <paramref name="transport"/> as updates.</summary>
    public static async IAsyncEnumerable<ChatResponseUpdate> StreamAsync(
        SluiceTransport transport, Uri url, byte[] payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var assembler = new UpdateAssembler();
        var updates = new List<ChatResponseUpdate>(4);
        await foreach (var chunk in transport.StreamAsync(url, payload, cancellationToken).ConfigureAwait(false))
        {
            assembler.Add(chunk, updates);
            foreach (var update in updates)
            {
                yield return update;
            }

            updates.Clear();
        }

        if (assembler.FlushTools(finishReason: null) is { } pending)
        {
            yield return pending;
        }
    }

    /// <summary>Adds the updates <paramref name="chunk"/> produces to <paramref name="updates"/>.</summary>
    public void Add(StreamChunk chunk, List<ChatResponseUpdate> updates)
    {
        if (chunk.Info.Identity is { } identity)
        {
            _responseId ??= identity.Id;
            if (identity.Model.Length > 0)
            {
                _modelId ??= identity.Model;
            }

            if (identity.Created > 0)
            {
                _created ??= DateTimeOffset.FromUnixTimeSeconds(identity.Created);
            }
        }

        foreach (var streamEvent in chunk.Events)
        {
            if (streamEvent.ChoiceIndex != 0)
            {
                continue;
            }

            switch (streamEvent)
            {
                case TextDeltaEvent text:
                    updates.Add(NewUpdate([new TextContent(text.Text)]));
                    break;
                case RefusalDeltaEvent refusal:
                    updates.Add(NewUpdate([new TextContent(refusal.Text) { AdditionalProperties = new() { ["refusal"] = true } }]));
                    break;
                case ToolCallDeltaEvent tool:
                    if (!_tools.TryGetValue(tool.ToolIndex, out var builder))
                    {
                        builder = new ToolCallBuilder();
                        _tools.Add(tool.ToolIndex, builder);
                    }

                    builder.Id ??= tool.Id;
                    builder.Name ??= tool.Name;
                    builder.Arguments.Append(tool.ArgumentsFragment);
                    break;
                case FinishEvent finish:
                    updates.Add(FlushTools(new ChatFinishReason(finish.Reason)) ?? NewUpdate([], new ChatFinishReason(finish.Reason)));
                    break;
            }
        }

        if (chunk.Info.Usage is { } usage)
        {
            updates.Add(NewUpdate([new UsageContent(new UsageDetails
            {
                InputTokenCount = usage.PromptTokens,
                OutputTokenCount = usage.CompletionTokens,
                TotalTokenCount = usage.TotalTokens,
            })]));
        }
    }

    /// <summary>An update with every assembled tool call (null when there are none).</summary>
    public ChatResponseUpdate? FlushTools(ChatFinishReason? finishReason)
    {
        if (_tools.Count == 0)
        {
            return null;
        }

        var contents = new List<AIContent>(_tools.Count);
        foreach (var (index, call) in _tools)
        {
            contents.Add(FunctionCallContent.CreateFromParsedArguments(
                call.Arguments.ToString(),
                call.Id ?? $"call_{index}",
                call.Name ?? string.Empty,
                ParseArguments));
        }

        _tools.Clear();
        return NewUpdate(contents, finishReason);
    }

    /// <summary>Parses tool-call arguments (a JSON object) into a dictionary of <see cref="JsonElement"/> values.</summary>
    internal static IDictionary<string, object?> ParseArguments(string json)
    {
        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(json))
        {
            return arguments;
        }

        using var document = JsonDocument.Parse(json);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new JsonException($"Tool-call arguments must be a JSON object, not {document.RootElement.ValueKind}.");
        }

        foreach (var property in document.RootElement.EnumerateObject())
        {
            arguments[property.Name] = property.Value.Clone();
        }

        return arguments;
    }

    private ChatResponseUpdate NewUpdate(IList<AIContent> contents, ChatFinishReason? finishReason = null) => new(ChatRole.Assistant, contents)
    {
        ResponseId = _responseId,
        MessageId = _responseId,
        ModelId = _modelId,
        CreatedAt = _created,
        FinishReason = finishReason,
    };

    private sealed class ToolCallBuilder
    {
        public string? Id { get; set; }

        public string? Name { get; set; }

        public StringBuilder Arguments { get; } = new();
    }
}
