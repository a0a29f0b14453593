namespace Sluice.Fuzz.Tests;

/// <summary>The error body shape an endpoint answers in.</summary>
internal enum Dialect
{
    /// <summary><c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
    OpenAI,

    /// <summary><c>{"type": "error", "error": {"type", "message"}}</c>.</summary>
    Anthropic,

    /// <summary><c>{"error": "…"}</c>.</summary>
    Ollama,
}

/// <summary>
/// One endpoint to fuzz: the route the gateway maps (checked against its route table), a valid request to start from,
/// and the dialect of its errors. Paths and bodies name the seeded objects as <c>{team}</c>, <c>{callJob}</c>, ….
/// </summary>
/// <param name="Method">HTTP method.</param>
/// <param name="Pattern">The route pattern as mapped, e.g. <c>/api/jobs/{id}/complete</c>.</param>
/// <param name="Path">A valid path (placeholders for seeded ids), with a query when it takes one.</param>
/// <param name="Dialect">The error shape.</param>
/// <param name="Body">A valid JSON body, or null for endpoints without one.</param>
/// <param name="Chat">True when the request runs a model (its usage is recorded after the response).</param>
/// <param name="Status">The template's status when it is not a success (an endpoint that always refuses).</param>
internal sealed record EndpointSpec(string Method, string Pattern, string Path, Dialect Dialect, string? Body = null, bool Chat = false, int? Status = null)
{
    public override string ToString() => $"{Method} {Pattern}";
}

/// <summary>Every endpoint of the gateway, with a valid request each.</summary>
internal static class EndpointCatalog
{
    private const string Messages = """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about rivers and lakes"}]""";

