using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Simulation;

/// <summary>
/// Composes the simulated model's answers: readable English that refers to the prompt's words, of an exact
/// token length, and tool-call arguments that follow the tool's JSON schema. Deterministic for a given
/// <see cref="Random"/> seed.
/// </summary>
internal static class SimulatedAnswerComposer
{
    private static readonly string[] Openers =
    [
        "Here is a simulated answer about {0}.",
        "You asked about {0}, so let us take it step by step.",
        "This is Sluice's simulated model writing about {0}.",
    ];

    private static readonly string[] Sentences =
    [
        "A useful way to think about {0} is to start with {1} and then look at {2}.",
        "When people ask about {0}, the first thing to consider is how it relates to {1}.",
        "In practice, {0} depends on context, timing and the people involved.",
        "Many teams find that {0} becomes clearer once {1} is written down.",
        "It helps to compare {0} with {1}, because the differences show what matters.",
        "A small example makes {0} concrete: imagine {1} changing while {2} stays the same.",
        "The trade-off is simple to state and hard to get right: more {0} usually means less {1}.",
        "Experts tend to agree on the basics of {0}, even when they disagree about {1}.",
        "If you remember one thing, remember that {0} and {1} are connected.",
        "Looking at {0} over a longer period often tells a different story than a single moment.",
        "Questions about {2} usually lead back to {0} sooner or later.",
        "The next step would be to test these ideas about {0} against real data.",
        "None of this is factual advice: the text is generated to look plausible, not to be true.",
        "Still, {0} is worth the time it takes to understand properly.",
    ];

    private static readonly string[] FallbackTopics = ["your question", "the topic", "the details", "the context"];

    private static readonly FrozenStopWords StopWords = new(
        "about after again also because been before being could does doing from have having here into itself just more most much only other over please same should some such tell than that their them then there these they this those very what when where which while will with would your yours write explain give show make story")
    ;

    /// <summary>Splits an answer of exactly <paramref name="tokenCount"/> tokens, ending with a full stop.</summary>
    public static List<string> ComposeTokens(string prompt, int tokenCount, Random random)
    {
        var topics = ExtractTopics(prompt);
        var tokens = new List<string>(tokenCount + 32);
        var text = new StringBuilder(256);
        var first = true;
        var previous = -1;
        while (tokens.Count < tokenCount)
        {
            text.Clear();

            string template;
            if (first)
            {
                template = Openers[random.Next(Openers.Length)];
            }
            else
            {
                // Never the same sentence twice in a row: it reads as a stutter.
                var next = random.Next(previous < 0 ? Sentences.Length : Sentences.Length - 1);
                next = previous >= 0 && next >= previous ? next + 1 : next;
                template = Sentences[next];
                previous = next;
            }

            text.Append(first ? string.Empty : " ");
            text.AppendFormat(
                System.Globalization.CultureInfo.InvariantCulture,
                template,
                Pick(topics, random),
                Pick(topics, random),
                Pick(topics, random));
            first = false;
            AppendTokens(text.ToString(), tokens);
        }

        tokens.RemoveRange(tokenCount, tokens.Count - tokenCount);
        if (tokens[^1] != ".")
        {
            tokens[^1] = ".";

            // A cut after a comma would end ",." — close the clause with a word instead (same token count).
            if (tokens.Count > 1 && tokens[^2] is "," or ";" or ":")
            {
                tokens[^2] = " too";
            }
        }

        return tokens;
    }

    /// <summary>
    /// A whole answer of at least <paramref name="minTokens"/> tokens that ends where a sentence ends (the answer's
    /// natural length): the same opening and sentences as <see cref="ComposeTokens"/>, never cut mid-sentence.
    /// </summary>
    public static List<string> ComposeSentences(string prompt, int minTokens, Random random)
    {
        var topics = ExtractTopics(prompt);
        var tokens = new List<string>(minTokens + 48);
        var previous = -1;
        while (tokens.Count < minTokens)
        {
            string template;
            if (tokens.Count == 0)
            {
                template = Openers[random.Next(Openers.Length)];
            }
            else
            {
                var next = random.Next(previous < 0 ? Sentences.Length : Sentences.Length - 1);
                next = previous >= 0 && next >= previous ? next + 1 : next;
                template = Sentences[next];
                previous = next;
            }

            var sentence = string.Format(
                System.Globalization.CultureInfo.InvariantCulture, template, Pick(topics, random), Pick(topics, random), Pick(topics, random));
            AppendTokens(tokens.Count == 0 ? sentence : " " + sentence, tokens);
        }

        return tokens;
    }

