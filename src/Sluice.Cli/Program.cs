using System.CommandLine;
using Sluice.Cli;
using Sluice.Cli.Commands;
using Sluice.Cli.Commands.Admin;

// Before anything rents a buffer: the shared array pool reads its size once.
RuntimeTuning.Apply();

var root = new RootCommand("Sluice — a streaming LLM gateway. Run 'sluice serve' to start the server, 'sluice chat \"Hello\"' to talk to it, 'sluice models' to list its models, 'sluice admin' to manage teams, keys and credits, 'sluice run MODEL.gguf' to run a local model in this process.")
{
    ServeCommand.Create(),
    ChatCommand.Create(),
    ModelsCommand.Create(),
    BenchCommand.Create(),
    MockUpstreamCommand.Create(),
    MqttCommand.Create(),
    AdminCommand.Create(),
    ReplayCommand.Create(),
    RunCommand.Create(),
};

// Commands handle Ctrl+C themselves: chat stops only the current answer (and returns to its prompt when
// interactive), serve shuts the host down through its console lifetime. System.CommandLine's own handler would
// cancel every command and force the process to exit two seconds later.
var parse = root.Parse(args);

// Usage errors exit 2, as every command's help says, with one line per problem (not the whole help).
var problems = UsageErrors.Describe(parse);
if (problems.Count > 0)
{
    UsageErrors.Write(parse, problems, Console.Error);
    return ExitCodes.Usage;
}

return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
