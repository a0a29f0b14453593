using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Spectre.Console;

namespace Sluice.Cli.Commands.Admin;

/// <summary>
/// <c>sluice admin</c>: the tenancy API with the master key — organizations, teams, keys, credits, model groups and
/// jobs. Tables for people, the server's JSON with <c>--json</c> for scripts.
/// </summary>
internal static class AdminCommand
{
    /// <summary>Environment variable holding the master key.</summary>
    public const string MasterKeyEnvironmentVariable = "SLUICE_MASTER_KEY";

    private const string ErrorPrefix = "sluice admin: ";
    private const string DefaultUrl = "http://127.0.0.1:8080";

    private const string ExitCodesHelp = "Exit codes: 0 ok, 2 usage, 3 bad --url, 10 cannot connect, 11 request rejected (4xx), 12 server error (5xx), 14 timeout.";

    private static readonly JsonSerializerOptions PrettyJson = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>What one leaf command sends.</summary>
    private sealed record AdminRequest(HttpMethod Method, string Path, object? Body = null);

    /// <summary>How one leaf command shows its answer: the array property to list (null: the root if it is one) and its columns.</summary>
    private sealed record AdminView(string? ListProperty, params string[] Columns);

    private sealed record Shared(Option<string?> Url, Option<string?> MasterKey, Option<bool> Json);

    public static Command Create()
    {
        var shared = new Shared(
            new Option<string?>("--url", "-u") { Description = $"Gateway address (default {DefaultUrl}).", Recursive = true },
            new Option<string?>("--master-key") { Description = $"The gateway's master key (default: env {MasterKeyEnvironmentVariable}).", Recursive = true },
            new Option<bool>("--json") { Description = "Print the server's JSON instead of a table.", Recursive = true });

        var admin = new Command("admin", $"""
            Administer a Sluice gateway with its master key: organizations, teams (with credits), keys, credits,
            model groups and jobs. Tables for people, the server's JSON with --json for scripts.

            {ExitCodesHelp}

            Examples:
              export SLUICE_MASTER_KEY=sk-master-...
              sluice admin orgs create Acme --id org_acme
              sluice admin teams create --org org_acme --name Engineering --credits 1000 --groups sim-fast
              sluice admin credits balance team_engineering --json | jq .credits_remaining
            """)
        {
            shared.Url, shared.MasterKey, shared.Json,
            Orgs(shared), Teams(shared), Keys(shared), Credits(shared), Groups(shared), Jobs(shared),
        };
        return admin;
    }

    // ---- organizations ----

    private static Command Orgs(Shared shared)
    {
        var createName = new Argument<string>("name") { Description = "The organization's display name." };
        var createId = new Option<string?>("--id") { Description = "The organization id (default: generated)." };
        var showId = new Argument<string>("org-id") { Description = "The organization id." };
        var teamsId = new Argument<string>("org-id") { Description = "The organization id." };
        return new Command("orgs", "Organizations: create one, show one, list its teams.\n\nExample:\n  sluice admin orgs create Acme --id org_acme")
        {
            Leaf(shared, "create", "Create an organization.", "sluice admin orgs create Acme --id org_acme",
                [createName, createId],
                p => new AdminRequest(HttpMethod.Post, "/api/organizations/create", new Dictionary<string, object?> { ["name"] = p.GetValue(createName), ["organization_id"] = p.GetValue(createId) }),
                new AdminView(null)),
            Leaf(shared, "show", "Show an organization.", "sluice admin orgs show org_acme",
                [showId],
                p => new AdminRequest(HttpMethod.Get, $"/api/organizations/{Escape(p.GetValue(showId))}"),
                new AdminView(null)),
            Leaf(shared, "teams", "List an organization's teams.", "sluice admin orgs teams org_acme",
                [teamsId],
                p => new AdminRequest(HttpMethod.Get, $"/api/organizations/{Escape(p.GetValue(teamsId))}/teams"),
                new AdminView("teams", "team_id", "team_alias", "model_groups", "credits_allocated", "credits_remaining", "created_at")),
        };
    }

