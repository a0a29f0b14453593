using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Sluice.Gateway.Observability;

/// <summary><c>GET /metrics</c>: the Prometheus text exposition (guarded by <c>EndpointPolicy.Scrape</c>).</summary>
internal static class MetricsEndpoint
{
    public static async Task ScrapeAsync(HttpContext context)
    {
        var exporter = context.RequestServices.GetRequiredService<PrometheusExporter>();
        var text = new StringBuilder(16 * 1024);
        exporter.Write(text);
        context.Response.ContentType = PrometheusExporter.ContentType;
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsync(text.ToString(), context.RequestAborted);
    }
}
