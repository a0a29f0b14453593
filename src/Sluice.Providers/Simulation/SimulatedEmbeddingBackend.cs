using System.Globalization;
using System.Runtime.CompilerServices;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Simulation;

/// <summary>
/// A simulated embedding model (<c>sim-embed</c>) — honestly not a language model. Its vectors are deterministic, unit
/// length and similar for similar texts: words, word pairs and character trigrams are hashed into signed dimensions
/// (feature hashing), so texts that share words and word pieces point the same way. Good enough for offline
/// retrieval demos and tests; it knows no synonyms.
/// </summary>
public sealed class SimulatedEmbeddingBackend : IChatBackend, IEmbeddingBackend
{
    /// <summary>The <c>Provider</c> value.</summary>
    public const string ProviderName = "sim-embed";

    /// <summary>Vector size when the model sets no <see cref="ModelOptions.EmbeddingDimensions"/>.</summary>
    public const int DefaultDimensions = 256;

    /// <summary>Common English function words, weighted down.</summary>
    private static readonly HashSet<string> StopWords = new(StringComparer.Ordinal)
    {
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as", "is", "are",
        "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "i", "you", "he", "she", "we", "they",
        "my", "your", "our", "their", "do", "does", "did", "how", "what", "which", "who", "why", "when", "where", "can",
    };

    private readonly ModelOptions _options;

    /// <summary>Creates the model.</summary>
    public SimulatedEmbeddingBackend(ModelOptions options)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (Dimensions < 1)
        {
            throw new ModelConfigurationException($"Model \"{options.Name}\" has EmbeddingDimensions {Dimensions}; use 1 or more (default {DefaultDimensions}).");
        }
    }

    /// <summary>The size of its vectors (requests may ask for fewer with <c>dimensions</c>).</summary>
    public int Dimensions => _options.EmbeddingDimensions ?? DefaultDimensions;

    /// <summary>It makes vectors, not answers: a chat request fails (before any event) with a 400 that says where to send it.</summary>
#pragma warning disable CS1998 // An iterator that fails on its first step, like every backend's refusal.
    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
#pragma warning restore CS1998
    {
        throw ChatException.BadRequest(
            $"\"{_options.Name}\" is an embedding model: it makes vectors, not answers. Send texts to POST /v1/embeddings (or Ollama's POST /api/embed), and chat with a chat model (GET /v1/models lists them).",
            "model", "model_not_chat");
#pragma warning disable CS0162 // An iterator needs a yield to be one.
        yield break;
#pragma warning restore CS0162
    }

    /// <inheritdoc />
    public async Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var dimensions = request.Dimensions ?? Dimensions;
        if (dimensions > Dimensions)
        {
            throw ChatException.BadRequest(
                $"dimensions is {dimensions}, but \"{_options.Name}\" makes vectors of at most {Dimensions}. Ask for {Dimensions} or fewer.",
                "dimensions");
        }

        var vectors = new float[request.Inputs.Count][];
        var tokens = 0;
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            var words = Words(input);
            if (words.Count > _options.ContextWindow)
            {
                if (request.Truncate != true)
                {
                    var param = request.Inputs.Count == 1 ? "input" : $"input[{i}]";
                    throw ChatException.BadRequest(
                        $"{param} has {words.Count} tokens; \"{_options.Name}\" embeds at most {_options.ContextWindow} per input. Shorten it or split it.",
                        param, "context_length_exceeded");
                }

                words.RemoveRange(_options.ContextWindow, words.Count - _options.ContextWindow);
            }

            tokens += input.Tokens?.Count ?? Math.Min(input.TokenCount, _options.ContextWindow);
            vectors[i] = Embed(words, dimensions);
        }

        if (_options.TimeToFirstTokenMs > 0)
        {
            // The simulated latency of the call, so clients see a realistic wait.
            await Task.Delay(_options.TimeToFirstTokenMs, cancellationToken).ConfigureAwait(false);
        }

        cancellationToken.ThrowIfCancellationRequested();
        return new EmbeddingResult { Vectors = vectors, PromptTokens = tokens };
    }

    /// <summary>The vector of <paramref name="text"/> with <paramref name="dimensions"/> dimensions (unit length).</summary>
    public static float[] Embed(string text, int dimensions) => Embed(Words(new EmbeddingInput(text, null)), dimensions);

    private static float[] Embed(List<string> words, int dimensions)
    {
        var vector = new double[dimensions];
        for (var w = 0; w < words.Count; w++)
        {
            var word = words[w];

            // Function words say little about what a text is about; they count, but much less.
            var weight = StopWords.Contains(word) ? 0.2 : 1.0;
            Add(vector, "w:" + word, weight);
            if (w > 0)
            {
                Add(vector, "p:" + words[w - 1] + " " + word, 0.5 * weight);
            }

            // Word pieces make "sitting" close to "sit" and survive typos.
            var padded = "<" + word + ">";
            var grams = Math.Max(1, padded.Length - 2);
            for (var c = 0; c + 3 <= padded.Length; c++)
            {
                Add(vector, "t:" + padded.Substring(c, 3), weight / Math.Sqrt(grams));
            }
        }

        var norm = Math.Sqrt(vector.Sum(v => v * v));
        if (norm == 0)
        {
            // Nothing but punctuation or spaces: one fixed direction, so the vector is still unit length.
            vector[0] = norm = 1;
        }

        var result = new float[dimensions];
        for (var i = 0; i < dimensions; i++)
        {
            result[i] = (float)(vector[i] / norm);
        }

        return result;
    }

    /// <summary>Lower-case words (runs of letters and digits); token ids as <c>#id</c> words.</summary>
    private static List<string> Words(EmbeddingInput input)
    {
        if (input.Tokens is { } ids)
        {
            return [.. ids.Select(id => "#" + id.ToString(CultureInfo.InvariantCulture))];
        }

        var words = new List<string>();
        var text = input.Text ?? string.Empty;
        var start = -1;
        for (var i = 0; i <= text.Length; i++)
        {
            var inWord = i < text.Length && char.IsLetterOrDigit(text[i]);
            if (inWord && start < 0)
            {
                start = i;
            }
            else if (!inWord && start >= 0)
            {
                words.Add(text[start..i].ToLowerInvariant());
                start = -1;
            }
        }

        return words;
    }

    /// <summary>Adds a feature: FNV-1a picks its dimension and (from other bits) its sign, the same in every process.</summary>
    private static void Add(double[] vector, string feature, double weight)
    {
        var hash = 14695981039346656037UL;
        foreach (var c in feature)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        var index = (int)(hash % (ulong)vector.Length);
        vector[index] += (hash >> 63) == 0 ? weight : -weight;
    }
}
