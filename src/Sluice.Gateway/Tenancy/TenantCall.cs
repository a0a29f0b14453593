using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.Chat;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// What every model-calling endpoint (OpenAI, Anthropic, Ollama dialects) does before calling a model: a virtual key
/// is checked for access, credits and limits, and its team is billed; the master key and open mode are not billed.
/// </summary>
internal static class TenantCall
{
    /// <summary>Admits the call; the returned lease holds concurrency slots until disposed.</summary>
    /// <exception cref="Sluice.Protocol.ChatException">401/403/429 when the key may not make this call now.</exception>
    public static async Task<(CallLease Lease, UsageOwner? Owner)> AdmitAsync(
        HttpContext context, CallAdmission admission, string model, ChatRequest request)
    {
        var caller = Caller.Of(context);
        if (caller.Key is not { } key)
        {
            return (CallLease.None, null);
        }

        var lease = await admission.AdmitAsync(context, caller, key.TeamId, model, request);
        return (lease, new UsageOwner(key.TeamId, key.Id, null));
    }
}