    // ---- teams ----

    private static Command Teams(Shared shared)
    {
        var org = new Option<string>("--org") { Description = "The organization the team belongs to.", Required = true };
        var name = new Option<string>("--name") { Description = "The team's name (team_alias).", Required = true };
        var id = new Option<string?>("--id") { Description = "The team id (default: generated)." };
        var credits = new Option<long>("--credits") { Description = "Credits to allocate at creation (default 0)." };
        var groups = ListOption("--groups", "Model groups (or models) the team may use, comma-separated.");
        var keyName = new Option<string?>("--key-name") { Description = "Name of the team's first key (default 'default')." };
        var showId = new Argument<string>("team-id") { Description = "The team id." };
        var setId = new Argument<string>("team-id") { Description = "The team id." };
        var setGroups = new Argument<string[]>("groups") { Description = "The model groups (or models), replacing the current ones.", Arity = ArgumentArity.OneOrMore };
        return new Command("teams", "Teams: create one (with credits and its first key), show one, set its model groups.\n\nExample:\n  sluice admin teams create --org org_acme --name Engineering --credits 1000 --groups sim-fast")
        {
            Leaf(shared, "create", "Create a team; prints its first virtual key (shown only once).",
                "sluice admin teams create --org org_acme --name Engineering --id team_eng --credits 1000 --groups sim-fast,sim-smart",
                [org, name, id, credits, groups, keyName],
                p => new AdminRequest(HttpMethod.Post, "/api/teams/create", new Dictionary<string, object?>
                {
                    ["organization_id"] = p.GetValue(org),
                    ["team_alias"] = p.GetValue(name),
                    ["team_id"] = p.GetValue(id),
                    ["credits_allocated"] = p.GetValue(credits),
                    ["model_groups"] = Split(p.GetValue(groups)),
                    ["key_alias"] = p.GetValue(keyName),
                }),
                new AdminView(null)),
            Leaf(shared, "show", "Show a team, its model groups and credits.", "sluice admin teams show team_eng",
                [showId],
                p => new AdminRequest(HttpMethod.Get, $"/api/teams/{Escape(p.GetValue(showId))}"),
                new AdminView(null)),
            Leaf(shared, "set-groups", "Replace a team's model groups.", "sluice admin teams set-groups team_eng sim-fast sim-smart",
                [setId, setGroups],
                p => new AdminRequest(HttpMethod.Put, $"/api/teams/{Escape(p.GetValue(setId))}/model-groups", Split(p.GetValue(setGroups))),
                new AdminView(null)),
        };
    }

    // ---- keys ----

