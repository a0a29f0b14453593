using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using OpenAI;
using OpenAI.Chat;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Images and documents through the gateway with the official SDKs: passed through to OpenAI-compatible upstreams as
/// sent, translated for the others (checked in what the recorded upstream received), refused with a 400 in the
/// client's dialect by a model that cannot take them.
/// </summary>
public sealed class ContentPartTests
{
    // A 1x1 PNG and a minimal PDF.
    private const string Png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    private const string Pdf = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK";

    private static Task<TestGateway> GatewayFor(string provider, ReplayUpstream upstream) => TestGateway.StartAsync(o => o.Models =
    [
        .. o.Models,
        new ModelOptions { Name = "up", Provider = provider, BaseUrl = upstream.BaseUrl + (provider == "ollama" ? string.Empty : "/v1"), UpstreamModel = "up-model", MaxAttempts = 1 },
        new ModelOptions { Name = "sim-eyes", Provider = "sim", Vision = true },
    ]);

    private static ChatClient OpenAIClient(TestGateway gateway, string model) => new(
        model, new ApiKeyCredential("sk-test"), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(30) });

    private static AnthropicClient AnthropicClient(TestGateway gateway) => new(new Anthropic.Core.ClientOptions
    {
        BaseUrl = gateway.BaseAddress.ToString().TrimEnd('/'),
        ApiKey = "sk-ant-test",
        MaxRetries = 0,
        Timeout = TimeSpan.FromSeconds(30),
    });

    private static MessageCreateParams WithImageAndPdf(string model) => new()
    {
        Model = model,
        MaxTokens = 50,
        Messages =
        [
            new UserMessageParam
            {
                Content = new List<ContentBlockParam>
                {
                    new ImageBlockParam { Source = new Base64ImageSource { Data = Png, MediaType = MediaType.ImagePng } },
                    new ImageBlockParam { Source = new UrlImageSource { Url = "https://example.com/cat.jpg" } },
                    new DocumentBlockParam { Source = new Base64PdfSource { Data = Pdf }, Title = "report.pdf" },
                    new TextBlockParam { Text = "What do these show?" },
                },
            },
        ],
    };

    [Fact]
    public async Task Openai_sdk_image_and_file_parts_reach_an_openai_compatible_upstream_as_sent()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var gateway = await GatewayFor("openai", upstream);

        ChatMessage message = new UserChatMessage(
            ChatMessageContentPart.CreateTextPart("Describe the picture and the file."),
            ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(Convert.FromBase64String(Png)), "image/png", ChatImageDetailLevel.Low),
            ChatMessageContentPart.CreateImagePart(new Uri("https://example.com/cat.jpg")),
#pragma warning disable OPENAI001 // File parts are marked experimental in the SDK.
            ChatMessageContentPart.CreateFilePart(BinaryData.FromBytes(Convert.FromBase64String(Pdf)), "application/pdf", "report.pdf"));
