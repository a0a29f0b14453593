using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Ollama;
using Sluice.Providers.Simulation;
using Sluice.Testing;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

/// <summary>Structured outputs, natural answer lengths, several choices, parallel tool calls and logprobs of the simulated models.</summary>
public sealed class SimulatedFidelityTests
{
    /// <summary>Schemas of the kinds clients send: strict objects, enums, nesting, arrays, bounds, unions, $defs and recursion.</summary>
    public static readonly string[] Schemas =
    [
        """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}""",
        """{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","unit","days"],"additionalProperties":false}""",
        """{"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"explanation":{"type":"string"},"output":{"type":"string"}},"required":["explanation","output"],"additionalProperties":false}},"final_answer":{"type":"string"}},"required":["steps","final_answer"],"additionalProperties":false}""",
        """{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string"},"minItems":3,"maxItems":5,"uniqueItems":true}},"required":["tags"],"additionalProperties":false}""",
        """{"type":"object","properties":{"score":{"type":"number","minimum":0,"maximum":1},"count":{"type":"integer","exclusiveMinimum":10,"exclusiveMaximum":13},"even":{"type":"integer","multipleOf":2,"minimum":3,"maximum":9}},"required":["score","count","even"],"additionalProperties":false}""",
        """{"type":"object","properties":{"note":{"type":["string","null"]},"flag":{"type":"boolean"}},"required":["note","flag"],"additionalProperties":false}""",
        """{"type":"object","properties":{"code":{"type":"string","minLength":8,"maxLength":10}},"required":["code"],"additionalProperties":false}""",
        """{"type":"object","properties":{"when":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},"mail":{"type":"string","format":"email"},"link":{"type":"string","format":"uri"},"id":{"type":"string","format":"uuid"}},"required":["when","day","mail","link","id"],"additionalProperties":false}""",
        """{"type":"object","properties":{"kind":{"const":"event"},"payload":{"anyOf":[{"type":"object","properties":{"x":{"type":"number"}},"required":["x"],"additionalProperties":false},{"type":"string"}]}},"required":["kind","payload"],"additionalProperties":false}""",
        """{"type":"object","$defs":{"person":{"type":"object","properties":{"name":{"type":"string"},"email":{"type":"string","format":"email"}},"required":["name","email"],"additionalProperties":false}},"properties":{"author":{"$ref":"#/$defs/person"},"reviewers":{"type":"array","items":{"$ref":"#/$defs/person"},"maxItems":2}},"required":["author","reviewers"],"additionalProperties":false}""",
        """{"type":"object","$defs":{"node":{"type":"object","properties":{"value":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["value","children"],"additionalProperties":false}},"properties":{"root":{"$ref":"#/$defs/node"}},"required":["root"],"additionalProperties":false}""",
        """{"type":"object","properties":{"matrix":{"type":"array","items":{"type":"array","items":{"type":"integer","minimum":-5,"maximum":5},"minItems":2,"maxItems":2},"minItems":2,"maxItems":2}},"required":["matrix"],"additionalProperties":false}""",
        """{"type":"object","properties":{"address":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string","maxLength":5},"geo":{"type":"object","properties":{"lat":{"type":"number","minimum":-90,"maximum":90},"lon":{"type":"number","minimum":-180,"maximum":180}},"required":["lat","lon"],"additionalProperties":false}},"required":["street","zip","geo"],"additionalProperties":false}},"required":["address"],"additionalProperties":false}""",
        """{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a"]}""",
        """{"type":"object","allOf":[{"properties":{"x":{"type":"integer"}},"required":["x"]},{"properties":{"y":{"type":"string","enum":["p","q"]}},"required":["y"]}]}""",
        """{"type":"object","properties":{"priority":{"type":"integer","enum":[1,2,3]},"labels":{"type":"array","items":{"type":"string","enum":["bug","feature","docs"]},"minItems":1}},"required":["priority","labels"],"additionalProperties":false}""",
        """{"type":"object","properties":{"temperature":{"type":"number","exclusiveMinimum":-273.15,"maximum":60}},"required":["temperature"],"additionalProperties":false}""",
        """{"type":"object","properties":{"result":{"oneOf":[{"type":"integer"},{"type":"boolean"}]}},"required":["result"],"additionalProperties":false}""",
        """{"type":"object","properties":{"empty":{"type":"array","items":{"type":"string"},"maxItems":0},"nothing":{"type":"null"}},"required":["empty","nothing"],"additionalProperties":false}""",
        """{"type":"object","properties":{"summary":{"type":"string","description":"one sentence"},"sentiment":{"type":"string","enum":["positive","negative","neutral"]},"confidence":{"type":"number","minimum":0,"maximum":1},"entities":{"type":"array","items":{"type":"object","properties":{"text":{"type":"string"},"type":{"type":"string","enum":["person","place","org"]}},"required":["text","type"],"additionalProperties":false}}},"required":["summary","sentiment","confidence","entities"],"additionalProperties":false}""",
    ];