    /// <summary>Splits <paramref name="text"/> into tokens as <see cref="TokenCounter"/> counts them (each with its leading whitespace).</summary>
    public static void AppendTokens(string text, List<string> tokens)
    {
        var start = 0;
        while (start < text.Length)
        {
            var end = TokenCounter.NextTokenEnd(text, start);
            tokens.Add(text[start..end]);
            start = end;
        }
    }

    /// <summary>Words of the prompt worth talking about, in order of appearance.</summary>
    public static List<string> ExtractTopics(string prompt)
    {
        var topics = new List<string>();
        var start = -1;
        for (var i = 0; i <= prompt.Length; i++)
        {
            var isWordChar = i < prompt.Length && (char.IsLetter(prompt[i]) || prompt[i] == '-');
            if (isWordChar && start < 0)
            {
                start = i;
            }
            else if (!isWordChar && start >= 0)
            {
                var word = prompt[start..i].Trim('-');
                if (word.Length >= 4 && !StopWords.Contains(word) && !topics.Contains(word, StringComparer.OrdinalIgnoreCase))
                {
                    topics.Add(word.Any(char.IsUpper) && !word.All(char.IsUpper) && start > 0 ? word : word.ToLowerInvariant());
                }

                start = -1;
            }
        }

        if (topics.Count == 0)
        {
            topics.AddRange(FallbackTopics);
        }

        return topics;
    }

    /// <summary>Builds a JSON arguments object for <paramref name="tool"/> from its schema, using prompt words.</summary>
    public static string ComposeArguments(ToolDefinition tool, string prompt, Random random)
    {
        var topics = ExtractTopics(prompt);
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (tool.Parameters is { } schema
                && schema.TryGetProperty("properties", out var properties)
                && properties.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in properties.EnumerateObject())
                {
                    json.WritePropertyName(property.Name);
                    WriteValue(json, property.Name, property.Value, topics, prompt, random);
                }
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Splits JSON text into argument fragments of 3–8 characters, as real models stream them.</summary>
    public static List<string> FragmentArguments(string arguments, Random random)
    {
        var fragments = new List<string>();
        var i = 0;
        while (i < arguments.Length)
        {
            var length = Math.Min(arguments.Length - i, random.Next(3, 9));
            fragments.Add(arguments.Substring(i, length));
            i += length;
        }

        return fragments;
    }

    private static void WriteValue(Utf8JsonWriter json, string name, JsonElement schema, List<string> topics, string prompt, Random random)
    {
        if (schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("enum", out var values)
            && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() > 0)
        {
            values[random.Next(values.GetArrayLength())].WriteTo(json);
            return;
        }

        var type = schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()
            : "string";
        switch (type)
        {
            case "integer":
                json.WriteNumberValue(random.Next(1, 100));
                break;
            case "number":
                json.WriteNumberValue(Math.Round(random.NextDouble() * 100, 2));
                break;
            case "boolean":
                json.WriteBooleanValue(true);
                break;
            case "array":
                json.WriteStartArray();
                json.WriteStringValue(Pick(topics, random));
                json.WriteEndArray();
                break;
            case "object":
                json.WriteStartObject();
                json.WriteEndObject();
                break;
            default:
                json.WriteStringValue(StringFor(name, topics, prompt, random));
                break;
        }
    }

    private static string StringFor(string name, List<string> topics, string prompt, Random random)
    {
        var lower = name.ToLowerInvariant();
        if (lower.Contains("location", StringComparison.Ordinal) || lower.Contains("city", StringComparison.Ordinal)
            || lower.Contains("place", StringComparison.Ordinal) || lower.Contains("country", StringComparison.Ordinal))
        {
            // Prefer a capitalised word that is not the first of the prompt: most likely a place name.
            var place = topics.FirstOrDefault(w => char.IsUpper(w[0]) && !prompt.StartsWith(w, StringComparison.Ordinal));
            if (place is not null)
            {
                return place;
            }
        }

        return Pick(topics, random);
    }

    private static string Pick(List<string> items, Random random) => items[random.Next(items.Count)];

    private sealed class FrozenStopWords(string words)
    {
        private readonly HashSet<string> _words = new(words.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.OrdinalIgnoreCase);

        public bool Contains(string word) => _words.Contains(word);
    }
}
