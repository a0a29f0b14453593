-- wrk script for bench/overhead-wrk.sh: POST a streaming chat completion to /v1/chat/completions.
-- wrk reads each SSE answer to its end (the chunked body's last chunk) before it counts the request, so
-- wrk's Requests/sec is streams/s and its latency is the whole stream's duration.
-- Environment: SLUICE_BENCH_MAX_TOKENS (chunks asked for), SLUICE_BENCH_KEY (Bearer key; empty = none).
local max_tokens = os.getenv("SLUICE_BENCH_MAX_TOKENS") or "64"
local key = os.getenv("SLUICE_BENCH_KEY") or ""

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = '{"model":"mock","messages":[{"role":"user","content":"Write a short note about load testing streaming gateways."}],'
  .. '"stream":true,"stream_options":{"include_usage":true},"max_tokens":' .. max_tokens .. '}'

-- No response() callback on purpose: defining one makes wrk copy every body into Lua, which would cost the
-- load generator more CPU than the servers it measures. Failed answers still show as "Non-2xx or 3xx responses",
-- and the script checks one stream per target with curl before measuring.