    public static TheoryData<int> SchemaIndexes()
    {
        var data = new TheoryData<int>();
        for (var i = 0; i < Schemas.Length; i++)
        {
            data.Add(i);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SchemaIndexes))]
    public async Task Json_schema_answers_validate_against_the_schema_for_every_seed(int index)
    {
        using var schema = JsonDocument.Parse(Schemas[index]);
        for (var seed = 1; seed <= 25; seed++)
        {
            var request = Request("Summarise the report about Norwegian fjords and salmon farming", null, seed: seed) with
            {
                ResponseFormat = new ResponseFormat { Type = ResponseFormat.JsonSchemaType, Name = "answer", Schema = schema.RootElement.Clone() },
            };
            var events = await CollectAsync(Backend(), request);
            var text = Text(events);
            using var answer = JsonDocument.Parse(text);
            var errors = SchemaValidator.Validate(answer.RootElement, schema.RootElement);
            Assert.True(errors.Count == 0, $"seed {seed}: {text}\n{string.Join("\n", errors)}");
            Assert.Equal(FinishReasons.Stop, events.OfType<FinishEvent>().Single().Reason);
            Assert.Equal(TokenCounter.Count(text), events.OfType<UsageEvent>().Single().Usage.CompletionTokens);
        }
    }

    [Fact]
    public void The_validator_rejects_what_breaks_the_schema()
    {
        using var schema = JsonDocument.Parse(Schemas[1]);
        foreach (var bad in (string[])["""{"city":"Oslo","unit":"kelvin","days":3}""", """{"city":"Oslo","unit":"celsius","days":9}""", """{"city":"Oslo","unit":"celsius"}""", """{"city":"Oslo","unit":"celsius","days":3,"extra":1}"""])
        {
            using var value = JsonDocument.Parse(bad);
            Assert.NotEmpty(SchemaValidator.Validate(value.RootElement, schema.RootElement));
        }
    }

    [Fact]
    public async Task Json_object_answers_are_a_json_object_about_the_prompt()
    {
        var request = Request("List facts about volcanoes in Iceland", null, seed: 3) with { ResponseFormat = new ResponseFormat { Type = ResponseFormat.JsonObjectType } };
        using var answer = JsonDocument.Parse(Text(await CollectAsync(Backend(), request)));
        Assert.Equal(JsonValueKind.Object, answer.RootElement.ValueKind);
        Assert.Contains("volcanoes", answer.RootElement.GetRawText(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_max_tokens_below_the_json_cuts_it_with_length()
    {
        using var schema = JsonDocument.Parse(Schemas[2]);
        var request = Request("Explain sorting", 5, seed: 3) with
        {
            ResponseFormat = new ResponseFormat { Type = ResponseFormat.JsonSchemaType, Name = "steps", Schema = schema.RootElement.Clone() },
        };
        var events = await CollectAsync(Backend(), request);
        Assert.Equal(5, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, events.OfType<FinishEvent>().Single().Reason);
    }

    [Fact]
    public async Task Natural_length_varies_per_prompt_and_max_tokens_decides_length_or_stop()
    {
        var backend = Backend(o => o.DefaultAnswerTokens = 300);
        var lengths = new HashSet<int>();
        foreach (var prompt in (string[])["Tell me about lighthouses", "How do glaciers move?", "Explain compound interest", "Why is the sky blue?", "Describe a good sourdough"])
        {
            var natural = backend.NaturalAnswerTokens(Request(prompt, null));
            Assert.InRange(natural, 300, 480);
            lengths.Add(natural);

            var free = await CollectAsync(backend, Request(prompt, null, seed: 1));
            var count = Deltas(free).Count;
            Assert.InRange(count, natural, natural + 60);
            Assert.EndsWith(".", Text(free), StringComparison.Ordinal);
            Assert.True(Text(free).Length >= 1_375, $"{prompt}: {Text(free).Length} characters");
            Assert.Equal(FinishReasons.Stop, free.OfType<FinishEvent>().Single().Reason);

            var cut = await CollectAsync(backend, Request(prompt, count - 1, seed: 1));
            Assert.Equal(count - 1, Deltas(cut).Count);
            Assert.Equal(FinishReasons.Length, cut.OfType<FinishEvent>().Single().Reason);

            var roomy = await CollectAsync(backend, Request(prompt, count + 200, seed: 1));
            Assert.Equal(Text(free), Text(roomy));
            Assert.Equal(FinishReasons.Stop, roomy.OfType<FinishEvent>().Single().Reason);
        }

        Assert.True(lengths.Count >= 3, "the natural length should differ between prompts");
    }

    [Fact]
    public async Task Several_choices_are_interleaved_distinct_and_deterministic_with_a_seed()
    {
        var request = Request("Describe the tides", 30, seed: 9) with { N = 3 };
        var first = await CollectAsync(Backend(), request);
        var second = await CollectAsync(Backend(), request);
        var texts = Enumerable.Range(0, 3).Select(i => string.Concat(first.OfType<TextDeltaEvent>().Where(e => e.ChoiceIndex == i).Select(e => e.Text))).ToList();
        Assert.Equal(3, texts.Distinct().Count());
        Assert.Equal(texts, Enumerable.Range(0, 3).Select(i => string.Concat(second.OfType<TextDeltaEvent>().Where(e => e.ChoiceIndex == i).Select(e => e.Text))));
        Assert.Equal([0, 1, 2], first.OfType<TextDeltaEvent>().Take(3).Select(e => e.ChoiceIndex));
        Assert.Equal(3, first.OfType<FinishEvent>().Count());
        Assert.Equal(90, first.OfType<UsageEvent>().Single().Usage.CompletionTokens);

        // Choice 0 is what a one-choice request with the same seed answers.
        Assert.Equal(texts[0], Text(await CollectAsync(Backend(), request with { N = 1 })));
    }

    [Fact]
    public async Task Seeded_choices_are_distinct_for_many_seeds()
    {
        // Each choice draws from its own derived sequence; two choices of one request answering the same text would be a
        // derivation that collides (before the fix, per-process HashCode.Combine made this depend on the process).
        var backend = Backend();
        var alike = new List<long>();
        for (long seed = 1; seed <= 200; seed++)
        {
            var events = await CollectAsync(backend, Request("Describe the tides", 30, seed: seed) with { N = 3 });
            var texts = Enumerable.Range(0, 3).Select(i => string.Concat(events.OfType<TextDeltaEvent>().Where(e => e.ChoiceIndex == i).Select(e => e.Text)));
            if (texts.Distinct().Count() != 3)
            {
                alike.Add(seed);
            }
        }

        Assert.Empty(alike);
    }

    [Fact]
    public void A_choice_seed_is_the_same_in_every_process()
    {
        // Fixed values: the same request seed must answer the same after a restart or on another gateway process.
        Assert.Equal(SimulatedChatBackend.DeriveSeed(9, 1, 0), SimulatedChatBackend.DeriveSeed(9, 1, 0));
        Assert.Equal(-1_723_504_754, SimulatedChatBackend.DeriveSeed(9, 1, 0));
        Assert.Equal(1_576_275_327, SimulatedChatBackend.DeriveSeed(9, 2, 0x10b));
        Assert.NotEqual(SimulatedChatBackend.DeriveSeed(9, 1, 0), SimulatedChatBackend.DeriveSeed(9, 2, 0));
    }

    [Fact]
    public async Task Several_fitting_tools_are_called_in_parallel_unless_forbidden()
    {
        var request = Parse("""
            {"model":"sim","messages":[{"role":"user","content":"What is the weather and the time in Lisbon?"}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
                      {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
                      {"type":"function","function":{"name":"send_email","parameters":{"type":"object","properties":{"to":{"type":"string"}}}}}]}
            """);
        var parallel = await CollectAsync(Backend(), request);
        var starts = parallel.OfType<ToolCallDeltaEvent>().Where(e => e.Name is not null).ToList();
        Assert.Equal(["get_weather", "get_time"], starts.Select(s => s.Name));
        Assert.Equal([0, 1], starts.Select(s => s.ToolIndex));
        foreach (var index in new[] { 0, 1 })
        {
            using var arguments = JsonDocument.Parse(string.Concat(parallel.OfType<ToolCallDeltaEvent>().Where(e => e.ToolIndex == index).Select(e => e.ArgumentsFragment)));
            Assert.Equal("Lisbon", arguments.RootElement.GetProperty("city").GetString());
        }

        var single = await CollectAsync(Backend(), request with { ParallelToolCalls = false });
        Assert.Equal(["get_weather"], single.OfType<ToolCallDeltaEvent>().Where(e => e.Name is not null).Select(s => s.Name));
    }

    [Fact]
    public async Task Logprobs_are_plausible_and_do_not_change_the_text()
    {
        var plain = await CollectAsync(Backend(), Request("Explain photosynthesis", 40, seed: 5));
        var withLogprobs = await CollectAsync(Backend(), Request("Explain photosynthesis", 40, seed: 5) with { Logprobs = true, TopLogprobs = 3 });
        Assert.Equal(Text(plain), Text(withLogprobs));
        foreach (var delta in withLogprobs.OfType<TextDeltaEvent>())
        {
            var entry = Assert.Single(delta.Logprobs!);
            Assert.Equal(delta.Text, entry.Token);
            Assert.InRange(entry.Logprob, -2.0, 0);
            Assert.Equal(3, entry.TopLogprobs.Count);
            Assert.Equal(delta.Text, entry.TopLogprobs[0].Token);
            Assert.True(entry.TopLogprobs.Zip(entry.TopLogprobs.Skip(1)).All(p => p.First.Logprob > p.Second.Logprob), "top_logprobs sorted, most likely first");
            Assert.True(entry.TopLogprobs.Sum(t => Math.Exp(t.Logprob)) < 1.0);
            Assert.Equal(3, entry.TopLogprobs.Select(t => t.Token).Distinct().Count());
        }

        Assert.Null(plain.OfType<TextDeltaEvent>().First().Logprobs);
    }

    [Fact]
    public async Task Ollama_options_carry_the_fault_switches_and_format_the_structured_output()
    {
        var request = OllamaRequestParser.ParseChat(Encoding.UTF8.GetBytes(
            """{"model":"sim","messages":[{"role":"user","content":"Hi there"}],"format":"json","options":{"num_predict":50,"sim_fail_after_tokens":3}}"""));
        Assert.Equal("3", request.Metadata!["sim_fail_after_tokens"]);
        Assert.Equal(ResponseFormat.JsonObjectType, request.ResponseFormat!.Type);
        var (events, error) = await CollectUntilErrorAsync(Backend(), request);
        Assert.Equal(3, Deltas(events).Count);
        Assert.Equal(500, Assert.IsType<ChatException>(error).StatusCode);

        var schema = OllamaRequestParser.ParseChat(Encoding.UTF8.GetBytes(
            """{"model":"sim","messages":[{"role":"user","content":"Hi"}],"format":{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}}"""));
        Assert.Equal(ResponseFormat.JsonSchemaType, schema.ResponseFormat!.Type);
        var bad = Assert.Throws<ChatException>(() => OllamaRequestParser.ParseChat(Encoding.UTF8.GetBytes("""{"model":"sim","messages":[{"role":"user","content":"Hi"}],"format":"yaml"}""")));
        Assert.Equal("format", bad.Error.Param);
    }
}
