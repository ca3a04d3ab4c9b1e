-- wrk script: paced GETs of retained calls' status over keep-alive HTTPS connections.
-- Request i asks for /callcontroller/bench<n % users>/target<n>, a key post.lua placed.
-- A run of post.lua with BENCH_COUNT=N places keys 1..N, not 0..N-1: wrk calls the first
-- thread's request() once before the run to check it (script_verify_request), which uses
-- up sequence number 0. By default n walks the BENCH_CALLS keys from BENCH_FIRST (default
-- 1) in a fixed stride permutation (every key once before any repeats, neighbours far
-- apart), so each GET finds a different call; with BENCH_SINGLE=<n> every request asks
-- for call n (the check's request is not sent either, so it does not matter here).
-- Environment: as pacing.lua, and BENCH_CALLS and BENCH_FIRST (the keys filled),
-- BENCH_USERS, BENCH_SINGLE (optional), BENCH_MARK (text a retained call's document
-- contains, default "<status-line>").
-- At the end it prints one line "BENCH {json}" with the counts, the responses that
-- lacked BENCH_MARK, and the latency percentiles.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;"
  .. package.path
local pacing = require("pacing")

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

setup = pacing.setup
delay = pacing.delay

function init(args)
  pacing.init()
  users = tonumber(os.getenv("BENCH_USERS") or "1000")
  calls = math.max(1, tonumber(os.getenv("BENCH_CALLS") or "1000"))
  first = tonumber(os.getenv("BENCH_FIRST") or "1")
  single = tonumber(os.getenv("BENCH_SINGLE") or "")
  mark = os.getenv("BENCH_MARK") or "<status-line>"
  -- a stride coprime to the number of calls makes n = i * stride % calls a permutation
  stride = math.floor(calls * 0.6180339887) + 1
  while gcd(stride, calls) ~= 1 do stride = stride + 1 end
  responses = 0
  unmarked = 0
end

function request()
  local n = single
  if n == nil then
    n = first + (pacing.next_number() * stride) % calls
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
  local seen, missing = 0, 0
  for _, thread in ipairs(pacing.threads) do
    seen = seen + (thread:get("responses") or 0)
    missing = missing + (thread:get("unmarked") or 0)
  end
  pacing.report(summary, latency, {{"responses", seen}, {"unmarked", missing}})
end
