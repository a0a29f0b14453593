using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Completions;

/// <summary>
/// Parses a legacy <c>POST /v1/completions</c> body into a <see cref="ChatRequest"/> whose
/// <see cref="ChatRequest.Completion"/> carries what only completions have; bad input is a 400 naming the parameter.
/// </summary>
/// <remarks>
/// The chat view (for backends that are not OpenAI-compatible, admission and estimates): the first prompt as one user
/// message, <c>max_tokens</c> (default 16, as OpenAI's), <c>temperature</c>, <c>top_p</c>, <c>n</c>, <c>stop</c>,
/// <c>seed</c>, <c>user</c>, <c>stream</c>, <c>stream_options.include_usage</c>, and <c>logprobs</c> as
/// <c>logprobs</c>/<c>top_logprobs</c>. Penalties, <c>logit_bias</c> and fields Sluice does not know reach
/// OpenAI-compatible upstreams only, in the body as sent.
/// </remarks>
public static class CompletionRequestParser
{
    /// <summary>OpenAI's <c>max_tokens</c> when a completion request sets none.</summary>
    public const int DefaultMaxTokens = 16;

    /// <summary>Largest <c>logprobs</c> (OpenAI's own limit).</summary>
    public const int MaxLogprobs = 5;

    /// <summary>Most prompts in one request.</summary>
    public const int MaxPrompts = 2048;

    /// <summary>Parses and validates <paramref name="utf8Json"/>; the request keeps the bytes for pass-through.</summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static ChatRequest Parse(ReadOnlyMemory<byte> utf8Json, ChatRequestLimits? limits = null)
    {
        limits ??= new ChatRequestLimits();
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-fast\", \"prompt\": \"Once upon a time\", \"max_tokens\": 20}");
        var root = document.RootElement;
        if (RequestFields.TryGet(root, "messages", out _))
        {
            throw ChatException.BadRequest(
                "messages belongs to POST /v1/chat/completions; a completion request sends \"prompt\". Send the text as prompt, or use the chat endpoint.",
                "messages", "unsupported_parameter");
        }

        if (!RequestFields.TryGet(root, "prompt", out var promptElement))
        {
            throw RequestFields.Missing("prompt", "send the text to complete, e.g. \"prompt\": \"Once upon a time\".");
        }

        var prompts = ParsePrompts(promptElement, limits);
        var maxTokens = RequestFields.OptionalInt(root, "max_tokens") ?? DefaultMaxTokens;
        if (maxTokens < 0)
        {
            throw ChatException.BadRequest($"max_tokens must be 0 or more (got {maxTokens}).", "max_tokens");
        }

        var n = RequestFields.OptionalInt(root, "n") ?? 1;
        if (n is < 1 or > ChatRequestParser.MaxChoices)
        {
            throw ChatException.BadRequest($"n must be between 1 and {ChatRequestParser.MaxChoices} (got {n}).", "n");
        }

        var bestOf = RequestFields.OptionalInt(root, "best_of");
        if (bestOf is { } best && (best < n || best > 20))
        {
            throw ChatException.BadRequest($"best_of must be between n ({n}) and 20 (got {best}).", "best_of");
        }

        var logprobs = RequestFields.OptionalInt(root, "logprobs");
        if (logprobs is < 0 or > MaxLogprobs)
        {
            throw ChatException.BadRequest($"logprobs must be between 0 and {MaxLogprobs} (got {logprobs}).", "logprobs");
        }

        RequestFields.OptionalRange(root, "presence_penalty", -2, 2);
        RequestFields.OptionalRange(root, "frequency_penalty", -2, 2);
        if (RequestFields.TryGet(root, "logit_bias", out var bias) && bias.ValueKind != JsonValueKind.Object)
        {
            throw RequestFields.TypeError("logit_bias", "an object of token ids to biases");
        }

        var stop = RequestFields.OptionalStrings(root, "stop");
        if (stop is { Count: > 4 })
        {
            throw ChatException.BadRequest($"stop accepts at most 4 sequences (got {stop.Count}).", "stop");
        }

