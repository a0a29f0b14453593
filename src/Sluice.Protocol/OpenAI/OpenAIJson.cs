using System.Text.Encodings.Web;
using System.Text.Json;

namespace Sluice.Protocol.OpenAI;

/// <summary>Shared JSON settings and pre-encoded property names for the OpenAI wire format.</summary>
internal static class OpenAIJson
{
    /// <summary>
    /// Text stays UTF-8 instead of \u-escaped (smaller frames); quotes, backslashes and control characters are
    /// still escaped, which is all JSON inside SSE and HTTP bodies needs.
    /// </summary>
    public static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
        SkipValidation = true,
    };

    public static readonly JsonEncodedText Id = JsonEncodedText.Encode("id");
    public static readonly JsonEncodedText Object = JsonEncodedText.Encode("object");
    public static readonly JsonEncodedText Created = JsonEncodedText.Encode("created");
    public static readonly JsonEncodedText Model = JsonEncodedText.Encode("model");
    public static readonly JsonEncodedText SystemFingerprint = JsonEncodedText.Encode("system_fingerprint");
    public static readonly JsonEncodedText Choices = JsonEncodedText.Encode("choices");
    public static readonly JsonEncodedText Index = JsonEncodedText.Encode("index");
    public static readonly JsonEncodedText Delta = JsonEncodedText.Encode("delta");
    public static readonly JsonEncodedText Message = JsonEncodedText.Encode("message");
    public static readonly JsonEncodedText Role = JsonEncodedText.Encode("role");
    public static readonly JsonEncodedText Assistant = JsonEncodedText.Encode("assistant");
    public static readonly JsonEncodedText Content = JsonEncodedText.Encode("content");
    public static readonly JsonEncodedText Refusal = JsonEncodedText.Encode("refusal");
    public static readonly JsonEncodedText Logprobs = JsonEncodedText.Encode("logprobs");
    public static readonly JsonEncodedText FinishReason = JsonEncodedText.Encode("finish_reason");
    public static readonly JsonEncodedText ToolCalls = JsonEncodedText.Encode("tool_calls");
    public static readonly JsonEncodedText Type = JsonEncodedText.Encode("type");
    public static readonly JsonEncodedText Function = JsonEncodedText.Encode("function");
    public static readonly JsonEncodedText Name = JsonEncodedText.Encode("name");
    public static readonly JsonEncodedText Arguments = JsonEncodedText.Encode("arguments");
    public static readonly JsonEncodedText Usage = JsonEncodedText.Encode("usage");
    public static readonly JsonEncodedText PromptTokens = JsonEncodedText.Encode("prompt_tokens");
    public static readonly JsonEncodedText CompletionTokens = JsonEncodedText.Encode("completion_tokens");
    public static readonly JsonEncodedText TotalTokens = JsonEncodedText.Encode("total_tokens");
    public static readonly JsonEncodedText Error = JsonEncodedText.Encode("error");
    public static readonly JsonEncodedText Param = JsonEncodedText.Encode("param");
    public static readonly JsonEncodedText Code = JsonEncodedText.Encode("code");
    public static readonly JsonEncodedText ChunkObject = JsonEncodedText.Encode("chat.completion.chunk");
    public static readonly JsonEncodedText CompletionObject = JsonEncodedText.Encode("chat.completion");
    public static readonly JsonEncodedText FunctionType = JsonEncodedText.Encode("function");
}