    public static IReadOnlyList<EndpointSpec> All { get; } =
    [
        // OpenAI
        new("POST", "/v1/chat/completions", "/v1/chat/completions", Dialect.OpenAI,
            $$$"""{"model": "sim-fast", "messages": {{{Messages}}}, "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stream": false, "seed": 3, "stop": ["zz"], "user": "u1", "metadata": {"k": "v"}}""", Chat: true),
        new("GET", "/v1/models", "/v1/models", Dialect.OpenAI),
        new("GET", "/v1/models/{id}", "/v1/models/sim-fast", Dialect.OpenAI),
        new("GET", "/v1/streams/{id}", "/v1/streams/{stream}?after=3", Dialect.OpenAI),
        new("DELETE", "/v1/streams/{id}", "/v1/streams/{stream}", Dialect.OpenAI),
        new("POST", "/v1/completions", "/v1/completions", Dialect.OpenAI,
            """{"model": "sim-fast", "prompt": "Tell me about rivers", "max_tokens": 5, "echo": true, "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}}""", Chat: true),
        new("POST", "/v1/embeddings", "/v1/embeddings", Dialect.OpenAI,
            """{"model": "sim-embed", "input": ["rivers and lakes", "mountains"], "dimensions": 8, "encoding_format": "float", "user": "u1"}"""),
        new("POST", "/v1/responses", "/v1/responses", Dialect.OpenAI,
            """{"model": "sim-fast", "instructions": "Be brief.", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Tell me about rivers"}]}], "max_output_tokens": 5, "temperature": 0.5, "stream": true, "store": false, "metadata": {"k": "v"}}""", Chat: true),
        new("GET", "/v1/responses/{id}", "/v1/responses/{response}", Dialect.OpenAI),
        new("DELETE", "/v1/responses/{id}", "/v1/responses/{deleteResponse}", Dialect.OpenAI),
        new("GET", "/v1/responses/{id}/input_items", "/v1/responses/{response}/input_items?limit=2&order=asc", Dialect.OpenAI),

        // Anthropic
        new("POST", "/v1/messages", "/v1/messages", Dialect.Anthropic,
            """{"model": "sim-fast", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": [{"type": "text", "text": "Tell me about rivers"}]}], "temperature": 0.3, "stream": true, "metadata": {"user_id": "u1"}}""", Chat: true),
        new("POST", "/v1/messages", "/v1/messages", Dialect.Anthropic,
            """{"model": "claude", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}], "tools": [{"type": "web_search_20250305", "name": "web_search"}, {"name": "get_weather", "input_schema": {"type": "object"}}], "messages": [{"role": "user", "content": "Tell me about rivers"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "Rivers."}]}, {"role": "user", "content": [{"type": "text", "text": "More", "cache_control": {"type": "ephemeral"}}]}], "stream": true}""", Chat: true),
        new("POST", "/v1/messages/count_tokens", "/v1/messages/count_tokens", Dialect.Anthropic,
            """{"model": "sim-fast", "messages": [{"role": "user", "content": "Tell me about rivers"}]}"""),

        // Ollama
        new("POST", "/api/chat", "/api/chat", Dialect.Ollama,
            $$$"""{"model": "sim-fast", "messages": {{{Messages}}}, "stream": false, "options": {"temperature": 0.2, "num_predict": 5, "seed": 4}}""", Chat: true),
        new("POST", "/api/generate", "/api/generate", Dialect.Ollama,
            """{"model": "sim-fast", "prompt": "Tell me about rivers", "system": "Be brief.", "stream": true, "options": {"num_predict": 5}}""", Chat: true),
        new("POST", "/api/show", "/api/show", Dialect.Ollama, """{"model": "sim-fast"}"""),
        new("GET", "/api/tags", "/api/tags", Dialect.Ollama),
        new("GET", "/api/version", "/api/version", Dialect.Ollama),
        new("GET", "/api/ps", "/api/ps", Dialect.Ollama),
        new("POST", "/api/embed", "/api/embed", Dialect.Ollama, """{"model": "sim-embed", "input": ["rivers", "lakes"], "truncate": true, "dimensions": 8}"""),
        new("POST", "/api/embeddings", "/api/embeddings", Dialect.Ollama, """{"model": "sim-embed", "prompt": "rivers and lakes"}"""),
        new("POST", "/api/pull", "/api/pull", Dialect.Ollama, """{"model": "sim-fast:latest", "stream": false}"""),
        new("POST", "/api/create", "/api/create", Dialect.Ollama, """{"model": "mine", "from": "sim-fast"}""", Status: 403),
        new("POST", "/api/copy", "/api/copy", Dialect.Ollama, """{"source": "sim-fast", "destination": "mine"}""", Status: 403),
        new("POST", "/api/push", "/api/push", Dialect.Ollama, """{"model": "sim-fast"}""", Status: 403),
        new("DELETE", "/api/delete", "/api/delete", Dialect.Ollama, """{"model": "sim-fast"}""", Status: 403),
        new("HEAD", "/api/blobs/{digest}", "/api/blobs/sha256:00", Dialect.Ollama, Status: 403),
        new("POST", "/api/blobs/{digest}", "/api/blobs/sha256:00", Dialect.Ollama, "{}", Status: 403),

        // Portal and WebSocket (a plain GET: the WebSocket messages are fuzzed on their own)
        new("POST", "/api/llm/chat/stream", "/api/llm/chat/stream", Dialect.OpenAI,
            $$$"""{"model": "sim-fast", "messages": {{{Messages}}}, "max_tokens": 5, "temperature": 0.7}""", Chat: true),
        new("GET", "/api/llm/ws", "/api/llm/ws", Dialect.OpenAI),

        // Sessions
        new("POST", "/api/sessions", "/api/sessions", Dialect.OpenAI,
            """{"system_prompt": "Be brief.", "model": "sim-fast", "max_context_tokens": 2048, "title": "Rivers", "metadata": {"app": "fuzz"}}"""),
        new("GET", "/api/sessions", "/api/sessions?limit=5&offset=0", Dialect.OpenAI),
        new("GET", "/api/sessions/{id}", "/api/sessions/{session}?limit=10", Dialect.OpenAI),
        new("DELETE", "/api/sessions/{id}", "/api/sessions/{deleteSession}", Dialect.OpenAI),
        new("POST", "/api/llm/chat/session/stream", "/api/llm/chat/session/stream", Dialect.OpenAI,
            """{"session_id": "{session}", "message": "And lakes?", "max_tokens": 5, "temperature": 0.4}""", Chat: true),

        // Jobs
        new("POST", "/api/jobs/create", "/api/jobs/create", Dialect.OpenAI, """{"team_id": "{team}", "job_type": "analysis", "user_id": "u1", "metadata": {"doc": "d1"}}"""),
        new("GET", "/api/jobs/{id}", "/api/jobs/{callJob}", Dialect.OpenAI),
        new("POST", "/api/jobs/{id}/llm-call", "/api/jobs/{callJob}/llm-call", Dialect.OpenAI,
            """{"model_group": "fuzz-group", "messages": [{"role": "user", "content": "Summarise canals"}], "max_tokens": 5, "purpose": "p"}""", Chat: true),
        new("POST", "/api/jobs/{id}/llm-call-stream", "/api/jobs/{callJob}/llm-call-stream", Dialect.OpenAI,
            """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "Summarise canals"}], "max_tokens": 5, "stream_options": {"include_usage": true}}""", Chat: true),
        new("POST", "/api/jobs/{id}/complete", "/api/jobs/{completeJob}/complete", Dialect.OpenAI, """{"status": "failed", "error_message": "fuzzed"}"""),
        new("GET", "/api/teams/{id}/jobs", "/api/teams/{team}/jobs?limit=3&offset=0", Dialect.OpenAI),

        // Tenancy
        new("POST", "/api/organizations/create", "/api/organizations/create", Dialect.OpenAI, """{"organization_id": "org_new", "name": "New org"}"""),
        new("GET", "/api/organizations/{id}", "/api/organizations/{org}", Dialect.OpenAI),
        new("GET", "/api/organizations/{id}/teams", "/api/organizations/{org}/teams", Dialect.OpenAI),
        new("POST", "/api/model-groups/create", "/api/model-groups/create", Dialect.OpenAI,
            """{"group_name": "g-new", "display_name": "New group", "description": "made by the fuzzer", "models": [{"model_name": "sim-fast", "priority": 0}, {"model_name": "sim-small", "priority": 1}]}"""),
        new("GET", "/api/model-groups", "/api/model-groups", Dialect.OpenAI),
        new("GET", "/api/model-groups/{name}", "/api/model-groups/{group}", Dialect.OpenAI),
        new("POST", "/api/teams/create", "/api/teams/create", Dialect.OpenAI,
            """{"organization_id": "{org}", "team_alias": "New team", "credits_allocated": 5, "model_groups": ["sim-fast"], "rpm_limit": 100, "key_alias": "first"}"""),
        new("GET", "/api/teams/{id}", "/api/teams/{team}", Dialect.OpenAI),
        new("PUT", "/api/teams/{id}/model-groups", "/api/teams/{victim}/model-groups", Dialect.OpenAI, """{"model_groups": ["fuzz-group", "sim-fast"]}"""),
        new("PUT", "/api/teams/{id}/limits", "/api/teams/{victim}/limits", Dialect.OpenAI, """{"rpm_limit": 1000, "tpm_limit": 100000, "max_parallel_requests": 10}"""),
        new("POST", "/api/teams/{id}/keys", "/api/teams/{victim}/keys", Dialect.OpenAI,
            """{"key_alias": "ci", "models": ["sim-fast"], "model_groups": ["fuzz-group"], "expires_at": "2099-01-01T00:00:00Z", "rpm_limit": 10}"""),
        new("GET", "/api/teams/{id}/keys", "/api/teams/{team}/keys", Dialect.OpenAI),
        new("POST", "/api/teams/{id}/keys/{keyId}/revoke", "/api/teams/{victim}/keys/{victimKeyId}/revoke", Dialect.OpenAI, "{}"),
        new("DELETE", "/api/teams/{id}/keys/{keyId}", "/api/teams/{victim}/keys/{victimKeyId}", Dialect.OpenAI),
        new("GET", "/api/credits/teams/{id}/balance", "/api/credits/teams/{team}/balance", Dialect.OpenAI),
        new("POST", "/api/credits/teams/{id}/add", "/api/credits/teams/{victim}/add", Dialect.OpenAI, """{"credits_amount": 5, "reason": "top-up"}"""),
        new("POST", "/api/credits/teams/{id}/check", "/api/credits/teams/{team}/check", Dialect.OpenAI, """{"credits_required": 2}"""),
        new("GET", "/api/credits/teams/{id}/transactions", "/api/credits/teams/{team}/transactions?limit=5&offset=0", Dialect.OpenAI),

        // Public: liveness, the web chat files, and the JSON 404 for everything else
        new("GET", "/health", "/health", Dialect.OpenAI),
        new("GET", "/health/live", "/health/live", Dialect.OpenAI),
        new("GET", "/health/ready", "/health/ready", Dialect.OpenAI),
        new("GET", "/metrics", "/metrics", Dialect.OpenAI),
        new("GET", "/", "/", Dialect.OpenAI),
        new("HEAD", "/", "/", Dialect.OpenAI),
        new("GET", "/{*path}", "/v1/not-here", Dialect.OpenAI),
        new("POST", "/{*path}", "/api/not-here", Dialect.Ollama, "{}"),
    ];

    /// <summary>Patterns the gateway maps that the catalog covers through a sibling (the web chat's static files).</summary>
    public static bool CoveredBySibling((string Method, string Pattern) route) =>
        route.Pattern.StartsWith("/webchat/", StringComparison.Ordinal) || route.Method is "*" && route.Pattern == "/{*path}";
}