        var includeUsage = false;
        if (RequestFields.TryGet(root, "stream_options", out var streamOptions))
        {
            if (streamOptions.ValueKind != JsonValueKind.Object)
            {
                throw RequestFields.TypeError("stream_options", "an object");
            }

            includeUsage = RequestFields.OptionalBool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
        }

        var completion = new LegacyCompletion
        {
            Prompts = prompts,
            Suffix = RequestFields.OptionalString(root, "suffix"),
            Echo = RequestFields.OptionalBool(root, "echo") ?? false,
            BestOf = bestOf,
            Logprobs = logprobs,
            MaxTokens = maxTokens,
            RawBody = utf8Json,
        };
        return new ChatRequest
        {
            Model = RequestFields.OptionalString(root, "model") ?? string.Empty,
            Messages = [new ChatMessage(ChatRoles.User, prompts[0].Text ?? string.Empty)],
            N = n,
            Stream = RequestFields.OptionalBool(root, "stream") ?? false,
            IncludeUsage = includeUsage,
            MaxTokens = maxTokens > 0 ? maxTokens : null,
            Temperature = RequestFields.OptionalRange(root, "temperature", 0, 2),
            TopP = RequestFields.OptionalRange(root, "top_p", 0, 1),
            Stop = stop,
            Seed = RequestFields.OptionalLong(root, "seed"),
            User = RequestFields.OptionalString(root, "user"),
            Logprobs = logprobs is not null,
            TopLogprobs = logprobs,
            PromptTokenEstimate = prompts.Sum(p => p.TokenCount),
            Completion = completion,
        };
    }

    private static List<CompletionPrompt> ParsePrompts(JsonElement prompt, ChatRequestLimits limits)
    {
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                return [Text(prompt.GetString()!, "prompt", limits)];
            case JsonValueKind.Array:
                var count = prompt.GetArrayLength();
                if (count == 0)
                {
                    throw ChatException.BadRequest("prompt is an empty array; send at least one prompt.", "prompt", "empty_array");
                }

                if (count > MaxPrompts)
                {
                    throw ChatException.BadRequest($"prompt has {count} entries; the limit is {MaxPrompts}.", "prompt", "array_above_max_length");
                }

                if (prompt[0].ValueKind == JsonValueKind.Number)
                {
                    return [new CompletionPrompt(null, Tokens(prompt, "prompt"))];
                }

                var prompts = new List<CompletionPrompt>(count);
                var index = 0;
                foreach (var item in prompt.EnumerateArray())
                {
                    var path = $"prompt[{index++}]";
                    prompts.Add(item.ValueKind switch
                    {
                        JsonValueKind.String => Text(item.GetString()!, path, limits),
                        JsonValueKind.Array => new CompletionPrompt(null, Tokens(item, path)),
                        _ => throw RequestFields.TypeError(path, "a string (or every prompt an array of token ids)"),
                    });
                }

                return prompts;
            default:
                throw RequestFields.TypeError("prompt", "a string, an array of strings, an array of token ids or an array of token-id arrays");
        }
    }

    private static CompletionPrompt Text(string text, string path, ChatRequestLimits limits)
    {
        if (text.Length > limits.MaxPromptChars)
        {
            throw ChatException.BadRequest(
                $"{path} is {text.Length} characters; the limit is {limits.MaxPromptChars}. Shorten it or raise Limits:MaxPromptChars.",
                path, "string_above_max_length");
        }

        return new CompletionPrompt(text, null);
    }

    private static int[] Tokens(JsonElement array, string path)
    {
        if (array.GetArrayLength() == 0)
        {
            throw ChatException.BadRequest($"{path} is an empty token list; send at least one token id.", path, "empty_array");
        }

        var tokens = new int[array.GetArrayLength()];
        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id) || id < 0)
            {
                throw RequestFields.TypeError($"{path}[{index}]", "a token id (an integer of 0 or more)");
            }

            tokens[index++] = id;
        }

        return tokens;
    }
}
