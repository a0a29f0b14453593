// llama.cpp's speed on the same GGUF files as Sluice's engine, through node-llama-cpp 3.22.1 (prebuilt CPU llama.cpp).
// A small line protocol so the .NET driver (bench/Sluice.EngineBench) can interleave llama.cpp and engine runs:
//   SLUICE_LLAMA_REF=<folder with node_modules/node-llama-cpp> node llama-bench.mjs
//   stdin, one JSON object per line:
//     {"cmd":"load","model":path,"threads":n,"contextSize":n[,"mmap":false][,"kvCache":"F16"|"F32"]}  -> {"ok":true,"load_ms":…}
//     {"cmd":"run","prompt":[ids],"generate":n}                  -> {"pp_tok_s":…,"tg_tok_s":…,"ttft_ms":…}
//     {"cmd":"unload"}                                           -> {"ok":true}
//   stdout: one JSON object per command; errors as {"error":"…"}.
// Timings, like the engine's:
//   pp:   the prompt through sequence.evaluateWithoutGeneratingNewTokens (one llama_decode of the whole prompt, no logits
//         copied to JS), tokens / seconds.
//   ttft: on a cleared sequence, sequence.evaluate(prompt) until its first token (prompt decode + native greedy sample).
//   tg:   the next `generate` tokens from the same generator (one decode + sample each), tokens / seconds.
// Context: defaults of a node-llama-cpp user (F16 KV cache, flash attention off), batch size ≥ the prompt.
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const refFolder = process.env.SLUICE_LLAMA_REF;
if (!refFolder) throw new Error("SLUICE_LLAMA_REF is not set (run: bash scripts/test-llama-ref.sh)");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(refFolder, "node_modules", "node-llama-cpp", "dist", "index.js")).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });

let model = null, context = null, sequence = null;

async function unload() {
  if (context) await context.dispose();
  if (model) await model.dispose();
  model = context = sequence = null;
}

async function handle(req) {
  switch (req.cmd) {
    case "load": {
      await unload();
      const t0 = performance.now();
      model = await llama.loadModel({ modelPath: req.model, gpuLayers: 0, useMmap: req.mmap !== false });
      context = await model.createContext({
        contextSize: req.contextSize ?? 512,
        batchSize: req.batchSize ?? 512,
        sequences: 1,
        threads: req.threads,
        ...(req.kvCache ? { experimentalKvCacheKeyType: req.kvCache, experimentalKvCacheValueType: req.kvCache } : {}),
      });
      sequence = context.getSequence();
      return { ok: true, load_ms: performance.now() - t0, system_info: llama.systemInfo };
    }
    case "run": {
      const prompt = req.prompt;
      await sequence.clearHistory();
      let t0 = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(prompt);
      const pp = (performance.now() - t0) / 1000;

      await sequence.clearHistory();
      t0 = performance.now();
      let first = 0, count = 0;
      for await (const _ of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        if (count === 0) first = performance.now();
        if (count === req.generate) break;
        count++;
      }
      const end = performance.now();
      return {
        pp_tok_s: prompt.length / pp,
        tg_tok_s: req.generate / ((end - first) / 1000),
        ttft_ms: first - t0,
      };
    }
    case "unload":
      await unload();
      return { ok: true };
    default:
      throw new Error(`unknown command ${req.cmd}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    reply = await handle(JSON.parse(line));
  } catch (e) {
    reply = { error: String(e?.stack ?? e) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
await unload();
await llama.dispose();
