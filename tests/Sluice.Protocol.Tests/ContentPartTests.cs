using System.Text;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Ollama;

namespace Sluice.Protocol.Tests;

/// <summary>Image and document parts parsed from every dialect into <see cref="ChatMessage.Parts"/>, with their limits.</summary>
public sealed class ContentPartTests
{
    // A 1x1 PNG and the first bytes of a PDF, base64.
    internal const string Png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    internal const string Pdf = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK";

    private static ChatRequest OpenAI(string json, ChatRequestLimits? limits = null) => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(json), limits);

    private static ChatRequest Anthropic(string json, ChatRequestLimits? limits = null) => AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes(json), limits);

    [Fact]
    public void Openai_image_url_and_file_parts_are_kept_in_order_with_the_text_still_in_content()
    {
        var request = OpenAI($$$"""
            {"model": "m", "messages": [{"role": "user", "content": [
              {"type": "text", "text": "What is in "},
              {"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{Png}}}", "detail": "low"}},
              {"type": "text", "text": "and this?"},
              {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
              {"type": "file", "file": {"file_data": "data:application/pdf;base64,{{{Pdf}}}", "filename": "report.pdf"}},
              {"type": "file", "file": {"file_id": "file-abc123"}}
            ]}]}
            """);

        var message = Assert.Single(request.Messages);
        Assert.Equal("What is in and this?", message.Content);
        var parts = message.Parts!;
        Assert.Equal([ContentPartKind.Text, ContentPartKind.Image, ContentPartKind.Text, ContentPartKind.Image, ContentPartKind.Document, ContentPartKind.Document], parts.Select(p => p.Kind));
        Assert.Equal("image/png", parts[1].MediaType);
        Assert.Equal(Png, parts[1].Data);
        Assert.Equal(Convert.FromBase64String(Png).Length, parts[1].ByteCount);
        Assert.Equal("low", parts[1].Detail);
        Assert.Equal("messages[0].content[1]", parts[1].Param);
        Assert.Equal("https://example.com/cat.jpg", parts[3].Url);
        Assert.Equal("image/jpeg", parts[3].MediaType);
        Assert.Equal(("application/pdf", "report.pdf"), (parts[4].MediaType, parts[4].Filename));
        Assert.Equal("file-abc123", parts[5].FileId);
        Assert.Equal(4, request.Attachments().Count());
    }

    [Fact]
    public void Text_only_arrays_keep_no_parts_and_attachments_add_to_the_prompt_estimate()
    {
        var plain = OpenAI("""{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]}""");
        Assert.Null(plain.Messages[0].Parts);

        var withImage = OpenAI($$$"""{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{Png}}}"}}]}]}""");
        Assert.Equal(TokenCounter.CountPrompt(plain.Messages) + 85, TokenCounter.CountPrompt(withImage.Messages));
    }

    [Theory]
    [InlineData("""{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}""", "messages[0].content[0].image_url.url", "invalid_value")]
    [InlineData("""{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}""", "messages[0].content[0].image_url.url", "invalid_value")]
    [InlineData("""{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}""", "messages[0].content[0].image_url.url", "unsupported_value")]
    [InlineData("""{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}""", "messages[0].content[0].image_url.url", "invalid_value")]
    [InlineData("""{"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "max"}}""", "messages[0].content[0].image_url.detail", "invalid_value")]
    [InlineData("""{"type": "image_url"}""", "messages[0].content[0].image_url", "missing_required_parameter")]
    [InlineData("""{"type": "file", "file": {"filename": "a.pdf"}}""", "messages[0].content[0].file.file_data", "missing_required_parameter")]
    [InlineData("""{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}""", "messages[0].content[0].type", "unsupported_value")]
    public void Bad_openai_parts_name_the_parameter(string part, string param, string code)
    {
        var error = Assert.Throws<ChatException>(() => OpenAI($$$"""{"model": "m", "messages": [{"role": "user", "content": [{{{part}}}]}]}"""));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(param, error.Error.Param);
        Assert.Equal(code, error.Error.Code);
    }

    [Fact]
    public void Images_are_refused_outside_user_messages()
    {
        var error = Assert.Throws<ChatException>(() => OpenAI($$$"""{"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{Png}}}"}}]}]}"""));
        Assert.Equal("messages[0].content[0].type", error.Error.Param);
        Assert.Contains("user messages", error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_count_and_size_limits_name_the_part_past_them()
    {
        var image = $$$"""{"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{Png}}}"}}""";
        var three = $$$"""{"model": "m", "messages": [{"role": "user", "content": [{{{image}}}]}, {"role": "user", "content": [{{{image}}}, {{{image}}}]}]}""";
        var tooMany = Assert.Throws<ChatException>(() => OpenAI(three, new ChatRequestLimits { MaxAttachments = 2 }));
        Assert.Equal("messages[1].content[1]", tooMany.Error.Param);
        Assert.Equal("too_many_attachments", tooMany.Error.Code);
        Assert.Contains("Limits:MaxAttachments", tooMany.Error.Message, StringComparison.Ordinal);

        var tooBig = Assert.Throws<ChatException>(() => OpenAI(three, new ChatRequestLimits { MaxAttachmentBytes = 20 }));
        Assert.Equal("messages[0].content[0].image_url.url", tooBig.Error.Param);
        Assert.Equal("attachment_too_large", tooBig.Error.Code);
        Assert.Contains("Limits:MaxAttachmentBytes", tooBig.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Anthropic_image_and_document_blocks_become_parts()
    {
        var request = Anthropic($$$"""
            {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "{{{Png}}}"}},
              {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.webp"}},
              {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "{{{Pdf}}}"}, "title": "Q3 report"},
              {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}},
              {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
              {"type": "text", "text": "Summarise."}
            ]}]}
            """);

        var message = Assert.Single(request.Messages);
        Assert.Equal("Summarise.", message.Content);
        var parts = message.Parts!;
        Assert.Equal(6, parts.Count);
        Assert.Equal((ContentPartKind.Image, "image/png", Png), (parts[0].Kind, parts[0].MediaType, parts[0].Data));
        Assert.Equal("https://example.com/dog.webp", parts[1].Url);
        Assert.Equal((ContentPartKind.Document, "application/pdf", "Q3 report"), (parts[2].Kind, parts[2].MediaType, parts[2].Filename));
        Assert.Equal(("text/plain", "Plain notes."), (parts[3].MediaType, parts[3].Text));
        Assert.Equal("https://example.com/paper.pdf", parts[4].Url);
        Assert.Equal(ContentPartKind.Text, parts[5].Kind);
    }

    [Theory]
    [InlineData("""{"type": "image", "source": {"type": "file", "file_id": "file_1"}}""", "messages[0].content[0].source.type")]
    [InlineData("""{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}""", "messages[0].content[0].source.media_type")]
    [InlineData("""{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}""", "messages[0].content[0].source.data")]
    [InlineData("""{"type": "document", "source": {"type": "content", "content": []}}""", "messages[0].content[0].source.type")]
    public void Bad_anthropic_blocks_name_the_parameter(string block, string param)
    {
        var error = Assert.Throws<ChatException>(() => Anthropic($$$"""{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{{{block}}}]}]}"""));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(param, error.Error.Param);
    }

    [Fact]
    public void Ollama_images_become_image_parts_with_the_media_type_read_from_their_bytes()
    {
        var request = OllamaRequestParser.ParseChat(Encoding.UTF8.GetBytes($$$"""
            {"model": "llava", "messages": [{"role": "user", "content": "What is this?", "images": ["{{{Png}}}"]}]}
            """));
        var parts = request.Messages[0].Parts!;
        Assert.Equal((ContentPartKind.Image, "image/png", "messages[0].images[0]"), (parts[0].Kind, parts[0].MediaType, parts[0].Param));
        Assert.Equal("What is this?", parts[1].Text);
        Assert.Equal("What is this?", request.Messages[0].Content);

        var generate = OllamaRequestParser.ParseGenerate(Encoding.UTF8.GetBytes($$$"""{"model": "llava", "prompt": "Describe", "images": ["{{{Png}}}"]}"""));
        Assert.Single(generate.Attachments());
    }

    [Fact]
    public void Responses_input_image_and_input_file_parts_become_parts()
    {
        var request = Sluice.Protocol.Responses.ResponsesRequestParser.Parse(Encoding.UTF8.GetBytes($$$"""
            {"model": "m", "input": [{"role": "user", "content": [
              {"type": "input_text", "text": "Compare "},
              {"type": "input_image", "image_url": "data:image/png;base64,{{{Png}}}", "detail": "high"},
              {"type": "input_image", "image_url": "https://example.com/b.gif"},
              {"type": "input_file", "file_data": "data:application/pdf;base64,{{{Pdf}}}", "filename": "r.pdf"},
              {"type": "input_file", "file_url": "https://example.com/paper.pdf"}
            ]}]}
            """));
        var parts = request.Messages.Single().Parts!;
        Assert.Equal("Compare ", request.Messages[0].Content);
        Assert.Equal(("image/png", "high", "input[0].content[1]"), (parts[1].MediaType, parts[1].Detail, parts[1].Param));
        Assert.Equal(("https://example.com/b.gif", "image/gif"), (parts[2].Url, parts[2].MediaType));
        Assert.Equal(("application/pdf", "r.pdf"), (parts[3].MediaType, parts[3].Filename));
        Assert.Equal("https://example.com/paper.pdf", parts[4].Url);

        var audio = Assert.Throws<ChatException>(() => Sluice.Protocol.Responses.ResponsesRequestParser.Parse(Encoding.UTF8.GetBytes(
            """{"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}""")));
        Assert.Equal("input[0].content[0].type", audio.Error.Param);
    }

    [Theory]
    [InlineData("image/png", ContentPartTests.Png)]
    [InlineData("image/jpeg", "/9j/4AAQSkZJRgABAQ==")]
    [InlineData("image/gif", "R0lGODlhAQABAA==")]
    [InlineData("image/webp", "UklGRiQAAABXRUJQVlA4")]
    [InlineData(null, "JVBERi0xLjQK")]
    public void Image_types_are_sniffed_from_the_first_bytes(string? expected, string base64) =>
        Assert.Equal(expected, ContentParts.SniffImageType(base64));
}
