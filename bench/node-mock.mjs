// A Node.js OpenAI-compatible mock upstream for the overhead benchmarks (bench/overhead-wrk.sh --upstream node):
// the kind of upstream the performance budget is stated against ("≥ 75 % of direct against a Node.js-speed mock").
// Written the way a typical Node.js mock or proxy is: node:http, the request body parsed with JSON.parse, each chunk
// made with JSON.stringify and written with its own res.write — one event loop, one core.
//
//   node bench/node-mock.mjs --port 8081 [--host 127.0.0.1] [--chunks 50] [--model mock] [--text " hello"]
//
// POST /v1/chat/completions: streamed (SSE: a role chunk, --chunks content chunks of --text, a finish chunk, a usage
// chunk when stream_options.include_usage, data: [DONE]) or one JSON completion; GET /v1/models; GET /health.
// Invalid JSON gets an OpenAI-shaped 400. Prints "node mock listening on http://HOST:PORT" when ready.
import http from "node:http";
import { randomBytes } from "node:crypto";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const host = option("host", "127.0.0.1");
const port = Number(option("port", "8081"));
const chunks = Number(option("chunks", "50"));
const model = option("model", "mock");
const text = option("text", " hello");
if (!Number.isInteger(port) || port < 0 || port > 65535 || !Number.isInteger(chunks) || chunks < 0) {
  console.error("node-mock.mjs: --port must be 0-65535 and --chunks a whole number ≥ 0; see the header of this file.");
  process.exit(2);
}

const idPrefix = randomBytes(6).toString("hex");
let sequence = 0;

function error(res, status, message) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code: null } }));
}

function chat(req, res, raw) {
  let request;
  try {
    request = JSON.parse(raw);
  } catch {
    return error(res, 400, "The request body is not JSON. Send an OpenAI chat completion request.");
  }
  if (request === null || typeof request !== "object" || !Array.isArray(request.messages)) {
    return error(res, 400, "'messages' is required: send an OpenAI chat completion request.");
  }

  const id = `chatcmpl-${idPrefix}${(sequence++).toString(16).padStart(16, "0")}`;
  const created = Math.floor(Date.now() / 1000);
  const promptTokens = Math.max(1, raw.length >> 2);
  const usage = { prompt_tokens: promptTokens, completion_tokens: chunks, total_tokens: promptTokens + chunks };
  if (!request.stream) {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({
      id, object: "chat.completion", created, model, system_fingerprint: "fp_sluice_node_mock",
      choices: [{ index: 0, message: { role: "assistant", content: text.repeat(chunks) }, logprobs: null, finish_reason: "stop" }],
      usage,
    }));
    return;
  }

  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
  const frame = (delta, finish, extra) => `data: ${JSON.stringify({
    id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_sluice_node_mock",
    choices: delta === null ? [] : [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra,
  })}\n\n`;
  res.write(frame({ role: "assistant", content: "" }, null));
  for (let i = 0; i < chunks; i++) {
    res.write(frame({ content: text }, null));
  }
  res.write(frame({}, "stop"));
  if (request.stream_options && request.stream_options.include_usage) {
    res.write(frame(null, null, { usage }));
  }
  res.end("data: [DONE]\n\n");
}

const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (req.method === "GET" && path === "/v1/models") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ object: "list", data: [{ id: model, object: "model", created: 0, owned_by: "sluice-node-mock" }] }));
    return;
  }
  if (req.method === "GET" && path === "/health") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  if (req.method !== "POST" || path !== "/v1/chat/completions") {
    return error(res, 404, `The node mock has no ${req.method} ${path}. It serves POST /v1/chat/completions and GET /v1/models.`);
  }

  const parts = [];
  let size = 0;
  req.on("data", (part) => {
    size += part.length;
    if (size > 4 * 1024 * 1024) {
      error(res, 413, "The request body is larger than 4 MiB.");
      req.destroy();
      return;
    }
    parts.push(part);
  });
  req.on("end", () => {
    if (!res.headersSent) {
      chat(req, res, Buffer.concat(parts).toString("utf8"));
    }
  });
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.listen(port, host, 4096, () => {
  console.log(`node mock listening on http://${host}:${server.address().port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
