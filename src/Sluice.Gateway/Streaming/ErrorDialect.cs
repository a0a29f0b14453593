using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Ollama;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// How one API dialect answers with an error: the HTTP status it uses for a Sluice error and the body shape.
/// Errors are created once, OpenAI-shaped (<see cref="ErrorInfo"/>), and translated here per dialect.
/// </summary>
internal abstract class ErrorDialect
{
    /// <summary><c>{"error": {"message", "type", "param", "code"}}</c> with the status unchanged.</summary>
    public static ErrorDialect OpenAI { get; } = new OpenAIDialect();

    /// <summary><c>{"type": "error", "error": {"type", "message"}}</c>; 503 becomes 529 <c>overloaded_error</c>.</summary>
    public static ErrorDialect Anthropic { get; } = new AnthropicDialect();

    /// <summary><c>{"error": "…"}</c> with the status unchanged.</summary>
    public static ErrorDialect Ollama { get; } = new OllamaDialect();

    /// <summary>Whether its clients read the request id from <c>request-id</c> too (Anthropic's SDKs do).</summary>
    public virtual bool SendsRequestIdHeader => false;

    /// <summary>The status this dialect answers with for an error Sluice would send as <paramref name="status"/>.</summary>
    public virtual int StatusFor(int status, ErrorInfo error) => status;

    /// <summary>Writes the error body.</summary>
    public abstract void WriteBody(IBufferWriter<byte> output, int status, ErrorInfo error);

    private sealed class OpenAIDialect : ErrorDialect
    {
        public override void WriteBody(IBufferWriter<byte> output, int status, ErrorInfo error) =>
            OpenAIErrorWriter.Write(output, error);
    }

    private sealed class AnthropicDialect : ErrorDialect
    {
        public override bool SendsRequestIdHeader => true;

        public override int StatusFor(int status, ErrorInfo error) => AnthropicErrors.Classify(status, error).Status;

        public override void WriteBody(IBufferWriter<byte> output, int status, ErrorInfo error) =>
            AnthropicErrors.Write(output, AnthropicErrors.Classify(status, error).Type, error.Message);
    }

    private sealed class OllamaDialect : ErrorDialect
    {
        public override void WriteBody(IBufferWriter<byte> output, int status, ErrorInfo error) =>
            OllamaStreamWriter.WriteErrorLine(output, error.Message);
    }
}
