using System.CommandLine;
using Sluice.Cli.Commands;
using Sluice.Cli.Commands.Admin;

var root = new RootCommand("Sluice — a streaming LLM gateway. Run 'sluice serve' to start the server, 'sluice chat \"Hello\"' to talk to it, 'sluice models' to list its models, 'sluice admin' to manage teams, keys and credits.")
{
    ServeCommand.Create(),
    ChatCommand.Create(),
    ModelsCommand.Create(),
    BenchCommand.Create(),
    MockUpstreamCommand.Create(),
    MqttCommand.Create(),
    AdminCommand.Create(),
    ReplayCommand.Create(),
};

// Commands handle Ctrl+C themselves: chat stops only the current answer (and returns to its prompt when
// interactive), serve shuts the host down through its console lifetime. System.CommandLine's own handler would
// cancel every command and force the process to exit two seconds later.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
