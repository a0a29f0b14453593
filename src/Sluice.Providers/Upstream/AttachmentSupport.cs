using Sluice.Protocol;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The refusals for image and document parts a backend cannot take: one 400 shape everywhere, naming the model, the
/// part (where it was in the request) and what to do instead.
/// </summary>
public static class AttachmentSupport
{
    /// <summary>The error code of these refusals.</summary>
    public const string UnsupportedCode = "unsupported_content";

    /// <summary>A 400 for <paramref name="part"/>, which <paramref name="model"/> (<paramref name="backend"/>) cannot take.</summary>
    /// <param name="part">The part.</param>
    /// <param name="model">The model name.</param>
    /// <param name="backend">What serves it, e.g. <c>Ollama</c> or <c>a simulated text model</c>.</param>
    /// <param name="why">Why not, e.g. <c>Ollama takes images as base64 only</c>.</param>
    /// <param name="nextStep">What the client can do.</param>
    public static ChatException Refuse(ContentPart part, string model, string backend, string why, string nextStep)
    {
        ArgumentNullException.ThrowIfNull(part);
        var where = part.Param is null ? string.Empty : $" at {part.Param}";
        return new ChatException(400, new ErrorInfo(
            $"Model \"{model}\" ({backend}) cannot take the {part.Describe()}{where}: {why}. {nextStep}",
            ErrorTypes.InvalidRequest, part.Param, UnsupportedCode));
    }

    /// <summary>
    /// Refuses the first image or document of <paramref name="request"/> when the model declares it takes none
    /// (<see cref="ModelOptions.Vision"/> false).
    /// </summary>
    public static void RequireVision(ChatRequest request, ModelOptions options, string backend)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Vision == false && request.Attachments().FirstOrDefault() is { } part)
        {
            throw Refuse(part, options.Name, backend, "the model is configured without vision (\"Vision\": false)",
                "Send text only, or use a model that takes images and documents.");
        }
    }

    /// <summary>The <c>data:</c> URL of an inline part.</summary>
    public static string DataUrl(ContentPart part)
    {
        ArgumentNullException.ThrowIfNull(part);
        return $"data:{part.MediaType ?? "application/octet-stream"};base64,{part.Data}";
    }
}
