// llama.cpp's tokenizer as the reference: loads a GGUF with node-llama-cpp and tokenizes / detokenizes a batch of strings.
// Usage: node tokenize.mjs input.json output.json
// input: { modelPath, texts: [string] }  output: { results: [{ plain, special, detok, detokSpecial, pieces }] }
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const root = process.env.SLUICE_LLAMA_REF;
const require = createRequire(path.join(root, "package.json"));
const { getLlama } = await import(pathToFileURL(require.resolve("node-llama-cpp")).href);

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: input.modelPath, vocabOnly: true });
const results = input.texts.map((text) => {
    const plain = Array.from(model.tokenize(text, false));
    const special = Array.from(model.tokenize(text, true));
    return {
        plain,
        special,
        detok: model.detokenize(plain, false),
        detokSpecial: model.detokenize(special, true),
    };
});
const info = { bos: model.tokens.bos, eos: model.tokens.eos, eot: model.tokens.eot, nl: model.tokens.nl };
fs.writeFileSync(process.argv[3], JSON.stringify({ results, info }));
await model.dispose();
await llama.dispose();
