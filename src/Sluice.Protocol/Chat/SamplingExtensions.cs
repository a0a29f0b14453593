using System.Globalization;
using System.Text.Json;

namespace Sluice.Protocol.Chat;

/// <summary>
/// The sampling settings beyond OpenAI's temperature and top-p that local runners (llama.cpp's server, vLLM, Ollama)
/// accept: <c>min_p</c>, <c>repetition_penalty</c> (vLLM's name) or <c>repeat_penalty</c> (llama.cpp's and Ollama's),
/// and OpenAI's own <c>frequency_penalty</c> and <c>presence_penalty</c>. Read once here so every dialect validates
/// them alike.
/// </summary>
internal readonly record struct SamplingExtensions(double? MinP, double? RepetitionPenalty, double? FrequencyPenalty, double? PresencePenalty)
{
    /// <summary>Reads the settings from <paramref name="obj"/>; <paramref name="prefix"/> goes before names in errors (e.g. <c>options.</c>).</summary>
    /// <exception cref="ChatException">A value has the wrong type or is out of range (400 naming the parameter).</exception>
    public static SamplingExtensions Parse(JsonElement obj, string prefix = "")
    {
        var minP = RequestFields.OptionalRange(obj, "min_p", 0, 1, prefix + "min_p");
        var repetition = Penalty(obj, "repetition_penalty", prefix) ?? Penalty(obj, "repeat_penalty", prefix);
        var frequency = RequestFields.OptionalRange(obj, "frequency_penalty", -2, 2, prefix + "frequency_penalty");
        var presence = RequestFields.OptionalRange(obj, "presence_penalty", -2, 2, prefix + "presence_penalty");
        return new SamplingExtensions(minP, repetition, frequency, presence);
    }

    private static double? Penalty(JsonElement obj, string name, string prefix)
    {
        var value = RequestFields.OptionalDouble(obj, name, prefix + name);
        if (value is { } v && (v <= 0 || v > 10))
        {
            // Logits are divided by it: 0 or less is meaningless, and past 10 every repeated token is simply forbidden.
            throw ChatException.BadRequest(
                $"{prefix}{name} must be above 0 and at most 10 (got {v.ToString(CultureInfo.InvariantCulture)}); 1 turns it off, 1.1 is a usual value.",
                prefix + name);
        }

        return value;
    }
}
