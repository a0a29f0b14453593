using System.Text;
using System.Text.Json;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Mqtt;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Mqtt.Tests;

/// <summary>The bridge's pieces without a broker: message JSON, request reading, options.</summary>
public sealed class BridgePartsTests
{
    public static TheoryData<string> Texts => new()
    {
        "plain ascii text that goes on for a while, long enough to need several chunks of a small size",
        "quotes \" and backslashes \\ and\nnew lines\tand tabs \u0001 control",
        "accents: café naïve résumé, CJK: 雪が降る, emoji: 🌊🚢⚓ mixed in with text 🌊",
        "lone surrogate \ud800 in the middle",
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void Chunks_fit_the_budget_exactly_parse_as_json_and_reassemble_the_text(string text)
    {
        var json = new MqttAnswerJson("req-1", "rid");
        foreach (var budget in new[] { 60, 61, 62, 63, 64, 80, 256 })
        {
            var pending = new StringBuilder(text);
            var rebuilt = new StringBuilder();
            var seq = 0L;
            while (pending.Length > 0)
            {
                var chunk = json.Chunk(++seq, pending, budget, out var consumed);
                Assert.True(consumed > 0, $"budget {budget}: nothing fit");
                Assert.True(chunk.Length <= budget, $"budget {budget}: {chunk.Length} bytes");
                pending.Remove(0, consumed);

                using var document = JsonDocument.Parse(chunk);
                Assert.Equal("req-1", document.RootElement.GetProperty("id").GetString());
                Assert.Equal(seq, document.RootElement.GetProperty("seq").GetInt64());
                rebuilt.Append(document.RootElement.GetProperty("content").GetString());
            }

            Assert.Equal(text.Replace('\ud800', '\uFFFD'), rebuilt.ToString());
        }
    }

    [Fact]
    public void A_chunk_is_cut_before_a_character_that_would_overflow_never_inside_it()
    {
        var json = new MqttAnswerJson("x", "rid");
        var empty = json.Chunk(1, new StringBuilder(), 1000, out _).Length; // {"id":"x","seq":1,"content":""}
        var pending = new StringBuilder("ab🌊");
        var chunk = json.Chunk(1, pending, empty + 3, out var consumed); // room for "ab" plus 1 byte: not the 4-byte emoji
        Assert.Equal(2, consumed);
        Assert.Equal(empty + 2, chunk.Length);
    }

    [Fact]
    public void Done_error_and_single_messages_have_the_documented_shape()
    {
        var json = new MqttAnswerJson("q", "rid-9");
        using var done = JsonDocument.Parse(json.Done(7, "stop", new ChatUsage(12, 30)));
        Assert.Equal("""{"id":"q","seq":7,"done":true,"finish_reason":"stop","usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42},"request_id":"rid-9"}""", done.RootElement.GetRawText());

        using var single = JsonDocument.Parse(json.Single(1, "Hi \"there\"", "length", new ChatUsage(1, 2)));
        Assert.Equal("Hi \"there\"", single.RootElement.GetProperty("content").GetString());
        Assert.True(single.RootElement.GetProperty("done").GetBoolean());

        var longMessage = new string('m', 2_000);
        var error = json.Error(3, new ErrorInfo(longMessage, ErrorTypes.Server, null, "answer_interrupted"), 300);
        Assert.True(error.Length <= 300, $"{error.Length} bytes");
        using var parsed = JsonDocument.Parse(error);
        var body = parsed.RootElement.GetProperty("error");
        Assert.EndsWith("…", body.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("answer_interrupted", body.GetProperty("code").GetString());
        Assert.False(body.TryGetProperty("param", out _));

        using var anonymous = JsonDocument.Parse(new MqttAnswerJson(null, "r").Error(1, new ErrorInfo("m", "t"), 1000));
        Assert.Equal(JsonValueKind.Null, anonymous.RootElement.GetProperty("id").ValueKind);
    }

    [Fact]
    public void Envelope_fields_are_removed_before_the_request_reaches_a_backend()
    {
        var reader = new MqttRequestReader(new MqttBridgeOptions { Prefix = "p" }, new ChatRequestLimits());
        var request = reader.Read(Encoding.UTF8.GetBytes("""{"id": 17, "api_key": "sk-secret", "reply_to": "a/b", "model": "m", "prompt": "Hi", "user": "u1"}"""));
        Assert.Equal("17", request.Id);
        Assert.Equal("a/b", request.ReplyTopic);
        Assert.Equal("sk-secret", request.ApiKey);
        Assert.True(request.Stream);
        Assert.True(request.Chat.Stream);
        Assert.Equal("u1", request.Chat.User);

        // OpenAI-speaking backends forward the raw body: the key and the MQTT fields must not be in it.
        var raw = Encoding.UTF8.GetString(request.Chat.RawBody.Span);
        Assert.DoesNotContain("sk-secret", raw, StringComparison.Ordinal);
        Assert.DoesNotContain("reply_to", raw, StringComparison.Ordinal);
        Assert.DoesNotContain("\"id\"", raw, StringComparison.Ordinal);

        var defaults = reader.Read(Encoding.UTF8.GetBytes("""{"id": "x", "model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": false}"""));
        Assert.Equal("p/responses/x", defaults.ReplyTopic);
        Assert.False(defaults.Stream);
    }

    [Theory]
    [InlineData("""{"id": "a/b", "model": "m", "prompt": "x"}""", null)]
    [InlineData("""{"id": "a+", "model": "m", "prompt": "x"}""", null)]
    [InlineData("""{"id": "", "model": "m", "prompt": "x"}""", null)]
    [InlineData("""{"id": true, "model": "m", "prompt": "x"}""", null)]
    [InlineData("""{"id": "ok", "model": "m", "prompt": "x", "reply_to": "p/requests/loop"}""", "p/responses/ok")]
    [InlineData("""[1, 2]""", null)]
    public void Requests_without_a_usable_address_are_rejected_with_the_address_that_is_left(string payload, string? replyTopic)
    {
        var reader = new MqttRequestReader(new MqttBridgeOptions { Prefix = "p" }, new ChatRequestLimits());
        var rejected = Assert.Throws<MqttRequestRejectedException>(() => reader.Read(Encoding.UTF8.GetBytes(payload)));
        Assert.Equal(replyTopic, rejected.ReplyTopic);
    }

    [Theory]
    [InlineData("""{"id": "x1", "model": "m", "prompt": "cut""", "x1", "p/responses/x1")]
    [InlineData("""{"model": "m", "reply_to": "dev/7", "id": "x2", "prompt": """, "x2", "dev/7")]
    [InlineData("""{"messages": [{"role": "user", "content": "no id before the break"} """, null, null)]
    [InlineData("""not json""", null, null)]
    public void A_broken_request_is_still_answered_when_its_address_can_be_read(string payload, string? id, string? replyTopic)
    {
        var reader = new MqttRequestReader(new MqttBridgeOptions { Prefix = "p" }, new ChatRequestLimits());
        var rejected = Assert.Throws<MqttRequestRejectedException>(() => reader.Read(Encoding.UTF8.GetBytes(payload)));
        Assert.Equal("invalid_json", rejected.Error.Code);
        Assert.Equal(id, rejected.Id);
        Assert.Equal(replyTopic, rejected.ReplyTopic);
    }

    [Fact]
    public void The_example_config_has_an_mqtt_section_with_every_key_and_the_bridge_off()
    {
        var path = Path.Combine(Fixtures.RepositoryRoot, "sluice.example.json");
        var configuration = GatewayConfiguration.Build(path);
        var options = GatewayConfiguration.Bind(configuration);
        Assert.False(options.Mqtt.Enabled);

        var documented = configuration.GetSection("Mqtt").GetChildren().Select(c => c.Key).ToHashSet();
        var settable = typeof(MqttBridgeOptions).GetProperties().Where(p => p.CanWrite).Select(p => p.Name);
        Assert.All(settable, name => Assert.Contains(name, documented));

        var defaults = new MqttBridgeOptions();
        Assert.Equal(defaults.MaxMessageBytes, options.Mqtt.MaxMessageBytes);
        Assert.Equal(defaults.MinIntervalMs, options.Mqtt.MinIntervalMs);
        Assert.Equal("sluice", options.Mqtt.Prefix);

        // Copied with only a broker filled in, the section is valid as it stands.
        var enabled = GatewayConfiguration.Bind(GatewayConfiguration.Build(path, new Dictionary<string, string?> { ["Mqtt:Broker"] = "mqtt://127.0.0.1:1883" }));
        var client = enabled.Mqtt.ToClientOptions();
        Assert.Null(client.Username);
        Assert.Null(client.Password);
        Assert.True(client.CleanSession);
    }

    [Fact]
    public void Mqtt_settings_bind_from_the_environment_and_are_validated_with_a_fix()
    {
        var overrides = new Dictionary<string, string?>
        {
            ["Mqtt:Broker"] = "mqtt://broker.local",
            ["Mqtt:Prefix"] = "plant/line-1",
            ["Mqtt:KeepAliveSeconds"] = "5",
        };
        var options = GatewayConfiguration.Bind(GatewayConfiguration.Build(null, overrides));
        var client = options.Mqtt.ToClientOptions();
        Assert.Equal(("broker.local", 1883), (client.Host, client.Port));
        Assert.Equal(TimeSpan.FromSeconds(5), client.KeepAlive);
        Assert.StartsWith("sluice-", client.ClientId, StringComparison.Ordinal);
        Assert.Equal("plant/line-1/requests/#", options.Mqtt.RequestFilter);
    }

    [Fact]
    public void Mqtts_broker_uses_tls_on_8883_by_default_with_the_ca_file()
    {
        var ca = Path.GetTempFileName();
        try
        {
            var overrides = new Dictionary<string, string?> { ["Mqtt:Broker"] = "mqtts://broker.local", ["Mqtt:CaFile"] = ca };
            var client = GatewayConfiguration.Bind(GatewayConfiguration.Build(null, overrides)).Mqtt.ToClientOptions();
            Assert.Equal(("broker.local", 8883, true, ca), (client.Host, client.Port, client.UseTls, client.CaFile));

            var plain = new MqttBridgeOptions { Broker = "mqtt://broker.local" }.ToClientOptions();
            Assert.Equal((1883, false), (plain.Port, plain.UseTls));
        }
        finally
        {
            File.Delete(ca);
        }
    }

    [Theory]
    [InlineData("Broker", "http://x:1883", "mqtt://host:port")]
    [InlineData("Broker", "ws://x:8883", "mqtts://host:8883")]
    [InlineData("CaFile", "/nonexistent/ca.pem", "TLS address")]
    [InlineData("Broker", "mqtt://user:pw@x", "Username")]
    [InlineData("Prefix", "a/#", "Mqtt:Prefix")]
    [InlineData("Prefix", "a/", "Mqtt:Prefix")]
    [InlineData("MaxMessageBytes", "100", "256")]
    [InlineData("ChunkQos", "2", "QoS 2")]
    [InlineData("CleanSession", "false", "Mqtt:ClientId")]
    [InlineData("PasswordEnv", "SLUICE_TEST_SURELY_UNSET_VAR", "Mqtt:Username")]
    public void Invalid_mqtt_settings_name_the_key_and_the_fix(string key, string value, string hint)
    {
        var overrides = new Dictionary<string, string?> { ["Mqtt:Broker"] = "mqtt://127.0.0.1:1883", ["Mqtt:" + key] = value };
        var error = Assert.Throws<GatewayConfigurationException>(() => GatewayConfiguration.Bind(GatewayConfiguration.Build(null, overrides)));
        Assert.Contains(hint, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_password_environment_variable_that_is_not_set_is_a_configuration_error()
    {
        var options = new MqttBridgeOptions { Broker = "mqtt://127.0.0.1", Username = "bridge", PasswordEnv = "SLUICE_TEST_SURELY_UNSET_VAR" };
        var error = Assert.Throws<GatewayConfigurationException>(options.Validate);
        Assert.Contains("SLUICE_TEST_SURELY_UNSET_VAR", error.Message, StringComparison.Ordinal);
    }
}
