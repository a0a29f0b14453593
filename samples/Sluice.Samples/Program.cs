using Sluice.Client;
using Sluice.Samples;
using Sluice.Samples.Examples;

// Usage: dotnet run --project samples/Sluice.Samples -- <example> [--url URL] [--model NAME] [--api-key KEY]
// Start a gateway first: dotnet run --project src/Sluice.Cli -- serve
const string Usage = """
    Usage: sluice-samples <example> [--url http://127.0.0.1:8080] [--model sim-realistic] [--api-key KEY]

    Set-up (gateway with a master key, SaaS flow):
      init                 create an organization and a team with 10 credits (master key: --master-key or
                           SLUICE_MASTER_KEY) and print the team's key; with that key (--api-key or SLUICE_API_KEY)
                           each example creates a job, streams within it, completes it and prints the credits left

    Examples:
      basic-streaming      print each piece of the answer as it arrives
      accumulate           stream, then use the whole text
      interactive          chat with history (type /exit to quit)
      system-prompt        a system prompt in front of the question
      multi-document       one analysis per document, then a synthesis
      progress             chunks, characters and chars/s while streaming
      error-handling       insufficient credits (403), rate limits (429), timeouts; trigger one on the simulated
                           models with --simulate rate-limit | rate-limit-twice | timeout | mid-stream
      concurrent           three answers at once over one client
      to-file              stream into a file, flushed per chunk (--file PATH; default: a new file in the temp directory)
      total-timeout        a deadline for the whole answer, keeping the partial text
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}

string? Option(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();

var context = new SampleContext
{
    Endpoint = new Uri(Option("--url") ?? "http://127.0.0.1:8080"),
    Model = Option("--model"),
    ApiKey = Option("--api-key") ?? Environment.GetEnvironmentVariable("SLUICE_API_KEY"),
};

try
{
    switch (args[0])
    {
        case "init":
            var masterKey = Option("--master-key") ?? Environment.GetEnvironmentVariable("SLUICE_MASTER_KEY");
            if (string.IsNullOrEmpty(masterKey))
            {
                Console.Error.WriteLine("init needs the gateway's master key: pass --master-key or set SLUICE_MASTER_KEY (as given to 'sluice serve').");
                return 2;
            }

            await Init.RunAsync(context, masterKey);
            break;
        case "basic-streaming": await BasicStreaming.RunAsync(context); break;
        case "accumulate": await AccumulateFullText.RunAsync(context); break;
        case "interactive": await InteractiveChat.RunAsync(context); break;
        case "system-prompt": await SystemPrompt.RunAsync(context); break;
        case "multi-document": await MultiDocumentAnalysis.RunAsync(context); break;
        case "progress": await ProgressStatistics.RunAsync(context); break;
        case "error-handling":
            if (!Enum.TryParse<ErrorSimulation>((Option("--simulate") ?? "none").Replace("-", string.Empty, StringComparison.Ordinal), ignoreCase: true, out var simulate))
            {
                Console.Error.WriteLine($"Unknown --simulate '{Option("--simulate")}'. Use rate-limit, rate-limit-twice, timeout or mid-stream.");
                return 2;
            }

            return await ErrorHandling.RunAsync(context, simulate) == ErrorHandlingOutcome.Answered ? 0 : 1;
        case "concurrent": await ConcurrentStreams.RunAsync(context); break;
        case "to-file": await StreamToFile.RunAsync(context, Option("--file") ?? StreamToFile.DefaultPath()); break;
        case "total-timeout": await TotalTimeout.RunAsync(context); break;
        default:
            Console.Error.WriteLine($"Unknown example '{args[0]}'.\n\n{Usage}");
            return 2;
    }

    return 0;
}
catch (SluiceException ex)
{
    Console.Error.WriteLine($"sluice-samples: {ex.Message}");
    return 1;
}
