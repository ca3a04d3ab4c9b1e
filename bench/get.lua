-- wrk script: paced GETs of retained calls' status over keep-alive HTTPS connections.
-- Request i asks for /callcontroller/bench<n % users>/target<n>, a key post.lua placed.
-- A run of post.lua with BENCH_COUNT=N places keys 1..N, not 0..N-1: wrk calls the first
-- thread's request() once before the run to check it (script_verify_request), which uses
-- up sequence number 0. By default n walks the BENCH_CALLS keys from BENCH_FIRST (default
-- 1) in a fixed stride permutation (every key once before any repeats, neighbours far
-- apart), so each GET finds a different call; with BENCH_SINGLE=<n> every request asks
-- for call n (the check's request is not sent either, so it does not matter here).
-- Environment: BENCH_RATE (requests/s, all threads together), BENCH_COUNT (stop after
-- this many requests), BENCH_CALLS and BENCH_FIRST (the keys filled), BENCH_USERS,
-- BENCH_SINGLE (optional), BENCH_MARK (text a retained call's document contains,
-- default "<status-line>"), BENCH_THREADS (wrk's -t).
-- At the end it prints one line "BENCH {json}" with the counts, the responses that
-- lacked BENCH_MARK, and the latency percentiles.
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

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
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
  calls = math.max(1, tonumber(os.getenv("BENCH_CALLS") or "1000"))
  first = tonumber(os.getenv("BENCH_FIRST") or "1")
  count = math.floor(tonumber(os.getenv("BENCH_COUNT") or "1000") / threads_total)
  single = tonumber(os.getenv("BENCH_SINGLE") or "")
  mark = os.getenv("BENCH_MARK") or "<status-line>"
  -- a stride coprime to the number of calls makes n = i * stride % calls a permutation
  stride = math.floor(calls * 0.6180339887) + 1
  while gcd(stride, calls) ~= 1 do stride = stride + 1 end
  interval = 1000 * threads_total / rate
  next_slot = nil
  scheduled = 0
  -- thread_index is set by setup() before init() runs
  sequence = thread_index or 0
  step = threads_total
  responses = 0
  unmarked = 0
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
  local n = single
  if n == nil then
    n = first + (sequence * stride) % calls
    sequence = sequence + step
  end
  return wrk.format("GET", string.format("/callcontroller/bench%d/target%d", n % users, n))
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 or body == nil or not string.find(body, mark, 1, true) then
    unmarked = unmarked + 1
  end
end

function done(summary, latency, requests)
  local status = summary.errors.status
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local seen, missing = 0, 0
  for _, thread in ipairs(threads) do
    seen = seen + (thread:get("responses") or 0)
    missing = missing + (thread:get("unmarked") or 0)
  end
  io.write(string.format(
    'BENCH {"requests": %d, "responses": %d, "non_2xx": %d, "unmarked": %d, ' ..
    '"socket_errors": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d}\n',
    summary.requests, seen, status, missing, failed, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
