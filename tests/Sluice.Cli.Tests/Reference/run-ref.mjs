// llama.cpp's greedy generation as the reference for `sluice run --raw --temperature 0` (node-llama-cpp 3.22.1, CPU).
// Usage: SLUICE_LLAMA_REF=<folder with node_modules/node-llama-cpp> node run-ref.mjs input.json output.json
// input:  {cases: [{model, prompt, maxTokens, contextSize}]}
// output: {cases: [{promptTokens: [ids as fed], tokens: [generated ids], stop: "eog" | "length", margins: [top1 - top2 per step]}]}
// The prompt is tokenized as llama-cli tokenizes a prompt: special-token texts parsed, BOS first when the vocabulary asks
// for it. Each step takes the argmax of the logits (lowest id on ties); an end-of-generation token ends the answer and is
// not part of it. F32 KV cache and flash attention off, as the engine computes.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const refFolder = process.env.SLUICE_LLAMA_REF;
if (!refFolder) throw new Error("SLUICE_LLAMA_REF is not set (run: bash scripts/test-llama-ref.sh)");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(refFolder, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const [inputPath, outputPath] = process.argv.slice(2);
const input = JSON.parse(await readFile(inputPath, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });

function topTwo(map) {
  let best = -1, bestValue = -Infinity, secondValue = -Infinity;
  for (const [token, value] of map) {
    if (value > bestValue || (value === bestValue && token < best)) {
      secondValue = bestValue;
      best = token;
      bestValue = value;
    } else if (value > secondValue) {
      secondValue = value;
    }
  }
  return [best, bestValue - secondValue];
}

const results = [];
for (const c of input.cases) {
  const model = await llama.loadModel({ modelPath: c.model, gpuLayers: 0, useMmap: true });
  const promptTokens = [
    ...(model.tokens.shouldPrependBosToken && model.tokens.bos != null ? [model.tokens.bos] : []),
    ...Array.from(model.tokenize(c.prompt, true)),
  ];
  const context = await model.createContext({
    contextSize: c.contextSize,
    batchSize: Math.max(promptTokens.length, 1),
    sequences: 1,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const sequence = context.getSequence();
  const items = promptTokens.map((t, i) => (i === promptTokens.length - 1 ? [t, { generateNext: { logits: true } }] : t));
  const evaluated = await sequence.controlledEvaluate(items);
  let logits = evaluated[evaluated.length - 1].next.logits;
  const tokens = [];
  const margins = [];
  let stop = "length";
  for (let i = 0; i < c.maxTokens; i++) {
    const [next, margin] = topTwo(logits);
    margins.push(margin);
    if (model.isEogToken(next)) {
      stop = "eog";
      break;
    }
    tokens.push(next);
    if (i === c.maxTokens - 1) break;
    const [item] = await sequence.controlledEvaluate([[next, { generateNext: { logits: true } }]]);
    logits = item.next.logits;
  }
  results.push({ promptTokens, tokens, stop, margins });
  await context.dispose();
  await model.dispose();
}
await writeFile(outputPath, JSON.stringify({ cases: results }));
await llama.dispose();
