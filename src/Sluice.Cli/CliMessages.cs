namespace Sluice.Cli;

/// <summary>
/// Sluice.Client's messages name its .NET options (<c>SluiceClientOptions.ApiKey</c>, <c>FirstTokenTimeout</c>); a
/// CLI user sets the CLI's options and client-config keys instead, so those names are swapped before printing.
/// </summary>
internal static class CliMessages
{
    private static readonly (string Sdk, string Cli)[] Names =
    [
        ("SluiceClientOptions.ApiKey", "--api-key or SLUICE_API_KEY"),
        ("SluiceClientOptions.Endpoint", "--url"),
        ("(FirstTokenTimeout)", "(FirstTokenTimeoutSeconds in the client config)"),
        ("raise FirstTokenTimeout.", "raise FirstTokenTimeoutSeconds in the client config."),
        ("(IdleTimeout)", "(IdleTimeoutSeconds in the client config)"),
        ("raise IdleTimeout.", "raise IdleTimeoutSeconds in the client config."),
        ("(ConnectTimeout)", "(ConnectTimeoutSeconds in the client config)"),
        ("(TotalTimeout)", "(TotalTimeoutSeconds in the client config)"),
        ("raise TotalTimeout.", "raise TotalTimeoutSeconds in the client config."),
        ("lower MaxOutputTokens", "lower --max-tokens"),
        ("Check the address and", "Check --url and"),
        ("Check that the address points at", "Check that --url points at"),
    ];

    /// <summary>The message with the SDK's option names replaced by the CLI's, and no doubled periods.</summary>
    public static string FromClient(string message)
    {
        foreach (var (sdk, cli) in Names)
        {
            message = message.Replace(sdk, cli, StringComparison.Ordinal);
        }

        return Sentences.Join(message);
    }
}
