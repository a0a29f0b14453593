using Sluice.Client;
using Sluice.Samples;
using Sluice.Samples.Examples;

// Usage: dotnet run --project samples/Sluice.Samples -- <example> [--url URL] [--model NAME] [--api-key KEY]
// Start a gateway first: dotnet run --project src/Sluice.Cli -- serve
const string Usage = """
    Usage: sluice-samples <example> [--url http://127.0.0.1:8080] [--model sim-realistic] [--api-key KEY]

    Examples:
      basic-streaming      print each piece of the answer as it arrives
      accumulate           stream, then use the whole text
      interactive          chat with history (type /exit to quit)
      system-prompt        a system prompt in front of the question
      multi-document       one analysis per document, then a synthesis
      progress             chunks, characters and chars/s while streaming
      error-handling       insufficient credits (403), rate limits (429), timeouts
      concurrent           three answers at once over one client
      to-file              stream into a file, flushed per chunk (--file PATH)
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
        case "basic-streaming": await BasicStreaming.RunAsync(context); break;
        case "accumulate": await AccumulateFullText.RunAsync(context); break;
        case "interactive": await InteractiveChat.RunAsync(context); break;
        case "system-prompt": await SystemPrompt.RunAsync(context); break;
        case "multi-document": await MultiDocumentAnalysis.RunAsync(context); break;
        case "progress": await ProgressStatistics.RunAsync(context); break;
        case "error-handling": return await ErrorHandling.RunAsync(context) == ErrorHandlingOutcome.Answered ? 0 : 1;
        case "concurrent": await ConcurrentStreams.RunAsync(context); break;
        case "to-file": await StreamToFile.RunAsync(context, Option("--file") ?? "answer.txt"); break;
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
