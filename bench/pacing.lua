-- What the wrk scripts (post.lua, get.lua) share: one request schedule per wrk thread, so
-- the offered rate does not depend on how many connections are open, and the one line
-- "BENCH {json}" with the counts and latency percentiles that bench/steps.py reads.
-- Environment: BENCH_RATE (requests/s, all threads together), BENCH_COUNT (stop after
-- this many requests), BENCH_THREADS (wrk's -t).
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

local pacing = {threads = {}}

-- wrk's setup(thread), in the main state: number the threads
function pacing.setup(thread)
  thread:set("thread_index", #pacing.threads)
  table.insert(pacing.threads, thread)
end

-- from the script's init(), in each thread's state (thread_index is set by then)
function pacing.init()
  local rate = tonumber(os.getenv("BENCH_RATE") or "100")
  local threads_total = tonumber(os.getenv("BENCH_THREADS") or "1")
  pacing.count = math.floor(tonumber(os.getenv("BENCH_COUNT") or "1000") / threads_total)
  pacing.interval = 1000 * threads_total / rate
  pacing.next_slot = nil
  pacing.scheduled = 0
  pacing.sequence = thread_index or 0
  pacing.step = threads_total
end

-- wrk's delay(): called before every request on any connection of this thread
function pacing.delay()
  local now = now_ms()
  if pacing.next_slot == nil then pacing.next_slot = now end
  if pacing.scheduled >= pacing.count then return 3600000 end
  pacing.scheduled = pacing.scheduled + 1
  local slot = pacing.next_slot
  pacing.next_slot = slot + pacing.interval
  if slot < now then return 0 end
  return slot - now
end

-- this thread's next request number: thread_index, then every BENCH_THREADS-th
function pacing.next_number()
  local n = pacing.sequence
  pacing.sequence = n + pacing.step
  return n
end

-- wrk's done(): print the BENCH line; extra is a list of {name, number} pairs
function pacing.report(summary, latency, extra)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local fields = {
    string.format('"requests": %d', summary.requests),
    string.format('"non_2xx": %d', summary.errors.status),
    string.format('"socket_errors": %d', failed),
    string.format('"duration_us": %d', summary.duration),
  }
  for _, pair in ipairs(extra or {}) do
    table.insert(fields, string.format('"%s": %d', pair[1], pair[2]))
  end
  for _, p in ipairs({50, 90, 99}) do
    table.insert(fields, string.format('"p%d_us": %d', p, latency:percentile(p)))
  end
  table.insert(fields, string.format('"max_us": %d', latency.max))
  io.write("BENCH {" .. table.concat(fields, ", ") .. "}\n")
end

return pacing
