using System.CommandLine;
using System.Text;
using Sluice.Cli.Client;
using Sluice.Cli.Commands.Chat;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice chat</c>: streams an answer from a gateway, or chats interactively.</summary>
internal static class ChatCommand
{
    private const string Help = """
        Talk to a Sluice (or any OpenAI-compatible) gateway. The answer streams to stdout token by token;
        stats (tokens, time to first token, duration, tokens/s after the first token and overall) go to stderr.

        With a prompt: one question, one answer. Without one: an interactive chat that keeps the conversation
        (type /reset to clear it, /exit or Ctrl+D to quit). Ctrl+C stops the current answer; a second Ctrl+C exits.

        Client config: --config FILE, or else the default files ~/.config/sluice/client.json ($XDG_CONFIG_HOME) and
        then ./sluice-client.json, the later winning. Keys: "ApiUrl", "ApiKey", "Model", "MaxTokens", "Temperature",
        "SystemPrompt", "ConnectTimeoutSeconds" (10), "FirstTokenTimeoutSeconds" (60), "IdleTimeoutSeconds" (60),
        "TotalTimeoutSeconds" (0 = no limit); see sluice-client.example.json. Command-line options override the files;
        SLUICE_API_KEY overrides the files' ApiKey. --debug prints the resolved settings and where each came from.
        Connection failures, 429 and 5xx are retried twice before the first token (honouring Retry-After); a stream
        cut mid-answer is resumed when the gateway supports it (x-sluice-stream-id).

        Exit codes: 0 ok, 2 bad usage, 3 bad config, 10 cannot connect, 11 request rejected (4xx),
        12 server error (5xx), 13 stream broke mid-answer, 14 timeout, 130 cancelled (Ctrl+C).

        Examples:
          sluice chat "Tell me a story"
          sluice chat --model sim-realistic --max-tokens 200 --json "Tell me a story"
          sluice chat --url http://gateway:8080 --api-key $KEY
          sluice chat --session new "How do rivers form?"      (prints: · session sess_…)
          sluice chat --session sess_… "And lakes?"            (the gateway remembers the first turn)
        """;

