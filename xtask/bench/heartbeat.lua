-- wrk script for `cargo xtask bench`. Every request is one heartbeat, as the agent sends it,
-- for a node picked at random from $HEARTH_BENCH_NODES ("node_id token" per line), carrying
-- that node's token. Settings, from the environment:
--   HEARTH_BENCH_CLOSE=1      ask for a new connection per request (what the agent does)
--   HEARTH_BENCH_DELAY_MS=N   each connection waits N ms before each request (a paced load)
--   HEARTH_BENCH_PUSH=1       push the same node's gauges to a Prometheus Pushgateway instead
--   HEARTH_BENCH_INTERVAL=N   the interval the nodes announce (heartbeat.json says 30 s)
--   HEARTH_BENCH_IN_TURN=1    take the nodes in turn (each of wrk's two threads from its own
--                             half), so each beats as regularly as an agent; else at random
-- done() prints one JSON line, starting {"wrk":, that the benchmark reads.

local nodes = {}
for line in io.lines(os.getenv("HEARTH_BENCH_NODES")) do
  local id, token = line:match("^(%S+) (%S+)$")
  if id then nodes[#nodes + 1] = { id = id, token = token } end
end
local close = os.getenv("HEARTH_BENCH_CLOSE") == "1"
local push = os.getenv("HEARTH_BENCH_PUSH") == "1"
local pause = tonumber(os.getenv("HEARTH_BENCH_DELAY_MS") or "")

-- The full heartbeat of docs/protocol.md, with NODE_ID, TIMESTAMP and SEQ to fill in
-- (xtask/bench/heartbeat.json, which the benchmark's own client sends too).
local heartbeat = io.open(os.getenv("HEARTH_BENCH_HEARTBEAT")):read("*a")
local interval = os.getenv("HEARTH_BENCH_INTERVAL")
if interval then heartbeat = heartbeat:gsub('"interval_secs":30', '"interval_secs":' .. interval) end
local in_turn = os.getenv("HEARTH_BENCH_IN_TURN") == "1"
-- What a node would push to a Pushgateway: the same facts, as gauges.
local gauges = "hearth_up 1\nhearth_load1 0.08\nhearth_memory_available_bytes 3051356160\n"
  .. "hearth_disk_free_bytes 18253611008\nhearth_uptime_seconds 86400\nhearth_check_ok{check=\"cloudflared\"} 1\n"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local seq = 0
function init(args)
  math.randomseed(7919 * (thread_number or 1))
end

function request()
  seq = seq + 1
  local node
  if in_turn then
    node = nodes[(((thread_number or 1) - 1) * math.floor(#nodes / 2) + seq) % #nodes + 1]
  else
    node = nodes[math.random(#nodes)]
  end
  local headers = {}
  if close then headers["Connection"] = "close" end
  if push then
    headers["Content-Type"] = "text/plain"
    return wrk.format("POST", "/metrics/job/hearth/instance/" .. node.id, headers, gauges)
  end
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. node.token
  -- The agent's clock, as an agent would send it (a fixed time would read as clock skew).
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local body = heartbeat:gsub("NODE_ID", node.id):gsub("TIMESTAMP", now):gsub("SEQ", tostring(seq))
  return wrk.format("POST", "/api/agent/heartbeat", headers, body)
end

if pause then
  function delay() return pause end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
      .. '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
