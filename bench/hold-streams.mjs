// Holds many streaming chat completions open at once and measures the delay a proxy adds to each chunk.
// Used by bench/proxied-streams.sh; run it alone as
//   node bench/hold-streams.mjs --url http://127.0.0.1:8080 --key sk-… --streams 8000 --max-tokens 60 [--ramp 1000]
// Opens --streams connections (one stream each, no keep-alive), --ramp per second, and reads every SSE answer to
// [DONE]. The upstream must be `sluice mock-upstream --timestamp-chunks`: each content chunk's text is its send time
// (t=<Unix ms>;), so the delay per chunk is the receive time minus that (same machine, same clock). Prints progress
// every 5 s to stderr and one JSON object to stdout: ok, errors by kind, the highest number open at once, time to
// first byte, inter-chunk gap and the added delay per chunk (p50/p90/p99/p99.9/max, ms).
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs, []));
const url = new URL('/v1/chat/completions', args.url ?? 'http://127.0.0.1:8080');
const streams = Number(args.streams ?? 8000);
const ramp = Number(args.ramp ?? 1000);
const maxTokens = Number(args['max-tokens'] ?? 60);
const deadline = Number(args['timeout-s'] ?? 300) * 1000;
// "Held" delays: chunks received once every stream is open and --settle-ms more have passed (the ramp left out).
const settleMs = Number(args['settle-ms'] ?? 5000);
let heldFrom = 0;
const body = JSON.stringify({
  model: args.model ?? 'mock', stream: true, max_tokens: maxTokens,
  messages: [{ role: 'user', content: 'Hold this stream open.' }],
});
const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream', 'Content-Length': Buffer.byteLength(body) };
if (args.key) headers.Authorization = `Bearer ${args.key}`;
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const now = () => performance.timeOrigin + performance.now();
const stampPattern = /"content":"t=(\d+\.\d+);"/g;

const delays = []; const held = []; const gaps = []; const ttfb = [];
const errors = {}; let ok = 0; let open = 0; let maxOpen = 0; let started = 0; let finished = 0; let chunks = 0;
const t0 = now();
const fail = (kind) => { errors[kind] = (errors[kind] ?? 0) + 1; };

function one() {
  return new Promise((resolve) => {
    const sent = now();
    let last = 0; let done = false; let tail = ''; let settled = false;
    const settle = (kind) => {
      if (settled) return; settled = true; open--; finished++;
      if (kind) fail(kind); else ok++;
      resolve();
    };
    const req = http.request(url, { method: 'POST', headers, agent }, (res) => {
      if (res.statusCode !== 200) { res.resume(); settle(`http_${res.statusCode}`); return; }
      ttfb.push(now() - sent);
      res.setEncoding('utf8');
      res.on('data', (text) => {
        const at = now();
        const data = tail + text;
        let m; let consumed = 0;
        stampPattern.lastIndex = 0;
        while ((m = stampPattern.exec(data)) !== null) {
          delays.push(at - Number(m[1])); chunks++;
          if (heldFrom && at >= heldFrom) held.push(at - Number(m[1]));
          if (last) gaps.push(at - last);
          last = at; consumed = stampPattern.lastIndex;
        }
        if (data.includes('data: [DONE]')) done = true;
        tail = data.slice(Math.max(consumed, data.length - 200));
      });
      res.on('end', () => settle(done ? null : 'no_done'));
      res.on('error', () => settle('read'));
    });
    req.on('error', (e) => settle(`connect_${e.code ?? 'error'}`));
    req.setTimeout(deadline, () => { req.destroy(); settle('timeout'); });
    req.end(body);
    open++; started++; if (open > maxOpen) maxOpen = open;
  });
}

const progress = setInterval(() => {
  process.stderr.write(`hold-streams: ${((now() - t0) / 1000).toFixed(0)} s: ${started} started, ${open} open (max ${maxOpen}), `
    + `${ok} ok, ${finished - ok} failed, ${chunks} chunks\n`);
}, 5000);

const all = [];
const batch = Math.max(1, Math.round(ramp / 20));
for (let i = 0; i < streams; i += batch) {
  for (let j = i; j < Math.min(streams, i + batch); j++) all.push(one());
  await new Promise((r) => setTimeout(r, 50));
}
heldFrom = now() + settleMs;
await Promise.all(all);
clearInterval(progress);

const summary = (values) => {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const at = (p) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 100) / 100;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1) };
};
console.log(JSON.stringify({
  streams, ok, failed: finished - ok, errors, max_open: maxOpen, seconds: Math.round((now() - t0) / 100) / 10,
  chunks, ttfb_ms: summary(ttfb), gap_ms: summary(gaps), held_delay_ms: summary(held), added_delay_ms: summary(delays),
}));