#pragma warning restore OPENAI001
        var text = new StringBuilder();
        await foreach (var update in OpenAIClient(gateway, "up").CompleteChatStreamingAsync([message]))
        {
            text.Append(string.Concat(update.ContentUpdate.Select(p => p.Text)));
        }

        Assert.NotEmpty(text.ToString());
        var parts = upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["text", "image_url", "image_url", "file"], parts.Select(p => p.GetProperty("type").GetString()));
        Assert.Equal("data:image/png;base64," + Png, parts[1].GetProperty("image_url").GetProperty("url").GetString());
        Assert.Equal("low", parts[1].GetProperty("image_url").GetProperty("detail").GetString());
        Assert.Equal("https://example.com/cat.jpg", parts[2].GetProperty("image_url").GetProperty("url").GetString());
        Assert.Equal("report.pdf", parts[3].GetProperty("file").GetProperty("filename").GetString());
        Assert.Equal("data:application/pdf;base64," + Pdf, parts[3].GetProperty("file").GetProperty("file_data").GetString());
    }

    [Fact]
    public async Task Anthropic_sdk_image_and_document_blocks_reach_a_recorded_anthropic_upstream_translated()
    {
        var recording = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Fixtures.Read("anthropic/basic_response.sse")).TrimEnd() + "\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await GatewayFor("anthropic", upstream);

        var message = await AnthropicClient(gateway).Messages.Create(WithImageAndPdf("up"));
        Assert.True(message.Content[0].TryPickText(out var answer));
        Assert.Equal("Hello there!", answer.Text);

        var sent = upstream.Requests[0].Json;
        Assert.Equal("up-model", sent.GetProperty("model").GetString());
        var blocks = sent.GetProperty("messages")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["image", "image", "document", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("base64", blocks[0].GetProperty("source").GetProperty("type").GetString());
        Assert.Equal("image/png", blocks[0].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal(Png, blocks[0].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("https://example.com/cat.jpg", blocks[1].GetProperty("source").GetProperty("url").GetString());
        Assert.Equal("application/pdf", blocks[2].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal(Pdf, blocks[2].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("report.pdf", blocks[2].GetProperty("title").GetString());
        Assert.Equal("What do these show?", blocks[3].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Anthropic_sdk_blocks_become_image_url_and_file_parts_for_an_openai_compatible_upstream()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var gateway = await GatewayFor("openai", upstream);

        await AnthropicClient(gateway).Messages.Create(WithImageAndPdf("up"));

        var parts = upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["image_url", "image_url", "file", "text"], parts.Select(p => p.GetProperty("type").GetString()));
        Assert.Equal("data:image/png;base64," + Png, parts[0].GetProperty("image_url").GetProperty("url").GetString());
        Assert.Equal("data:application/pdf;base64," + Pdf, parts[2].GetProperty("file").GetProperty("file_data").GetString());
    }

    [Fact]
    public async Task Ollama_images_become_anthropic_image_blocks_with_the_media_type_read_from_the_bytes()
    {
        var recording = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Fixtures.Read("anthropic/basic_response.sse")).TrimEnd() + "\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await GatewayFor("anthropic", upstream);

        using var response = await gateway.Client.PostAsync("api/chat", TestGateway.Json(
            $$$"""{"model": "up", "stream": false, "messages": [{"role": "user", "content": "What is this?", "images": ["{{{Png}}}"]}]}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var blocks = upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content");
        Assert.Equal("""{"type":"base64","media_type":"image/png","data":"%"}""".Replace("%", Png, StringComparison.Ordinal), blocks[0].GetProperty("source").GetRawText());
        Assert.Equal("What is this?", blocks[1].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Responses_input_image_reaches_an_anthropic_upstream_as_an_image_block()
    {
        var recording = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Fixtures.Read("anthropic/basic_response.sse")).TrimEnd() + "\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await GatewayFor("anthropic", upstream);

        using var response = await gateway.Client.PostAsync("v1/responses", TestGateway.Json($$$"""
            {"model": "up", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,{{{Png}}}"}, {"type": "input_text", "text": "What is it?"}]}]}
            """));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var blocks = upstream.Requests[0].Json.GetProperty("messages")[0].GetProperty("content");
        Assert.Equal("image", blocks[0].GetProperty("type").GetString());
        Assert.Equal(Png, blocks[0].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("What is it?", blocks[1].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Chat_image_parts_reach_an_openai_responses_upstream_as_input_image_parts()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai-responses/function-call.sse"));
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "resp", Provider = "openai", Api = "responses", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }));

        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json($$$"""
            {"model": "resp", "max_tokens": 50, "messages": [{"role": "user", "content": [
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "{{{Png}}}"}},
              {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "{{{Pdf}}}"}, "title": "r.pdf"},
              {"type": "text", "text": "Read these"}]}]}
            """));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var content = upstream.Requests[0].Json.GetProperty("input")[0].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["input_image", "input_file", "input_text"], content.Select(c => c.GetProperty("type").GetString()));
        Assert.Equal("data:image/png;base64," + Png, content[0].GetProperty("image_url").GetString());
        Assert.Equal("r.pdf", content[1].GetProperty("filename").GetString());
    }

    [Fact]
    public async Task A_simulated_text_model_refuses_with_a_400_naming_model_and_part_in_each_dialect()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var gateway = await GatewayFor("openai", upstream);

        var openai = await Assert.ThrowsAsync<ClientResultException>(() => OpenAIClient(gateway, "sim-fast").CompleteChatAsync(
            [new UserChatMessage(ChatMessageContentPart.CreateTextPart("Look"), ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(Convert.FromBase64String(Png)), "image/png"))]));
        Assert.Equal(400, openai.Status);
        using (var body = JsonDocument.Parse(openai.GetRawResponse()!.Content.ToString()))
        {
            var error = body.RootElement.GetProperty("error");
            Assert.Equal("messages[0].content[1]", error.GetProperty("param").GetString());
            Assert.Equal("unsupported_content", error.GetProperty("code").GetString());
            Assert.Contains("\"sim-fast\"", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Contains("\"Vision\": true", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        var anthropic = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => AnthropicClient(gateway).Messages.Create(WithImageAndPdf("sim-fast")));
        Assert.Equal("invalid_request_error", anthropic.Type?.Raw());
        Assert.Contains("messages[0].content[0]", anthropic.Message, StringComparison.Ordinal);

        using var ollama = await gateway.Client.PostAsync("api/chat", TestGateway.Json(
            $$$"""{"model": "sim-fast", "messages": [{"role": "user", "content": "What is this?", "images": ["{{{Png}}}"]}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, ollama.StatusCode);
        var ollamaError = JsonDocument.Parse(await ollama.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
        Assert.Contains("messages[0].images[0]", ollamaError, StringComparison.Ordinal);
        Assert.Empty(upstream.Requests);
    }

    [Fact]
    public async Task A_simulated_model_with_vision_answers_about_its_attachments_and_counts_them()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var gateway = await GatewayFor("openai", upstream);

        var message = await AnthropicClient(gateway).Messages.Create(WithImageAndPdf("sim-eyes") with { MaxTokens = 40 });
        Assert.True(message.Content[0].TryPickText(out var text));
        Assert.Matches("(?i)image|picture|document|report", text.Text);

        var count = await AnthropicClient(gateway).Messages.CountTokens(new MessageCountTokensParams { Model = "sim-eyes", Messages = WithImageAndPdf("sim-eyes").Messages });
        Assert.Equal(count.InputTokens, message.Usage.InputTokens);
        Assert.True(message.Usage.InputTokens > 85 * 2);
    }

    [Fact]
    public async Task Count_and_size_limits_are_configurable_and_name_the_part()
    {
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Limits.MaxAttachments = 1;
            o.Models.Add(new ModelOptions { Name = "sim-eyes", Provider = "sim", Vision = true });
        });

        var image = $$$"""{"type":"image_url","image_url":{"url":"data:image/png;base64,{{{Png}}}"}}""";
        using var response = await gateway.PostChatAsync($$$"""{"model":"sim-eyes","messages":[{"role":"user","content":[{{{image}}},{{{image}}}]}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("messages[0].content[1]", error.GetProperty("param").GetString());
        Assert.Equal("too_many_attachments", error.GetProperty("code").GetString());

        using var one = await gateway.PostChatAsync($$$"""{"model":"sim-eyes","max_tokens":5,"messages":[{"role":"user","content":[{{{image}}}]}]}""");
        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
    }
}
