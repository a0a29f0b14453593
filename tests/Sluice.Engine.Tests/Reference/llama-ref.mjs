// The llama.cpp reference for Sluice.Engine's correctness tests (node-llama-cpp 3.22.1, CPU, prebuilt).
// Usage: SLUICE_LLAMA_REF=<folder with node_modules/node-llama-cpp> node llama-ref.mjs request.json result.json
// request: {threads, cases: [{model, tokens: [ids], generate: n, contextSize}]}
// result:  {cases: [{logits: [[f32 × vocab] per prompt position, then per generated token], generated: [ids]}]}
// Logits come from sequence.controlledEvaluate with generateNext.logits on every token, an F32 KV cache and flash
// attention off; the generated tokens are the argmax of those logits (lowest id on ties), fed back one at a time.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// ES modules ignore NODE_PATH: load the package from the folder scripts/test-llama-ref.sh installed it into.
const refFolder = process.env.SLUICE_LLAMA_REF;
if (!refFolder) throw new Error("SLUICE_LLAMA_REF is not set (run: bash scripts/test-llama-ref.sh)");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(refFolder, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const [requestPath, resultPath] = process.argv.slice(2);
const request = JSON.parse(await readFile(requestPath, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });

function dense(map, vocab) {
  const row = new Array(vocab).fill(null);
  for (const [token, value] of map) row[token] = value;
  if (row.some(v => v === null)) throw new Error("llama.cpp returned logits for only part of the vocabulary");
  return row;
}

function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

const results = [];
for (const c of request.cases) {
  const model = await llama.loadModel({ modelPath: c.model, gpuLayers: 0, useMmap: true });
  const context = await model.createContext({
    contextSize: c.contextSize,
    batchSize: Math.max(c.tokens.length, 1),
    sequences: 1,
    threads: request.threads,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const sequence = context.getSequence();
  const vocabSize = c.vocabSize;
  const logits = [];
  const prompt = await sequence.controlledEvaluate(c.tokens.map(t => [t, { generateNext: { logits: true } }]));
  for (const item of prompt) logits.push(dense(item.next.logits, vocabSize));
  const generated = [];
  let next = argmax(logits[logits.length - 1]);
  for (let i = 0; i < c.generate; i++) {
    generated.push(next);
    if (i === c.generate - 1) break;
    const [item] = await sequence.controlledEvaluate([[next, { generateNext: { logits: true } }]]);
    const row = dense(item.next.logits, vocabSize);
    logits.push(row);
    next = argmax(row);
  }
  results.push({ logits, generated });
  await context.dispose();
  await model.dispose();
}
await writeFile(resultPath, JSON.stringify({ cases: results }));
await llama.dispose();
