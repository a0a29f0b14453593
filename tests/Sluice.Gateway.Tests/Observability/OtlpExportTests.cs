using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Observability;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>
/// <c>Observability:Otlp</c> end to end: the official OpenTelemetry OTLP exporter, configured as docs/observability.md
/// says, delivers the gateway's spans and metrics to a collector over both protocols — http/protobuf under a base path
/// (as hosted collectors have: <c>…/otlp</c> + <c>/v1/traces</c>) and gRPC over HTTP/2, with the configured headers (their
/// credentials). The collector here records what
/// it receives (no OpenTelemetry Collector on this machine); a span's name, attributes and the service name are plain
/// UTF-8 inside the protobuf bytes, which is what is looked for.
/// </summary>
public sealed class OtlpExportTests
{
    private const string Streamed = """{"model":"sim-fast","messages":[{"role":"user","content":"Tell me about rivers"}],"stream":true,"max_tokens":8}""";

    [Theory]
    [InlineData("http/protobuf")]
    [InlineData("grpc")]
    public async Task Spans_and_metrics_reach_the_collector(string protocol)
    {
        await using var collector = await Collector.StartAsync(http2Only: protocol == "grpc");
        var endpoint = protocol == "grpc" ? collector.BaseAddress : new Uri(collector.BaseAddress, "otlp");
        await using (var gateway = await TestGateway.StartAsync(o =>
        {
            o.Observability.Otlp.Endpoint = endpoint.ToString().TrimEnd('/');
            o.Observability.Otlp.Protocol = protocol;
            o.Observability.Otlp.ServiceName = "sluice-otlp-test";
            o.Observability.Otlp.Headers["Authorization"] = "Basic dXNlcjpwYXNz==";
            o.Observability.Otlp.Headers["x-scope"] = "team a, b=c";
        }))
        {
            using var response = await gateway.PostChatAsync(Streamed);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("data: [DONE]", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The gateway's shutdown flushes both exporters; a batch may also have gone out before.
        var (tracesPath, metricsPath, contentType) = protocol == "grpc"
            ? ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", "application/grpc")
            : ("/otlp/v1/traces", "/otlp/v1/metrics", "application/x-protobuf");
        var traces = collector.Received(tracesPath);
        Assert.True(traces.Count > 0, $"no spans at {tracesPath}; the collector saw: {collector.Paths}");
        Assert.All(traces, r => Assert.StartsWith(contentType, r.ContentType, StringComparison.Ordinal));

        // The configured headers reach the collector as given, on every export (a hosted collector's credentials).
        Assert.All(collector.Received(tracesPath).Concat(collector.Received(metricsPath)), r =>
        {
            Assert.Equal("Basic dXNlcjpwYXNz==", r.Authorization);
            Assert.Equal("team a, b=c", r.Scope);
        });
        var spans = Concat(traces);
        Assert.Contains("sluice-otlp-test", spans, StringComparison.Ordinal);
        Assert.Contains("gen_ai.operation.name", spans, StringComparison.Ordinal);
        Assert.Contains("gen_ai.request.model", spans, StringComparison.Ordinal);
        Assert.Contains("sim-fast", spans, StringComparison.Ordinal);
        Assert.Contains("gen_ai.usage.output_tokens", spans, StringComparison.Ordinal);

        var metrics = collector.Received(metricsPath);
        Assert.True(metrics.Count > 0, $"no metrics at {metricsPath}; the collector saw: {collector.Paths}");
        var points = Concat(metrics);
        Assert.Contains("sluice.requests", points, StringComparison.Ordinal);
        Assert.Contains("sluice.time_to_first_token", points, StringComparison.Ordinal);
        Assert.Contains("sluice-otlp-test", points, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://collector:4318", "http://collector:4318/v1/traces")]
    [InlineData("http://collector:4318/", "http://collector:4318/v1/traces")]
    [InlineData("https://otlp.example.com/otlp", "https://otlp.example.com/otlp/v1/traces")]
    [InlineData("https://otlp.example.com/otlp/", "https://otlp.example.com/otlp/v1/traces")]
    public void A_signal_path_is_appended_to_the_base_address(string endpoint, string expected) =>
        Assert.Equal(new Uri(expected), OpenTelemetrySetup.SignalEndpoint(new Uri(endpoint), "v1/traces"));

    [Fact]
    public void Headers_are_passed_to_the_exporter_with_their_values_percent_encoded()
    {
        Assert.Null(OpenTelemetrySetup.ExporterHeaders(new Dictionary<string, string>()));
        Assert.Equal(
            "Authorization=Basic%20dXNlcjpwYXNz%3D%3D,x-scope=team%20a%2C%20b%3Dc",
            OpenTelemetrySetup.ExporterHeaders(new Dictionary<string, string> { ["Authorization"] = "Basic dXNlcjpwYXNz==", ["x-scope"] = "team a, b=c" }));
    }

    // Protobuf keeps strings as their UTF-8 bytes (gRPC frames are uncompressed here): searchable after a lossy decode.
    private static string Concat(IEnumerable<Collector.Request> requests) =>
        string.Concat(requests.Select(r => Encoding.UTF8.GetString(r.Body)));

    /// <summary>Records every POST; answers as an OTLP collector does (an empty export response, gRPC-framed for gRPC).</summary>
    private sealed class Collector : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentQueue<Request> _requests = new();

        private Collector(WebApplication app) => _app = app;

        public Uri BaseAddress { get; private set; } = null!;

        public string Paths => string.Join(", ", _requests.Select(r => $"{r.Path} ({r.ContentType})"));

        public static async Task<Collector> StartAsync(bool http2Only)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = http2Only ? HttpProtocols.Http2 : HttpProtocols.Http1AndHttp2));
            var app = builder.Build();
            var collector = new Collector(app);
            app.Run(async context =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                collector._requests.Enqueue(new Request(
                    context.Request.Path.Value ?? string.Empty,
                    context.Request.ContentType ?? string.Empty,
                    body.ToArray(),
                    context.Request.Headers.Authorization.ToString(),
                    context.Request.Headers["x-scope"].ToString()));
                if (context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true)
                {
                    context.Response.ContentType = "application/grpc";
                    context.Response.AppendTrailer("grpc-status", "0");
                    await context.Response.Body.WriteAsync(new byte[5]); // an empty message: not compressed, length 0
                }
                else
                {
                    context.Response.ContentType = "application/x-protobuf";
                }
            });
            await app.StartAsync();
            collector.BaseAddress = new Uri(app.Urls.Single().Replace("[::1]", "127.0.0.1", StringComparison.Ordinal) + "/");
            return collector;
        }

        public List<Request> Received(string path) => [.. _requests.Where(r => r.Path == path)];

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();

        public sealed record Request(string Path, string ContentType, byte[] Body, string Authorization, string Scope);
    }
}
