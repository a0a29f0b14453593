using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Tasks.Sources;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers.Upstream;

namespace Sluice.Providers.Simulation;

/// <summary>
/// A simulated model — honestly not a language model. It writes deterministic (given <c>seed</c>) English
/// that refers to the prompt's words, paced like a real model, calls tools when asked to, and can inject
/// faults for testing clients. Its usage counts are exactly the tokens it streamed.
/// </summary>
public sealed class SimulatedChatBackend : IChatBackend, IPromptTokenCounter, IChatRequestCheck
{
    /// <summary>The <c>Provider</c> value of simulated models.</summary>
    public const string ProviderName = "sim";

    /// <summary>Request metadata key: fail before the first token with this HTTP status.</summary>
    public const string FailStatusKey = "sim_fail_status";

    /// <summary>Request metadata key: <c>Retry-After</c> seconds for a simulated 429/503.</summary>
    public const string RetryAfterKey = "sim_retry_after";

    /// <summary>Request metadata key: fail mid-stream after this many tokens.</summary>
    public const string FailAfterTokensKey = "sim_fail_after_tokens";

    /// <summary>Request metadata key: stall this many milliseconds.</summary>
    public const string StallMsKey = "sim_stall_ms";

    /// <summary>Request metadata key: stall after this many tokens (default 0, before the first).</summary>
    public const string StallAfterTokensKey = "sim_stall_after_tokens";

    /// <summary>Most answers one request may ask for (<c>n</c>).</summary>
    public const int MaxChoices = 16;

    private readonly ModelOptions _options;
    private readonly TimeProvider _time;
    private int _failuresLeft;
    private int _requestsStarted;

    /// <summary>Creates a simulated model with the given pacing, limits and faults.</summary>
    /// <param name="options">The model's pacing, limits and faults.</param>
    /// <param name="time">The clock its tokens are paced by (tests inject one); the system clock by default.</param>
    public SimulatedChatBackend(ModelOptions options, TimeProvider? time = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _time = time ?? TimeProvider.System;
        _failuresLeft = options.FailTimes ?? int.MaxValue;
    }

    /// <summary>Requests this model has started (including failed ones); lets tests see retries.</summary>
    public int RequestsStarted => Volatile.Read(ref _requestsStarted);

    /// <inheritdoc />
    ValueTask<int> IPromptTokenCounter.CountPromptTokensAsync(ChatRequest request, CancellationToken cancellationToken) =>
        new(CountPromptTokens(request));

    /// <summary>The prompt tokens <paramref name="request"/> would use, as this model's usage reports them.</summary>
    public int CountPromptTokens(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return TokenCounter.CountPrompt(request.Messages);
    }

    /// <inheritdoc />
    public ChatException? Check(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.AnthropicOnly is { } anthropicOnly)
        {
            return anthropicOnly.Refusal(request.Model, "a simulated model");
        }

        if (request.N > MaxChoices)
        {
            return ChatException.BadRequest(
                $"Simulated models write at most {MaxChoices} answers per request (n = {request.N}). Send a smaller n, or several requests.",
                "n", "unsupported_value");
        }

        try
        {
            CompletionSupport.RequireTranslatable(request, request.Model, "a simulated model");
        }
        catch (ChatException untranslatable)
        {
            return untranslatable;
        }

        if (_options.Vision != true && request.Attachments().FirstOrDefault() is { } attachment)
        {
            return AttachmentSupport.Refuse(attachment, request.Model, "a simulated text model",
                "simulated models answer text only unless configured with \"Vision\": true",
                "Send text only, use a model that takes images and documents, or set \"Vision\": true on the simulated model.");
        }

        if (request.MaxTokens > _options.MaxOutputTokens)
        {
            return ChatException.BadRequest(
                $"max_tokens is {request.MaxTokens}, but {request.Model} writes at most {_options.MaxOutputTokens} tokens. Lower max_tokens.",
                "max_tokens");
        }

