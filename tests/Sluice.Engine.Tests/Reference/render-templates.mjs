// llama.cpp's Jinja engine (node-llama-cpp's native AddonJinjaRenderer, llama.cpp common/jinja) and Hugging Face's
// @huggingface/jinja as references for chat template rendering.
// Usage: node render-templates.mjs input.json output.json
// input: { cases: [{ template, context }] }  output: { results: [{ llama: {ok, text|error}, hf: {ok, text|error} }] }
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const root = process.env.SLUICE_LLAMA_REF;
const require = createRequire(path.join(root, "package.json"));
const { getLlama } = await import(pathToFileURL(require.resolve("node-llama-cpp")).href);
const { Template } = await import(pathToFileURL(require.resolve("@huggingface/jinja")).href);

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const attempt = (f) => {
    try {
        return { ok: true, text: f() };
    } catch (e) {
        return { ok: false, error: String(e?.message ?? e) };
    }
};
const results = input.cases.map(({ template, context }) => ({
    llama: attempt(() => new llama._bindings.AddonJinjaRenderer(template).render(context)),
    hf: attempt(() => new Template(template).render(context)),
}));
fs.writeFileSync(process.argv[3], JSON.stringify({ results }));
await llama.dispose();
