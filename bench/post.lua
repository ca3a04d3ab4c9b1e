-- wrk script: paced click-to-call POSTs over keep-alive HTTPS connections.
-- Each request gets its own key: /callcontroller/<user>/<target>, where <user> cycles
-- through BENCH_USERS directory users (bench0..) and <target> is unique per request.
-- Environment: BENCH_RATE (requests/s, all threads together), BENCH_COUNT (stop after
-- this many requests per run), BENCH_USERS, BENCH_QUERY (appended, e.g. "?sipMethod=INVITE").
-- At the end it prints one line "BENCH {json}" with the counts and latency percentiles.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_spec = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_spec)
  return tonumber(now_spec.tv_sec) * 1000 + tonumber(now_spec.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local rate = tonumber(os.getenv("BENCH_RATE") or "100")
  local threads_total = tonumber(os.getenv("BENCH_THREADS") or "1")
  users = tonumber(os.getenv("BENCH_USERS") or "1000")
  count = math.floor(tonumber(os.getenv("BENCH_COUNT") or "1000") / threads_total)
  query = os.getenv("BENCH_QUERY") or ""
  interval = 1000 * threads_total / rate
  next_slot = nil
  scheduled = 0
  -- thread_index is set by setup() before init() runs
  sequence = thread_index or 0
  step = threads_total
end

-- wrk calls delay() before every request on a connection: keep one schedule per thread so
-- the offered rate does not depend on how many connections are open.
function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  if scheduled >= count then return 3600000 end
  scheduled = scheduled + 1
  local slot = next_slot
  next_slot = next_slot + interval
  if slot < now then return 0 end
  return slot - now
end

function request()
  local n = sequence
  sequence = sequence + step
  local path = string.format("/callcontroller/bench%d/target%d%s", n % users, n, query)
  return wrk.format("POST", path, {["Content-Length"] = "0"})
end

function done(summary, latency, requests)
  local status = summary.errors.status
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'BENCH {"requests": %d, "non_2xx": %d, "socket_errors": %d, "duration_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, status, failed, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