    private static Command Keys(Shared shared)
    {
        var createTeam = new Argument<string>("team-id") { Description = "The team the key belongs to." };
        var name = new Option<string?>("--name") { Description = "The key's name (key_alias)." };
        var models = ListOption("--models", "Restrict the key to these models, comma-separated.");
        var groups = ListOption("--groups", "Restrict the key to these model groups, comma-separated.");
        var expires = new Option<DateTimeOffset?>("--expires") { Description = "Expiry time (ISO 8601, e.g. 2027-01-01T00:00:00Z); default: never." };
        var listTeam = new Argument<string>("team-id") { Description = "The team id." };
        var revokeTeam = new Argument<string>("team-id") { Description = "The team id." };
        var revokeKey = new Argument<string>("key-id") { Description = "The key id (from 'keys list')." };
        return new Command("keys", "A team's virtual keys: create, list, revoke.\n\nExample:\n  sluice admin keys create team_eng --name ci")
        {
            Leaf(shared, "create", "Create a key for a team; prints the secret (shown only once).", "sluice admin keys create team_eng --name ci --groups sim-fast",
                [createTeam, name, models, groups, expires],
                p => new AdminRequest(HttpMethod.Post, $"/api/teams/{Escape(p.GetValue(createTeam))}/keys", new Dictionary<string, object?>
                {
                    ["key_alias"] = p.GetValue(name),
                    ["models"] = Split(p.GetValue(models)),
                    ["model_groups"] = Split(p.GetValue(groups)),
                    ["expires_at"] = p.GetValue(expires)?.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture),
                }),
                new AdminView(null)),
            Leaf(shared, "list", "List a team's keys (prefixes only, never secrets).", "sluice admin keys list team_eng",
                [listTeam],
                p => new AdminRequest(HttpMethod.Get, $"/api/teams/{Escape(p.GetValue(listTeam))}/keys"),
                new AdminView("keys", "key_id", "key_alias", "key_prefix", "status", "models", "model_groups", "created_at", "expires_at")),
            Leaf(shared, "revoke", "Revoke a key at once.", "sluice admin keys revoke team_eng key_0123",
                [revokeTeam, revokeKey],
                p => new AdminRequest(HttpMethod.Post, $"/api/teams/{Escape(p.GetValue(revokeTeam))}/keys/{Escape(p.GetValue(revokeKey))}/revoke"),
                new AdminView(null)),
        };
    }

    // ---- credits ----

    private static Command Credits(Shared shared)
    {
        var balanceTeam = new Argument<string>("team-id") { Description = "The team id." };
        var addTeam = new Argument<string>("team-id") { Description = "The team id." };
        var amount = new Argument<long>("amount") { Description = "Credits to add (a positive number)." };
        var reason = new Option<string?>("--reason") { Description = "Why (kept in the ledger)." };
        var transactionsTeam = new Argument<string>("team-id") { Description = "The team id." };
        var limit = new Option<int?>("--limit") { Description = "At most this many transactions (newest first)." };
        var offset = new Option<int?>("--offset") { Description = "Skip this many transactions." };
        return new Command("credits", "A team's credits: balance, add, transactions (the ledger).\n\nExample:\n  sluice admin credits add team_eng 500 --reason \"monthly top-up\"")
        {
            Leaf(shared, "balance", "Show a team's credits.", "sluice admin credits balance team_eng",
                [balanceTeam],
                p => new AdminRequest(HttpMethod.Get, $"/api/credits/teams/{Escape(p.GetValue(balanceTeam))}/balance"),
                new AdminView(null)),
            Leaf(shared, "add", "Add credits to a team.", "sluice admin credits add team_eng 500 --reason \"monthly top-up\"",
                [addTeam, amount, reason],
                p => new AdminRequest(HttpMethod.Post, $"/api/credits/teams/{Escape(p.GetValue(addTeam))}/add", new Dictionary<string, object?>
                {
                    ["credits_amount"] = p.GetValue(amount),
                    ["reason"] = p.GetValue(reason),
                }),
                new AdminView(null)),
            Leaf(shared, "transactions", "List a team's credit transactions.", "sluice admin credits transactions team_eng --limit 20",
                [transactionsTeam, limit, offset],
                p => new AdminRequest(HttpMethod.Get, $"/api/credits/teams/{Escape(p.GetValue(transactionsTeam))}/transactions{Page(p.GetValue(limit), p.GetValue(offset))}"),
                new AdminView("transactions", "transaction_id", "transaction_type", "amount", "balance_after", "reason", "job_id", "created_at")),
        };
    }

    // ---- model groups ----

    private static Command Groups(Shared shared)
    {
        var createName = new Argument<string>("name") { Description = "The group's name (what requests put in 'model')." };
        var models = ListOption("--models", "The group's models in priority order, comma-separated.");
        models.Required = true;
        var displayName = new Option<string?>("--display-name") { Description = "A display name." };
        var description = new Option<string?>("--description") { Description = "A description." };
        var showName = new Argument<string>("name") { Description = "The group's name." };
        return new Command("groups", "Model groups: create one, list them, show one.\n\nExample:\n  sluice admin groups create ChatAgent --models sim-smart,sim-fast")
        {
            Leaf(shared, "create", "Create a model group (models tried in the order given).", "sluice admin groups create ChatAgent --models sim-smart,sim-fast --description \"chat with fallback\"",
                [createName, models, displayName, description],
                p => new AdminRequest(HttpMethod.Post, "/api/model-groups/create", new Dictionary<string, object?>
                {
                    ["group_name"] = p.GetValue(createName),
                    ["models"] = Split(p.GetValue(models)).Select((m, i) => new { model_name = m, priority = i }).ToArray(),
                    ["display_name"] = p.GetValue(displayName),
                    ["description"] = p.GetValue(description),
                }),
                new AdminView(null)),
            Leaf(shared, "list", "List the model groups.", "sluice admin groups list",
                [],
                _ => new AdminRequest(HttpMethod.Get, "/api/model-groups"),
                new AdminView(null, "group_name", "display_name", "models", "description", "status", "created_at")),
            Leaf(shared, "show", "Show a model group.", "sluice admin groups show ChatAgent",
                [showName],
                p => new AdminRequest(HttpMethod.Get, $"/api/model-groups/{Escape(p.GetValue(showName))}"),
                new AdminView(null)),
        };
    }

    // ---- jobs ----

    private static Command Jobs(Shared shared)
    {
        var listTeam = new Argument<string>("team-id") { Description = "The team id." };
        var limit = new Option<int?>("--limit") { Description = "At most this many jobs (newest first)." };
        var offset = new Option<int?>("--offset") { Description = "Skip this many jobs." };
        var showId = new Argument<string>("job-id") { Description = "The job id." };
        return new Command("jobs", "A team's jobs: list them, show one with its calls and costs.\n\nExample:\n  sluice admin jobs list team_eng")
        {
            Leaf(shared, "list", "List a team's jobs.", "sluice admin jobs list team_eng --limit 20",
                [listTeam, limit, offset],
                p => new AdminRequest(HttpMethod.Get, $"/api/teams/{Escape(p.GetValue(listTeam))}/jobs{Page(p.GetValue(limit), p.GetValue(offset))}"),
                new AdminView("jobs", "job_id", "status", "charge", "key_id", "created_at", "completed_at")),
            Leaf(shared, "show", "Show a job, its costs and its model calls.", "sluice admin jobs show job_0123",
                [showId],
                p => new AdminRequest(HttpMethod.Get, $"/api/jobs/{Escape(p.GetValue(showId))}"),
                new AdminView("calls", "call_id", "model_group", "status", "prompt_tokens", "completion_tokens", "latency_ms")),
        };
    }

    // ---- plumbing ----

    private static Command Leaf(
        Shared shared, string name, string description, string example, Symbol[] symbols, Func<ParseResult, AdminRequest> build, AdminView view)
    {
        var command = new Command(name, $"{description}\n\n{ExitCodesHelp}\n\nExample:\n  {example}");
        foreach (var symbol in symbols)
        {
            switch (symbol)
            {
                case Argument argument:
                    command.Arguments.Add(argument);
                    break;
                case Option option:
                    command.Options.Add(option);
                    break;
            }
        }

        command.SetAction((parse, cancellationToken) => RunAsync(
            parse.GetValue(shared.Url), parse.GetValue(shared.MasterKey), parse.GetValue(shared.Json), build(parse), view, cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string? url, string? masterKey, bool json, AdminRequest request, AdminView view, CancellationToken cancellationToken)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        using var error = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true };
        var baseAddress = AdminHttp.TryParseBase(url ?? DefaultUrl, out var urlError);
        if (baseAddress is null)
        {
            await error.WriteLineAsync(ErrorPrefix + urlError);
            return ExitCodes.Config;
        }

        var key = masterKey ?? (Environment.GetEnvironmentVariable(MasterKeyEnvironmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null);
        using var http = new AdminHttp(baseAddress, key, $"--master-key or env {MasterKeyEnvironmentVariable}");
        JsonDocument document;
        try
        {
            document = await http.SendAsync(request.Method, request.Path, request.Body, cancellationToken);
        }
        catch (AdminException ex)
        {
            await error.WriteLineAsync(ErrorPrefix + ex.Message);
            if (ex.ExitCode == ExitCodes.ClientError && key is null)
            {
                await error.WriteLineAsync(ErrorPrefix + $"no master key was given: pass --master-key or set {MasterKeyEnvironmentVariable}.");
            }

            return ex.ExitCode;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await error.WriteLineAsync(ErrorPrefix + "cancelled.");
            return ExitCodes.Cancelled;
        }

        using (document)
        {
            if (json)
            {
                await output.WriteLineAsync(JsonSerializer.Serialize(document.RootElement, PrettyJson));
            }
            else
            {
                Render(document.RootElement, view, output);
            }
        }

        await output.FlushAsync(cancellationToken);
        return ExitCodes.Success;
    }

    private static void Render(JsonElement root, AdminView view, TextWriter output)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });

        // Spectre assumes 80 columns for a writer that is not Console.Out, which wraps ids and keys mid-value; use
        // the terminal's width, or a wide page when the table goes to a file or a pager.
        console.Profile.Width = Console.IsOutputRedirected ? 240 : Math.Max(Console.WindowWidth, 80);
        if (root.ValueKind == JsonValueKind.Array)
        {
            RenderList(console, root, view.Columns);
            return;
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            console.WriteLine(root.GetRawText());
            return;
        }

        var fields = new Table().Border(TableBorder.Rounded).HideHeaders();
        fields.AddColumn("Field");
        fields.AddColumn("Value");
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name == view.ListProperty)
            {
                continue;
            }

            if (property.Value.ValueKind == JsonValueKind.Object)
            {
                foreach (var inner in property.Value.EnumerateObject())
                {
                    fields.AddRow(Markup.Escape($"{property.Name}.{inner.Name}"), Markup.Escape(Cell(inner.Value)));
                }
            }
            else
            {
                fields.AddRow(Markup.Escape(property.Name), Markup.Escape(Cell(property.Value)));
            }
        }

        console.Write(fields);
        if (view.ListProperty is { } listName && root.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
        {
            console.WriteLine($"{listName}:");
            RenderList(console, list, view.Columns);
        }
    }

    private static void RenderList(IAnsiConsole console, JsonElement items, string[] columns)
    {
        var count = items.GetArrayLength();
        if (count == 0)
        {
            console.WriteLine("(none)");
            return;
        }

        var table = new Table().Border(TableBorder.Rounded);
        foreach (var column in columns)
        {
            table.AddColumn(column);
        }

        foreach (var item in items.EnumerateArray())
        {
            table.AddRow(columns.Select(column => Markup.Escape(item.ValueKind == JsonValueKind.Object && item.TryGetProperty(column, out var value) ? Cell(value) : "-")).ToArray());
        }

        console.Write(table);
        console.WriteLine($"{count} row{(count == 1 ? string.Empty : "s")}.");
    }

    /// <summary>One value as table text: scalars as they are, arrays of scalars (or of named objects) comma-joined.</summary>
    private static string Cell(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() ?? string.Empty,
        JsonValueKind.Null or JsonValueKind.Undefined => "-",
        JsonValueKind.True => "yes",
        JsonValueKind.False => "no",
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.Array => value.GetArrayLength() == 0 ? "-" : string.Join(", ", value.EnumerateArray().Select(item =>
            item.ValueKind == JsonValueKind.Object && item.TryGetProperty("model_name", out var model) ? Cell(model) : Cell(item))),
        _ => value.GetRawText(),
    };

    private static Option<string[]> ListOption(string name, string description) =>
        new(name) { Description = description, AllowMultipleArgumentsPerToken = true };

    /// <summary>Comma-separated and repeated values, flattened.</summary>
    private static string[] Split(string[]? values) =>
        values is null ? [] : values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();

    private static string Escape(string? segment) => Uri.EscapeDataString(segment ?? string.Empty);

    private static string Page(int? limit, int? offset)
    {
        var query = new List<string>(2);
        if (limit is { } l)
        {
            query.Add("limit=" + l.ToString(CultureInfo.InvariantCulture));
        }

        if (offset is { } o)
        {
            query.Add("offset=" + o.ToString(CultureInfo.InvariantCulture));
        }

        return query.Count == 0 ? string.Empty : "?" + string.Join('&', query);
    }
}