    public static Command Create()
    {
        var prompt = new Argument<string?>("prompt")
        {
            Description = "The question. Leave it out for an interactive chat.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var model = new Option<string?>("--model", "-m")
        {
            Description = "Model to ask (default: the config's Model, else the gateway's default — its first model, sim-realistic with the built-in models).",
        };
        var url = new Option<string?>("--url", "-u") { Description = $"Gateway address (default: the config's ApiUrl, else {ChatClientSettings.DefaultApiUrl})." };
        var apiKey = new Option<string?>("--api-key") { Description = $"API key, sent as a Bearer token (default: env {ChatClientSettings.ApiKeyEnvironmentVariable}, else the config's ApiKey)." };
        var system = new Option<string?>("--system", "-s") { Description = "System prompt that opens the conversation (default: the config's SystemPrompt)." };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Longest answer, in tokens (default: the config's MaxTokens, else the model's)." };
        var temperature = new Option<double?>("--temperature", "-t") { Description = "Sampling temperature, 0–2 (default: the config's Temperature, else the model's)." };
        var seed = new Option<long?>("--seed") { Description = "Seed for reproducible answers (simulated models honour it exactly)." };
        var config = new Option<string?>("--config", "-c") { Description = "Client config JSON (see above); replaces the default files ~/.config/sluice/client.json and ./sluice-client.json." };
        var session = new Option<string?>("--session")
        {
            Description = "Use a session stored on the gateway: 'new' starts one (its id is printed with the stats), an id continues it. The gateway keeps the history; only each new message is sent.",
        };
        var debug = new Option<bool>("--debug") { Description = "Print the resolved settings (and where each came from; the key masked), the request payload and every raw SSE event and comment to stderr." };
        var json = new Option<bool>("--json") { Description = "Print the stats as one JSON object per answer on stderr instead of text." };
        var metadata = new Option<string[]>("--metadata")
        {
            Description = "Advanced: request metadata as key=value, repeatable. Simulated models read fault switches from it, e.g. sim_fail_after_tokens=5, sim_fail_status=500, sim_stall_ms=3000.",
            HelpName = "key=value",
        };

        var command = new Command("chat", Help)
        {
            prompt,
            model,
            url,
            apiKey,
            system,
            maxTokens,
            temperature,
            seed,
            config,
            session,
            debug,
            json,
            metadata,
        };

        // Ctrl+C is handled by InterruptHandler (stop only the current answer; in interactive mode return to the
        // prompt); Program.cs turns System.CommandLine's own process-wide handler off, so the token is unused.
        command.SetAction((parse, _) => RunAsync(new ChatInvocation(
            parse.GetValue(prompt),
            parse.GetValue(model),
            parse.GetValue(url),
            parse.GetValue(apiKey),
            parse.GetValue(system),
            parse.GetValue(maxTokens),
            parse.GetValue(temperature),
            parse.GetValue(seed),
            parse.GetValue(config),
            parse.GetValue(session),
            parse.GetValue(debug),
            parse.GetValue(json),
            parse.GetValue(metadata) ?? [])));
        return command;
    }

    private static async Task<int> RunAsync(ChatInvocation invocation)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false };
        using var error = TextWriter.Synchronized(new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true });

        if (invocation.Prompt is { } text && string.IsNullOrWhiteSpace(text))
        {
            await error.WriteLineAsync(ChatSession.ErrorPrefix + "the prompt is empty. Pass the question in quotes, or leave it out for an interactive chat.");
            return ExitCodes.Usage;
        }

        if (!TryParseMetadata(invocation.Metadata, out var metadata, out var metadataError))
        {
            await error.WriteLineAsync(ChatSession.ErrorPrefix + metadataError);
            return ExitCodes.Usage;
        }

        ChatClientSettings settings;
        ChatStreamClient client;
        try
        {
            settings = ChatClientSettings.Resolve(invocation.ConfigPath, invocation.Url, invocation.ApiKey, invocation.Model);
            if (invocation.MaxTokens is { } tokens)
            {
                settings.Override("MaxTokens", "--max-tokens", s => s.MaxTokens = tokens);
            }

            if (invocation.Temperature is { } temperature)
            {
                settings.Override("Temperature", "--temperature", s => s.Temperature = temperature);
            }

            if (invocation.System is { } system)
            {
                settings.Override("SystemPrompt", "--system", s => s.SystemPrompt = system);
            }

            if (invocation.Debug)
            {
                foreach (var line in settings.Describe())
                {
                    await error.WriteLineAsync(line);
                }
            }

            client = new ChatStreamClient(settings, invocation.Debug ? new DebugTrace(error) : null, useSessions: invocation.Session is not null);
            client.SessionId = invocation.Session is null or "new" ? null : invocation.Session;
        }
        catch (ChatClientConfigException ex)
        {
            await error.WriteLineAsync(ChatSession.ErrorPrefix + ex.Message);
            return ExitCodes.Config;
        }

        using (client)
        using (var interrupts = new InterruptHandler(error))
        {
            var session = new ChatSession(
                client,
                new ChatSessionOptions(settings.Model, settings.SystemPrompt, settings.MaxTokens, settings.Temperature, invocation.Seed, metadata, invocation.Json),
                output,
                error,
                interrupts);

            if (invocation.Prompt is { } question)
            {
                var messages = session.NewConversation();
                messages.Add(new ChatTurn("user", question));
                return (await session.RunTurnAsync(messages)).ExitCode;
            }

            return await InteractiveAsync(session, settings, client, error);
        }
    }

    /// <summary>The interactive loop: prompt "&gt; " on stderr, so stdout holds only answers.</summary>
    private static async Task<int> InteractiveAsync(ChatSession session, ChatClientSettings settings, ChatStreamClient client, TextWriter error)
    {
        var endpoint = client.Endpoint;
        using var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
        await error.WriteLineAsync(
            $"Chatting with {settings.Model ?? "the gateway's default model"} at {endpoint.GetLeftPart(UriPartial.Authority)}. " +
            "/reset clears the conversation, /exit (or Ctrl+D) quits, Ctrl+C stops an answer.");
        var history = session.NewConversation();
        while (true)
        {
            await error.WriteAsync("> ");
            var line = await input.ReadLineAsync(CancellationToken.None);
            if (line is null)
            {
                await error.WriteLineAsync();
                return ExitCodes.Success;
            }

            line = line.Trim();
            switch (line)
            {
                case "":
                    continue;
                case "/exit" or "/quit":
                    return ExitCodes.Success;
                case "/reset":
                    history = session.NewConversation();
                    client.SessionId = null; // with --session: the next message starts a new stored session
                    await error.WriteLineAsync("Conversation cleared.");
                    continue;
                case "/help":
                    await error.WriteLineAsync("Type a message and press Enter. /reset clears the conversation, /exit quits, Ctrl+C stops an answer.");
                    continue;
            }

            if (line.StartsWith('/'))
            {
                await error.WriteLineAsync($"Unknown command '{line}'. Commands: /reset, /exit, /help.");
                continue;
            }

            history.Add(new ChatTurn("user", line));
            var result = await session.RunTurnAsync(history);
            if (result.Outcome == ChatOutcome.Failed)
            {
                // Forget the failed question so that retrying does not send it twice.
                history.RemoveAt(history.Count - 1);
            }
            else if (result.Answer.Length > 0)
            {
                // A stopped answer stays in the conversation: the user saw it, and the model should too.
                history.Add(new ChatTurn("assistant", result.Answer));
            }
            else
            {
                history.RemoveAt(history.Count - 1);
            }
        }
    }

    private static bool TryParseMetadata(string[] pairs, out Dictionary<string, string>? metadata, out string? problem)
    {
        metadata = null;
        problem = null;
        foreach (var pair in pairs)
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                problem = $"--metadata '{pair}' is not key=value. Write it like --metadata sim_fail_after_tokens=5.";
                return false;
            }

            metadata ??= new Dictionary<string, string>(StringComparer.Ordinal);
            metadata[pair[..equals]] = pair[(equals + 1)..];
        }

        return true;
    }

    private sealed record ChatInvocation(
        string? Prompt,
        string? Model,
        string? Url,
        string? ApiKey,
        string? System,
        int? MaxTokens,
        double? Temperature,
        long? Seed,
        string? ConfigPath,
        string? Session,
        bool Debug,
        bool Json,
        string[] Metadata);
}
