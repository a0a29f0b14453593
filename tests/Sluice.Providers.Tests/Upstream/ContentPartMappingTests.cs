using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Image and document parts as each adapter sends them upstream, and the 400s for what a backend cannot take.</summary>
public sealed class ContentPartMappingTests
{
    private const string Png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    private const string Pdf = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK";

    private const string OllamaAnswer =
        "{\"model\":\"llava\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"A dot.\"},\"done\":false}\n"
        + "{\"model\":\"llava\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":9,\"eval_count\":2}\n";

    /// <summary>An Anthropic client's request: an inline image, an image URL, a PDF, a text document, then text.</summary>
    private static ChatRequest Mixed(bool withUrls = true) => AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes($$$"""
        {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": [
          {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "{{{Png}}}"}},
          {{{(withUrls ? "{\"type\": \"image\", \"source\": {\"type\": \"url\", \"url\": \"https://example.com/cat.jpg\"}}," : string.Empty)}}}
          {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "{{{Pdf}}}"}, "title": "report.pdf"},
          {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}},
          {"type": "text", "text": "Compare them."}
        ]}]}
        """));

    [Fact]
    public async Task Anthropic_gets_image_and_document_blocks_in_order()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/basic_response.sse");

        // As parsed from any other dialect: Sluice builds the blocks (an Anthropic client's own body would go up as it is).
        await rig.CollectAsync(Mixed() with { AnthropicBody = default });

        var blocks = rig.Upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["image", "image", "document", "document", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("""{"type":"base64","media_type":"image/png","data":"%"}""".Replace("%", Png, StringComparison.Ordinal), blocks[0].GetProperty("source").GetRawText());
        Assert.Equal("""{"type":"url","url":"https://example.com/cat.jpg"}""", blocks[1].GetProperty("source").GetRawText());
        Assert.Equal("application/pdf", blocks[2].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("report.pdf", blocks[2].GetProperty("title").GetString());
        Assert.Equal("""{"type":"text","media_type":"text/plain","data":"Plain notes."}""", blocks[3].GetProperty("source").GetRawText());
        Assert.Equal("Compare them.", blocks[4].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Openai_compatible_gets_image_url_and_file_parts_when_the_client_spoke_another_dialect()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/text-a.sse");
        await rig.CollectAsync(Mixed());

        var parts = rig.Upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["image_url", "image_url", "file", "text", "text"], parts.Select(p => p.GetProperty("type").GetString()));
        Assert.Equal("data:image/png;base64," + Png, parts[0].GetProperty("image_url").GetProperty("url").GetString());
        Assert.Equal("https://example.com/cat.jpg", parts[1].GetProperty("image_url").GetProperty("url").GetString());
        Assert.Equal("data:application/pdf;base64," + Pdf, parts[2].GetProperty("file").GetProperty("file_data").GetString());
        Assert.Equal("report.pdf", parts[2].GetProperty("file").GetProperty("filename").GetString());
        Assert.Equal("Plain notes.", parts[3].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Openai_compatible_gets_the_clients_own_parts_unchanged()
    {
        var body = $$$"""{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,{{{Png}}}","detail":"high"}},{"type":"text","text":"Hi"}]}]}""";
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/text-a.sse");
        await rig.CollectAsync(UpstreamKit.Request(body));

        var sent = rig.Upstream.Requests[0].Json.GetProperty("messages");
        Assert.Equal(JsonDocument.Parse(body).RootElement.GetProperty("messages").GetRawText(), sent.GetRawText());
    }

    [Fact]
    public async Task Gemini_gets_inline_data_and_file_data_parts()
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/googleai/streaming-success-basic-reply-short.sse");
        await rig.CollectAsync(Mixed());

        var parts = rig.Upstream.Requests[0].Json.GetProperty("contents")[0].GetProperty("parts").EnumerateArray().ToList();
        Assert.Equal("""{"inlineData":{"mimeType":"image/png","data":"%"}}""".Replace("%", Png, StringComparison.Ordinal), parts[0].GetRawText());
        Assert.Equal("""{"fileData":{"mimeType":"image/jpeg","fileUri":"https://example.com/cat.jpg"}}""", parts[1].GetRawText());
        Assert.Equal("application/pdf", parts[2].GetProperty("inlineData").GetProperty("mimeType").GetString());
        Assert.Equal("Plain notes.", parts[3].GetProperty("text").GetString());
        Assert.Equal("Compare them.", parts[4].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Ollama_gets_base64_images_and_refuses_urls_and_pdfs_naming_the_part()
    {
        var imageOnly = AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes($$$"""
            {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": [
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "{{{Png}}}"}},
              {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Notes."}},
              {"type": "text", "text": "What is it?"}]}]}
            """));
        await using (var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(OllamaAnswer), "application/x-ndjson"))
        {
            await using var rig = await UpstreamRig.StartAsync("ollama", upstream);
            await rig.CollectAsync(imageOnly);
            var message = upstream.Requests[0].Json.GetProperty("messages")[0];
            Assert.Equal(Png, message.GetProperty("images")[0].GetString());
            Assert.Equal("Notes.\nWhat is it?", message.GetProperty("content").GetString());
        }

        await using (var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(OllamaAnswer), "application/x-ndjson"))
        {
            await using var rig = await UpstreamRig.StartAsync("ollama", upstream);
            var error = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync(Mixed()));
            Assert.Equal(400, error.StatusCode);
            Assert.Equal("messages[0].content[1]", error.Error.Param);
            Assert.Equal("unsupported_content", error.Error.Code);
            Assert.Contains("\"test-model\"", error.Error.Message, StringComparison.Ordinal);
            Assert.Contains("image by URL", error.Error.Message, StringComparison.Ordinal);
            Assert.Empty(upstream.Requests);

            var pdf = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync(Mixed(withUrls: false)));
            Assert.Equal("messages[0].content[1]", pdf.Error.Param);
            Assert.Contains("document (application/pdf", pdf.Error.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("openai", "openai/text-a.sse")]
    [InlineData("anthropic", "anthropic/basic_response.sse")]
    public async Task A_model_declared_without_vision_refuses_parts_before_calling_the_upstream(string provider, string fixture)
    {
        await using var rig = await UpstreamRig.ReplayAsync(provider, fixture, configure: o => o.Vision = false);
        var error = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync(Mixed()));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("messages[0].content[0]", error.Error.Param);
        Assert.Contains("\"Vision\": false", error.Error.Message, StringComparison.Ordinal);
        Assert.Empty(rig.Upstream.Requests);
    }

    [Fact]
    public async Task A_simulated_model_refuses_parts_unless_it_declares_vision_then_talks_about_them()
    {
        var request = Mixed() with { Model = "sim-fast" };
        var plain = SimTestKit.Backend();
        var error = await Assert.ThrowsAsync<ChatException>(() => SimTestKit.CollectAsync(plain, request));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("messages[0].content[0]", error.Error.Param);
        Assert.Contains("sim-fast", error.Error.Message, StringComparison.Ordinal);
        Assert.Contains("image (image/png", error.Error.Message, StringComparison.Ordinal);

        var vision = SimTestKit.Backend(o => o.Vision = true);
        var events = await SimTestKit.CollectAsync(vision, request with { MaxTokens = 60, Seed = 3 });
        var text = string.Concat(events.OfType<TextDeltaEvent>().Select(e => e.Text));
        Assert.Matches("(?i)image|picture|document|report", text);
        var usage = events.OfType<UsageEvent>().Single().Usage;
        Assert.Equal(TokenCounter.CountPrompt(request.Messages), usage.PromptTokens);
    }
}