        var promptTokens = CountPromptTokens(request);
        var reserve = request.MaxTokens ?? NaturalAnswerTokens(request);
        if (promptTokens + (reserve * request.N) > _options.ContextWindow)
        {
            return ChatException.BadRequest(
                $"This request needs {promptTokens} prompt tokens plus {reserve * request.N} answer tokens, more than the {_options.ContextWindow}-token context of {request.Model}. Shorten the conversation{(request.MaxTokens is null ? " or set a smaller max_tokens" : " or lower max_tokens")}.",
                "messages", "context_length_exceeded");
        }

        return null;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
        ChatRequest request,
        ChatCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        Interlocked.Increment(ref _requestsStarted);
        if (Check(request) is { } refusal)
        {
            throw refusal;
        }

        var faults = SimulationFaults.From(_options, request.Metadata);
        var promptTokens = CountPromptTokens(request);
        // An answer that wants more than the model writes is composed one token past the limit, so the cut below ends it
        // with "length" even when its last sentence would have ended exactly at the limit.
        var wanted = WantedAnswerTokens(request);
        var composeTo = wanted > _options.MaxOutputTokens ? _options.MaxOutputTokens + 1 : Math.Max(1, wanted);

        var seeded = request.Seed is { } seed ? unchecked((int)seed ^ (int)(seed >> 32)) : (int?)null;
        var random = seeded is { } s ? new Random(s) : new Random();
        using var pacing = new Pacing(_options, random, _time);

        if (faults.StallMs > 0 && faults.StallAfterTokens == 0)
        {
            await Task.Delay(faults.StallMs, cancellationToken);
        }

        await pacing.BeforeFirstTokenAsync(cancellationToken);

        if (faults.FailStatus is { } status && ShouldFail(request))
        {
            throw SimulatedFailure(status, faults.RetryAfterSeconds);
        }

        // Every choice is planned whole up front (a stop sequence spanning several tokens must not leak its first tokens
        // before the match is complete), then the choices are streamed interleaved, one token of each in turn, as
        // OpenAI streams n > 1. Choice 0 draws from the request's own sequence, so n = 1 answers are what they always were.
        var plans = new List<ChoicePlan>(request.N);
        for (var i = 0; i < request.N; i++)
        {
            var choiceRandom = i == 0 ? random : seeded is { } baseSeed ? new Random(DeriveSeed(baseSeed, i, 0)) : new Random();
            plans.Add(Plan(request, i, composeTo, choiceRandom, seeded));
        }

        var emitted = 0;
        var lastStep = 0;
        foreach (var plan in plans)
        {
            lastStep = Math.Max(lastStep, plan.Events.Count);
        }

        for (var step = 0; step <= lastStep; step++)
        {
            foreach (var plan in plans)
            {
                if (step < plan.Events.Count)
                {
                    if (emitted > 0)
                    {
                        await BetweenTokensAsync(pacing, faults, emitted, cancellationToken);
                    }
                    else
                    {
                        ThrowIfFailureDue(faults, emitted);
                    }

                    yield return plan.Events[step];
                    emitted++;
                }
                else if (step == plan.Events.Count)
                {
                    yield return plan.Finish;
                }
            }
        }

