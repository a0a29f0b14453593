using System.CommandLine;
using Sluice.Cli.Commands;

var root = new RootCommand("Sluice — a streaming LLM gateway. Run 'sluice serve' to start the server, 'sluice chat \"Hello\"' to talk to it.")
{
    ServeCommand.Create(),
    ChatCommand.Create(),
};

return await root.Parse(args).InvokeAsync();
