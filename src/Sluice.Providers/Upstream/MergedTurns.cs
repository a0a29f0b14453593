using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The conversation shape Anthropic and Gemini share: system messages travel elsewhere, tool results go in user
/// turns, and consecutive messages of one role become one turn <c>{"role", "&lt;parts&gt;": [...]}</c>.
/// </summary>
internal static class MergedTurns
{
    /// <summary>Writes <c>"&lt;arrayName&gt;": [turn, …]</c>; <paramref name="writeParts"/> writes one message's parts.</summary>
    /// <param name="json">The request body being written.</param>
    /// <param name="messages">The OpenAI-shaped conversation.</param>
    /// <param name="arrayName">The property holding the turns (<c>messages</c>, <c>contents</c>).</param>
    /// <param name="assistantRole">The provider's name for the assistant (<c>assistant</c>, <c>model</c>).</param>
    /// <param name="partsName">The property holding a turn's parts (<c>content</c>, <c>parts</c>).</param>
    /// <param name="writeParts">Writes the parts of the message at the given index into the open parts array.</param>
    public static void Write(
        Utf8JsonWriter json,
        IReadOnlyList<ChatMessage> messages,
        string arrayName,
        string assistantRole,
        string partsName,
        Action<ChatMessage, int> writeParts)
    {
        json.WriteStartArray(arrayName);
        string? openRole = null;
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (message.Role is ChatRoles.System or ChatRoles.Developer)
            {
                continue;
            }

            var role = message.Role == ChatRoles.Assistant ? assistantRole : "user";
            if (role != openRole)
            {
                if (openRole is not null)
                {
                    json.WriteEndArray();
                    json.WriteEndObject();
                }

                json.WriteStartObject();
                json.WriteString("role"u8, role);
                json.WriteStartArray(partsName);
                openRole = role;
            }

            writeParts(message, i);
        }

        if (openRole is not null)
        {
            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }
}
