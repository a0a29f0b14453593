using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Sluice.Cli.Client;
using Sluice.Client;
using Spectre.Console;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice models</c>: lists the models a gateway serves, as a table or as JSON.</summary>
internal static class ModelsCommand
{
    private const string ErrorPrefix = "sluice models: ";

    private const string Help = """
        List the models a Sluice (or any OpenAI-compatible) gateway serves (GET /v1/models): a table for people,
        or a JSON array with --json for scripts.

        Exit codes: 0 ok, 3 bad config, 10 cannot connect, 11 request rejected (4xx), 12 server error (5xx), 14 timeout.

        Examples:
          sluice models
          sluice models --url http://gateway:8080 --api-key $KEY
          sluice models --json | jq -r '.[].id'
        """;

    public static Command Create()
    {
        var url = new Option<string?>("--url", "-u") { Description = $"Gateway address (default: the config's ApiUrl, else {ChatClientSettings.DefaultApiUrl})." };
        var apiKey = new Option<string?>("--api-key") { Description = $"API key, sent as a Bearer token (default: env {ChatClientSettings.ApiKeyEnvironmentVariable}, else the config's ApiKey)." };
        var config = new Option<string?>("--config", "-c") { Description = "Client config JSON (ApiUrl, ApiKey, timeouts), as for 'sluice chat' (default: ~/.config/sluice/client.json, then ./sluice-client.json)." };
        var json = new Option<bool>("--json") { Description = "Print a JSON array instead of a table." };
        var command = new Command("models", Help) { url, apiKey, config, json };
        command.SetAction((parse, cancellationToken) => RunAsync(
            parse.GetValue(url), parse.GetValue(apiKey), parse.GetValue(config), parse.GetValue(json), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string? url, string? apiKey, string? configPath, bool json, CancellationToken cancellationToken)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        using var error = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true };
        ChatClientSettings settings;
        Uri endpoint;
        try
        {
            settings = ChatClientSettings.Resolve(configPath, url, apiKey, model: null);
            endpoint = settings.ResolveEndpoint();
        }
        catch (ChatClientConfigException ex)
        {
            await error.WriteLineAsync(ErrorPrefix + ex.Message);
            return ExitCodes.Config;
        }

        IReadOnlyList<SluiceModelInfo> models;
        using (var client = new SluiceChatClient(new SluiceClientOptions
        {
            Endpoint = endpoint,
            ApiKey = settings.ApiKey,
            ConnectTimeout = settings.ConnectTimeout,
            RequestTimeout = settings.FirstTokenTimeout,
        }))
        {
            try
            {
                models = await client.ListModelsAsync(cancellationToken);
            }
            catch (SluiceException ex)
            {
                await error.WriteLineAsync(ErrorPrefix + CliMessages.FromClient(ex.Message));
                return ExitCodeFor(ex);
            }
        }

        if (json)
        {
            await output.WriteLineAsync(ToJson(models));
        }
        else
        {
            Render(models, output);
        }

        await output.FlushAsync(cancellationToken);
        return ExitCodes.Success;
    }

    private static int ExitCodeFor(SluiceException ex) => ex switch
    {
        SluiceConnectionException => ExitCodes.ConnectionRefused,
        SluiceTimeoutException => ExitCodes.Timeout,
        { StatusCode: >= 400 and < 500 } => ExitCodes.ClientError,
        _ => ExitCodes.ServerError,
    };

    private static void Render(IReadOnlyList<SluiceModelInfo> models, TextWriter output)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        if (models.Count == 0)
        {
            console.WriteLine("The gateway serves no models.");
            return;
        }

        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("Model");
        table.AddColumn("Owned by");
        table.AddColumn(new TableColumn("Context").RightAligned());
        table.AddColumn(new TableColumn("Max output").RightAligned());
        table.AddColumn("Description");
        foreach (var model in models)
        {
            table.AddRow(
                Markup.Escape(model.Id),
                Markup.Escape(model.OwnedBy ?? string.Empty),
                Tokens(model.ContextWindow),
                Tokens(model.MaxOutputTokens),
                Markup.Escape(model.Description ?? string.Empty));
        }

        console.Write(table);
        console.WriteLine($"{models.Count} model{(models.Count == 1 ? string.Empty : "s")}.");
    }

    private static string Tokens(int? count) => count?.ToString("N0", CultureInfo.InvariantCulture) ?? "-";

    private static string ToJson(IReadOnlyList<SluiceModelInfo> models)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartArray();
            foreach (var model in models)
            {
                json.WriteStartObject();
                json.WriteString("id", model.Id);
                WriteOrNull(json, "owned_by", model.OwnedBy);
                if (model.Created is { } created)
                {
                    json.WriteNumber("created", created.ToUnixTimeSeconds());
                }
                else
                {
                    json.WriteNull("created");
                }

                WriteOrNull(json, "description", model.Description);
                WriteOrNull(json, "context_window", model.ContextWindow);
                WriteOrNull(json, "max_output_tokens", model.MaxOutputTokens);
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteOrNull(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }

    private static void WriteOrNull(Utf8JsonWriter json, string name, int? value)
    {
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
