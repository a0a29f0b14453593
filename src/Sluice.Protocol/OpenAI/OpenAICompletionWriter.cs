using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.OpenAI;

/// <summary>Writes a non-streamed <c>chat.completion</c> object from assembled choices.</summary>
public static class OpenAICompletionWriter
{
    /// <summary>Writes the completion JSON into <paramref name="output"/>.</summary>
    public static void Write(
        IBufferWriter<byte> output,
        string id,
        long created,
        string model,
        IEnumerable<AssembledChoice> choices,
        ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(choices);
        ArgumentNullException.ThrowIfNull(usage);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString(OpenAIJson.Id, id);
        json.WriteString(OpenAIJson.Object, OpenAIJson.CompletionObject);
        json.WriteNumber(OpenAIJson.Created, created);
        json.WriteString(OpenAIJson.Model, model);
        json.WriteStartArray(OpenAIJson.Choices);
        foreach (var choice in choices)
        {
            json.WriteStartObject();
            json.WriteNumber(OpenAIJson.Index, choice.Index);
            json.WriteStartObject(OpenAIJson.Message);
            json.WriteString(OpenAIJson.Role, OpenAIJson.Assistant);
            OpenAIErrorWriter.WriteNullableString(json, OpenAIJson.Content, choice.Content);
            OpenAIErrorWriter.WriteNullableString(json, OpenAIJson.Refusal, choice.Refusal);
            if (choice.ToolCalls.Count > 0)
            {
                json.WriteStartArray(OpenAIJson.ToolCalls);
                foreach (var call in choice.ToolCalls)
                {
                    json.WriteStartObject();
                    json.WriteString(OpenAIJson.Id, call.Id);
                    json.WriteString(OpenAIJson.Type, OpenAIJson.FunctionType);
                    json.WriteStartObject(OpenAIJson.Function);
                    json.WriteString(OpenAIJson.Name, call.Name);
                    json.WriteString(OpenAIJson.Arguments, call.Arguments);
                    json.WriteEndObject();
                    json.WriteEndObject();
                }

                json.WriteEndArray();
            }

            json.WriteEndObject();
            OpenAILogprobs.Write(json, choice.Logprobs);
            OpenAIErrorWriter.WriteNullableString(json, OpenAIJson.FinishReason, choice.FinishReason ?? FinishReasons.Stop);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        OpenAIChunkWriter.WriteUsageObject(json, usage);
        json.WriteEndObject();
    }
}