        yield return new UsageEvent(new ChatUsage(promptTokens, emitted));
    }

    /// <summary>
    /// How long this prompt's answer is when nothing limits it: <see cref="ModelOptions.DefaultAnswerTokens"/> up to
    /// 1.6 times that, fixed per prompt (the same question always gets an answer of the same length, different questions
    /// differ). The default is the floor, so an answer without <c>max_tokens</c> is never shorter than it promises.
    /// </summary>
    public int NaturalAnswerTokens(ChatRequest request) => Math.Max(1, Math.Min(_options.MaxOutputTokens, WantedAnswerTokens(request)));

    /// <summary>
    /// The answer's length before the model's output limit: when it is above <see cref="ModelOptions.MaxOutputTokens"/>
    /// the answer is cut at the limit (finish reason <c>length</c>), as a real model's would.
    /// </summary>
    private int WantedAnswerTokens(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var basis = Math.Min(_options.DefaultAnswerTokens, _options.MaxOutputTokens);
        var text = request.LastUserText;
        var hash = 2166136261u;
        foreach (var c in text)
        {
            hash = unchecked((hash ^ c) * 16777619u);
        }

        hash = unchecked((hash ^ (uint)request.Messages.Count) * 16777619u);
        var factor = 1.0 + ((hash % 61) / 100.0);
        return (int)Math.Round(basis * factor);
    }

    private ChoicePlan Plan(ChatRequest request, int choice, int composeTo, Random random, int? seeded)
    {
        var tools = ChooseTools(request);
        if (tools.Count > 0)
        {
            var events = new List<ChatStreamEvent>();
            for (var t = 0; t < tools.Count; t++)
            {
                var arguments = SimulatedAnswerComposer.ComposeArguments(tools[t], request.LastUserText, random);
                events.Add(new ToolCallDeltaEvent(t, "call_" + RandomId(random, 24), tools[t].Name, string.Empty, choice));
                foreach (var fragment in SimulatedAnswerComposer.FragmentArguments(arguments, random))
                {
                    events.Add(new ToolCallDeltaEvent(t, null, null, fragment, choice));
                }
            }

            return new ChoicePlan(events, new FinishEvent(FinishReasons.ToolCalls, choice));
        }

        List<string> tokens;
        if (request.ResponseFormat is { IsJson: true } format)
        {
            // A structured answer is as long as its JSON: a max_tokens below that cuts it (finish_reason "length"), as on OpenAI.
            tokens = [];
            SimulatedAnswerComposer.AppendTokens(SimulatedJson.Compose(format, TopicSource(request), random), tokens);
        }
        else
        {
            tokens = [];
            if (ToolResultLead(request) is { } lead)
            {
                // After a tool result the answer starts from it (deterministically), as a model's answer would.
                SimulatedAnswerComposer.AppendTokens(lead, tokens);
            }

            var composed = SimulatedAnswerComposer.ComposeSentences(TopicSource(request), Math.Max(1, composeTo - tokens.Count), random);
            if (tokens.Count > 0)
            {
                composed[0] = " " + composed[0];
            }

            tokens.AddRange(composed);
        }

        var finish = FinishReasons.Stop;
        if (Math.Min(request.MaxTokens ?? int.MaxValue, _options.MaxOutputTokens) is var max && max < tokens.Count)
        {
            tokens.RemoveRange(max, tokens.Count - max);
            finish = FinishReasons.Length;
        }

        string? matchedStop = null;
        if (request.Stop is { Count: > 0 } stops)
        {
            var cut = CutAtStop(tokens, stops, out matchedStop);
            if (matchedStop is not null)
            {
                tokens = cut;
                finish = FinishReasons.Stop;
            }
        }

        var logprobs = request.Logprobs
            ? new SimulatedLogprobs(seeded is { } s ? new Random(DeriveSeed(s, choice, 0x10b)) : new Random(), request.TopLogprobs ?? 0, SimulatedAnswerComposer.ExtractTopics(request.LastUserText))
            : null;
        var textEvents = new List<ChatStreamEvent>(tokens.Count);
        foreach (var token in tokens)
        {
            textEvents.Add(new TextDeltaEvent(token, choice) { Logprobs = logprobs?.For(token) });
        }

        return new ChoicePlan(textEvents, new FinishEvent(finish, choice) { StopSequence = matchedStop });
    }

    /// <summary>One choice's answer, planned whole: its token events and how it ends.</summary>
    private sealed record ChoicePlan(List<ChatStreamEvent> Events, FinishEvent Finish);

    /// <summary>A per-request switch always fails; a model's FailStatus fails only its first FailTimes requests.</summary>
    private bool ShouldFail(ChatRequest request) =>
        request.Metadata?.ContainsKey(FailStatusKey) == true || Interlocked.Decrement(ref _failuresLeft) >= 0;

    // Not async: a paced token's wait is the pacing's own reusable value task, and awaiting it from an async method would
    // box that method's state (per token, living as long as the wait: at 10,000 streams a second's worth of them).
    private static ValueTask BetweenTokensAsync(Pacing pacing, SimulationFaults faults, int emitted, CancellationToken cancellationToken)
    {
        ThrowIfFailureDue(faults, emitted);
        return faults.StallMs > 0 && faults.StallAfterTokens > 0 && emitted == faults.StallAfterTokens
            ? StallThenPaceAsync(pacing, faults.StallMs, cancellationToken)
            : pacing.BetweenTokensAsync(cancellationToken);
    }

    private static async ValueTask StallThenPaceAsync(Pacing pacing, int stallMs, CancellationToken cancellationToken)
    {
        await Task.Delay(stallMs, cancellationToken);
        await pacing.BetweenTokensAsync(cancellationToken);
    }

    private static void ThrowIfFailureDue(SimulationFaults faults, int emitted)
    {
        if (faults.FailAfterTokens is { } failAfter && emitted >= failAfter)
        {
            throw new ChatException(500, new ErrorInfo(
                $"Simulated failure after {emitted} tokens ({FailAfterTokensKey}). Remove the fault switch to get a full answer.",
                ErrorTypes.Server, null, "simulated_failure"));
        }
    }

    /// <summary>The opening sentence after a tool result: what it mentions, e.g. "The tool's result mentions temperature, overcast."</summary>
    private static string? ToolResultLead(ChatRequest request)
    {
        var last = request.Messages[^1];
        if (last.Role != ChatRoles.Tool || string.IsNullOrWhiteSpace(last.Content))
        {
            return null;
        }

        var topics = SimulatedAnswerComposer.ExtractTopics(last.Content);
        return topics.Count == 0 ? null : $"The tool's result mentions {string.Join(", ", topics.Take(6))}.";
    }

    private static string TopicSource(ChatRequest request)
    {
        // After a tool result, talk about what the tool returned.
        var last = request.Messages[^1];
        var topic = last.Role == ChatRoles.Tool && !string.IsNullOrWhiteSpace(last.Content)
            ? request.LastUserText + " " + last.Content
            : request.LastUserText;

        // A simulation with Vision does not look at attachments; it talks about having been given them.
        var attachments = request.Attachments().ToList();
        if (attachments.Count == 0)
        {
            return topic;
        }

        var words = attachments.Select(a => a.Kind == ContentPartKind.Image ? "image picture" : "document " + (a.Filename ?? string.Empty));
        return topic + " " + string.Join(' ', words);
    }

    /// <summary>
    /// The tools the answer calls: the forced one; else every tool the prompt mentions (only the first when
    /// <c>parallel_tool_calls</c> is false); else the first tool when a call is required; else none.
    /// </summary>
    private static List<ToolDefinition> ChooseTools(ChatRequest request)
    {
        if (request.Tools is not { Count: > 0 } tools || request.Messages[^1].Role == ChatRoles.Tool)
        {
            return [];
        }

        var choice = request.ToolChoice;
        if (choice is { ValueKind: JsonValueKind.String } && choice.Value.GetString() == "none")
        {
            return [];
        }

        if (request.ForcedToolName is { } forced)
        {
            return [tools.FirstOrDefault(t => t.Name == forced)
                ?? throw ChatException.BadRequest($"tool_choice names \"{forced}\", which is not in tools.", "tool_choice")];
        }

        var prompt = request.LastUserText;
        var mentioned = tools.Where(t => Mentions(prompt, t)).ToList();
        if (mentioned.Count > 1 && request.ParallelToolCalls == false)
        {
            mentioned.RemoveRange(1, mentioned.Count - 1);
        }

        if (mentioned.Count > 0)
        {
            return mentioned;
        }

        return choice is { ValueKind: JsonValueKind.String } && choice.Value.GetString() == "required" ? [tools[0]] : [];
    }

    /// <summary>True when the prompt names the tool, or a word of its name (get_weather → "weather").</summary>
    private static bool Mentions(string prompt, ToolDefinition tool)
    {
        if (prompt.Contains(tool.Name, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        foreach (var part in tool.Name.Split(['_', '-', '.'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.Length >= 4 && part is not ("get" or "list" or "fetch" or "tool")
                && prompt.Contains(part, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The tokens before the earliest stop sequence (returned in <paramref name="matched"/>); the token it starts in is cut short.</summary>
    private static List<string> CutAtStop(List<string> tokens, IReadOnlyList<string> stops, out string? matched)
    {
        var text = string.Concat(tokens);
        var earliest = -1;
        matched = null;
        foreach (var stop in stops)
        {
            var index = text.IndexOf(stop, StringComparison.Ordinal);
            if (index >= 0 && (earliest < 0 || index < earliest))
            {
                earliest = index;
                matched = stop;
            }
        }

        if (earliest < 0)
        {
            return tokens;
        }

        var kept = new List<string>();
        var position = 0;
        foreach (var token in tokens)
        {
            if (position >= earliest)
            {
                break;
            }

            kept.Add(position + token.Length <= earliest ? token : token[..(earliest - position)]);
            position += token.Length;
        }

        return kept;
    }

    private static ChatException SimulatedFailure(int status, int? retryAfterSeconds)
    {
        var (type, code) = status switch
        {
            429 => (ErrorTypes.RateLimit, "rate_limit_exceeded"),
            401 => (ErrorTypes.Authentication, "invalid_api_key"),
            403 => (ErrorTypes.Permission, "permission_denied"),
            >= 500 => (ErrorTypes.Server, "simulated_failure"),
            _ => (ErrorTypes.InvalidRequest, "simulated_failure"),
        };
        TimeSpan? retryAfter = retryAfterSeconds is { } s ? TimeSpan.FromSeconds(s)
            : status is 429 or 503 ? TimeSpan.FromSeconds(1) : null;
        return new ChatException(
            status,
            new ErrorInfo($"Simulated {status} failure ({FailStatusKey}). Remove the fault switch to get an answer.", type, null, code),
            retryAfter);
    }

    /// <summary>
    /// The seed of a choice's (or its logprobs') own sequence, derived from the request's seed. A fixed mix (SplitMix64's
    /// finalizer), not <see cref="HashCode.Combine{T1, T2}"/>: that one is randomized per process, so the same seed would
    /// answer differently after a restart — and two choices could even coincide in one process and not in the next.
    /// </summary>
    internal static int DeriveSeed(int seed, int choice, int purpose)
    {
        var z = unchecked(((ulong)(uint)seed << 32 | (uint)choice) + ((ulong)(uint)purpose * 0x9E3779B97F4A7C15UL) + 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        return unchecked((int)z ^ (int)(z >> 32));
    }

    private static string RandomId(Random random, int length)
    {
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        return string.Create(length, random, static (span, r) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = alphabet[r.Next(alphabet.Length)];
            }
        });
    }

    /// <summary>
    /// A stream's pacing: the time to first token and the gaps between tokens, each a wait on one timer and one value-task
    /// source the stream reuses, so a paced token allocates nothing (<c>Task.Delay</c> allocated a timer, a promise and
    /// the awaiting method's box per token, each alive for the whole gap: at 10,000 streams of 1 token a second that
    /// was ~400 B a token, all promoted, and a generation-1 collection of ~40 ms every ~1.5 s).
    /// </summary>
    private sealed class Pacing(ModelOptions options, Random random, TimeProvider time) : IValueTaskSource, IDisposable
    {
        // Jitter draws from its own sequence so that pacing never changes the seeded text.
        private readonly Random _jitter = new(random.Next());
        // Continuations go to the thread pool, never run on the timer's thread.
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;
        private CancellationToken _token;
        private int _waiting;
        private long _due;

        public ValueTask BeforeFirstTokenAsync(CancellationToken cancellationToken) =>
            DelayAsync(Jittered(options.TimeToFirstTokenMs), cancellationToken);

        /// <remarks>
        /// Each token is due one (jittered) interval after the previous one was due, not after it was sent: a timer fires
        /// up to a few milliseconds late (.NET's timers run on the kernel's coarse clock), and measured from the send that
        /// lateness added up, so a model at 1 token/s ran ~0.3 % slow and every gap carried its own wait's lateness. A
        /// token more than an interval behind (a stall fault, a reader that held the stream back) starts the schedule
        /// again from now rather than bursting to catch up.
        /// </remarks>
        public ValueTask BetweenTokensAsync(CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (options.TokensPerSecond <= 0)
            {
                return ValueTask.CompletedTask;
            }

            var interval = (long)(Jittered(1000.0 / options.TokensPerSecond) * time.TimestampFrequency / 1000.0);
            var now = time.GetTimestamp();
            _due = _due == 0 || now - _due > interval ? now + interval : _due + interval;
            return DelayAsync((_due - now) * 1000.0 / time.TimestampFrequency, cancellationToken);
        }

        public void GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void Dispose()
        {
            _registration.Dispose();
            _timer?.Dispose();
        }

        private double Jittered(double baseMs)
        {
            if (baseMs <= 0)
            {
                return 0;
            }

            var factor = options.Jitter > 0 ? 1 + (((_jitter.NextDouble() * 2) - 1) * options.Jitter) : 1;
            return Math.Max(0, baseMs * factor);
        }

        private ValueTask DelayAsync(double ms, CancellationToken cancellationToken)
        {
            if (ms < 0.5)
            {
                return ValueTask.CompletedTask;
            }

            if (cancellationToken != _token)
            {
                // One registration for the stream's life (the same token every time), not one per token.
                _registration.Dispose();
                _token = cancellationToken;
                _registration = cancellationToken.UnsafeRegister(static s => ((Pacing)s!).Complete(canceled: true), this);
            }

            _timer ??= time.CreateTimer(static s => ((Pacing)s!).Complete(canceled: false), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _core.Reset();
            Volatile.Write(ref _waiting, 1);
            _timer.Change(TimeSpan.FromMilliseconds(ms), Timeout.InfiniteTimeSpan);
            if (cancellationToken.IsCancellationRequested)
            {
                Complete(canceled: true);
            }

            return new ValueTask(this, _core.Version);
        }

        /// <summary>Ends the wait in progress, once: the timer and a cancellation may both try.</summary>
        private void Complete(bool canceled)
        {
            if (Interlocked.Exchange(ref _waiting, 0) != 1)
            {
                return;
            }

            if (canceled)
            {
                _core.SetException(new TaskCanceledException(null, null, _token));
            }
            else
            {
                _core.SetResult(true);
            }
        }
    }
}

/// <summary>Fault switches, from the model's options overridden by request metadata.</summary>
internal readonly record struct SimulationFaults(int? FailStatus, int? RetryAfterSeconds, int? FailAfterTokens, int StallMs, int StallAfterTokens)
{
    public static SimulationFaults From(ModelOptions options, IReadOnlyDictionary<string, string>? metadata) => new(
        Read(metadata, SimulatedChatBackend.FailStatusKey, 400, 599) ?? options.FailStatus,
        Read(metadata, SimulatedChatBackend.RetryAfterKey, 0, 86_400) ?? options.RetryAfterSeconds,
        Read(metadata, SimulatedChatBackend.FailAfterTokensKey, 0, int.MaxValue) ?? options.FailAfterTokens,
        Read(metadata, SimulatedChatBackend.StallMsKey, 0, 600_000) ?? options.StallMs ?? 0,
        Read(metadata, SimulatedChatBackend.StallAfterTokensKey, 0, int.MaxValue) ?? options.StallAfterTokens);

    private static int? Read(IReadOnlyDictionary<string, string>? metadata, string key, int min, int max)
    {
        if (metadata is null || !metadata.TryGetValue(key, out var text))
        {
            return null;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw ChatException.BadRequest($"metadata.{key} must be an integer between {min} and {max} (got \"{text}\").", $"metadata.{key}");
        }

        return value;
    }
}
