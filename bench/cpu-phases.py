#!/usr/bin/env python3
"""Where a gateway's CPU per stream goes, by stage of the call, from a `perf script` dump of `perf record -g`.

    perf script -i perf.data -F comm,ip,sym,dso > stacks.txt
    python3 bench/cpu-phases.py stacks.txt --us-per-stream 107 [--json] [--drill PHASE]

bench/cpu-per-stream.sh runs it when PERF_RECORD is set. Each sample is given to one stage: its stack is read from the
leaf towards the root and the first frame that names a stage wins (the rules below: the innermost Sluice, Kestrel or
socket-engine frame that a stage claims), so a system call counts to the stage that made it. Samples whose leaf is in
the kernel are also counted apart, per stage. With --us-per-stream (the CPU per stream measured in the same run) each
stage's share is also printed in microseconds per stream. --drill PHASE lists that stage's leaf functions.

"unattributed" is a stack the unwinder could not follow past native code (mostly the kernel's networking under a
system call made from libc); "runtime.gc" needs the runtime's GC frames named (they often are not).

A flat profile split across many functions hides that most of a stream's CPU is the kernel's networking and the
socket engine's wake-ups; the stages show what the gateway's own features cost and what any proxy pays.
"""
import argparse
import collections
import json
import re
import sys

# (stage, frame substrings). Order matters only when two rules could claim the same frame; the first frame (from the
# leaf) that any rule claims decides.
RULES = [
    ("relay.replay-append", ["ResumableStream::Append"]),
    ("relay.sink-write", ["HttpStreamSink::WriteKeptBatch", "HttpStreamSink::WriteBatch", "HttpStreamSink::WriteAsync", "SseWriter"]),
    ("relay.decode", ["OpenAIChatBackend+Decoder", "OpenAIChunkDecoder", "OpenAIChunkScanner", "OpenAIChunkBatch"]),
    ("relay.sse-read", ["UpstreamEventReader"]),
    ("relay.body-read", ["Http11BodyStream"]),
    ("relay.flush", ["FlushResumableAsync", "FlushPlainAsync", "HttpStreamSink::FlushAsync"]),
    ("relay.start-end", ["HttpStreamSink::Start", "HttpStreamSink+<CompleteAsync>", "HttpStreamSink::CompleteAsync",
                         "HttpStreamSink+<DisposeAsync>", "KeepAlive"]),
    ("end.telemetry-access-log", ["CallTelemetry", "BatchingConsoleLogger", "PrometheusExporter", "Sluice.Gateway.Observability"]),
    ("end.usage-ledger", ["LedgerUsageSink", "Sluice.Storage", "UsageReporter", "UsageMeter", "libe_sqlite3"]),
    ("request.parse", ["ChatRequestParser", "JsonInput", "RequestBody", "TokenCounter"]),
    ("request.auth", ["KeyAuthenticator", "TenantDirectory", "EndpointPolicies::Authenticate", "libcrypto"]),
    ("request.admission", ["CallAdmission", "RateLimit"]),
    ("request.resolve-sink", ["ModelResolver", "Responder::CreateSink", "StreamRegistry", "RequestIds"]),
    ("upstream.request", ["OpenAIChatBackend::BuildBody", "OpenAIChatBackend::CopyClientFields", "Http11Connection+<SendAsync>",
                          "Http11Handler", "UpstreamTransport", "UpstreamCall", "DeadlineSweep"]),
    ("upstream.response-head", ["Http11Connection"]),
    ("relay.loop", ["StreamRelay", "UpstreamChatBackend", "UpstreamStreaming", "FallbackChatBackend"]),
    ("sluice.other", ["Sluice."]),
    ("kestrel", ["Kestrel", "Microsoft.AspNetCore"]),
    ("socket-engine", ["System.Net.Sockets", "libSystem.Native"]),
    ("thread-pool", ["ThreadPool", "LowLevelLifoSemaphore", "LowLevelSpinWaiter", "WorkerThread"]),
]
GC_MARKERS = ("gc_heap", "WKS::", "SVR::", "GCHeap")


def read_samples(path):
    """Stacks (leaf first) from `perf script -F comm,ip,sym,dso` output: a header line, then one indented frame a line."""
    samples, current = [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith((" ", "\t")):
                if current is not None and line.strip():
                    current.append(line.strip())
            elif line.strip():
                if current:
                    samples.append(current)
                current = []
            # A blank line ends a sample; the next header starts one.
    if current:
        samples.append(current)
    return samples


def stage_of(stack):
    if any(marker in frame for frame in stack[:8] for marker in GC_MARKERS):
        return "runtime.gc"
    for frame in stack:
        for stage, patterns in RULES:
            if any(p in frame for p in patterns):
                return stage
    return "unattributed"


def in_kernel(frame):
    return "[kernel.kallsyms]" in frame


def leaf_name(frame):
    m = re.match(r"^\S+\s+(.*?)\s+\(([^)]*)\)\s*$", frame)
    return (m.group(1) if m else frame)[:100]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", help="output of: perf script -i perf.data -F comm,ip,sym,dso")
    parser.add_argument("--us-per-stream", type=float, default=0.0, help="CPU per stream measured in the same run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--drill", help="list this stage's leaf functions")
    args = parser.parse_args()

    try:
        samples = read_samples(args.stacks)
    except OSError as e:
        print(f"cpu-phases: cannot read {args.stacks} ({e.strerror}); make it with: perf script -i perf.data -F comm,ip,sym,dso > FILE",
              file=sys.stderr)
        return 2
    if not samples:
        print(f"cpu-phases: no samples in {args.stacks}; record with perf record -g and dump with perf script -F comm,ip,sym,dso.",
              file=sys.stderr)
        return 2

    total, kernel, leaves = collections.Counter(), collections.Counter(), collections.Counter()
    for stack in samples:
        stage = stage_of(stack)
        total[stage] += 1
        if in_kernel(stack[0]):
            kernel[stage] += 1
        if args.drill == stage:
            leaves[leaf_name(stack[0])] += 1

    n = len(samples)
    us = args.us_per_stream
    rows = [{"stage": s, "share": c / n, "kernel_share": kernel[s] / n,
             "us_per_stream": us * c / n if us else None, "kernel_us_per_stream": us * kernel[s] / n if us else None}
            for s, c in total.most_common()]
    if args.json:
        print(json.dumps({"samples": n, "us_per_stream": us or None, "stages": rows,
                          "drill": [{"leaf": k, "share": v / n} for k, v in leaves.most_common(30)] if args.drill else None}))
        return 0

    print(f"cpu-phases: {n} samples" + (f", scaled to {us:g} µs per stream" if us else "")
          + "; a sample counts to the innermost stage on its stack (kernel: its leaf was in the kernel)")
    for r in rows:
        amount = f"{r['us_per_stream']:6.1f} µs (kernel {r['kernel_us_per_stream']:5.1f})" if us else f"kernel {100 * r['kernel_share']:5.1f} %"
        print(f"  {100 * r['share']:5.1f} %  {amount}  {r['stage']}")
    if args.drill:
        print(f"  leaves of {args.drill}:")
        for k, v in leaves.most_common(20):
            print(f"    {100 * v / n:5.2f} %  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
