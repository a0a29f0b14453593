using Sluice.Protocol;
using Sluice.Protocol.Chat;

namespace Sluice.Providers;

/// <summary>
/// What a backend that is not OpenAI-compatible can do with a legacy completion request (<see cref="ChatRequest.Completion"/>):
/// answer its one text prompt as a chat turn. Everything that needs a real completions endpoint is refused with a 400
/// naming the parameter, before anything is sent upstream.
/// </summary>
public static class CompletionSupport
{
    /// <summary>Refuses what <paramref name="model"/> (<paramref name="backend"/>) cannot translate; nothing for other requests.</summary>
    /// <param name="request">The request.</param>
    /// <param name="model">The model name, for the message.</param>
    /// <param name="backend">What serves it, e.g. <c>Anthropic</c> or <c>a simulated model</c>.</param>
    public static void RequireTranslatable(ChatRequest request, string model, string backend)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Completion is not { } completion)
        {
            return;
        }

        string? param = null;
        string? what = null;
        if (completion.Prompts.Count > 1)
        {
            (param, what) = ("prompt", $"several prompts ({completion.Prompts.Count}) in one request");
        }
        else if (completion.Prompts[0].Tokens is not null)
        {
            (param, what) = ("prompt", "a prompt of token ids (it has no tokenizer to read them)");
        }
        else if (completion.Suffix is not null)
        {
            (param, what) = ("suffix", "fill-in-the-middle (suffix)");
        }
        else if (completion.BestOf is > 1)
        {
            (param, what) = ("best_of", "best_of");
        }
        else if (completion.MaxTokens == 0)
        {
            (param, what) = ("max_tokens", "max_tokens 0 (scoring the prompt without generating)");
        }

        if (param is not null)
        {
            throw ChatException.BadRequest(
                $"Model \"{model}\" ({backend}) answers a completion's one text prompt as a chat turn and cannot do {what}. "
                + "Send one text prompt without it, or use an OpenAI-compatible model, which gets the request as sent.",
                param, "unsupported_parameter");
        }
    }
}
