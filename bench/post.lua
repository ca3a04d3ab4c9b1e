-- wrk script: paced click-to-call POSTs over keep-alive HTTPS connections.
-- Each request gets its own key: /callcontroller/<user>/<target>, where <user> cycles
-- through BENCH_USERS directory users (bench0..) and <target> is unique per request.
-- wrk spends request 0 checking the script, so a run places targets 1..BENCH_COUNT.
-- Environment: as pacing.lua, and BENCH_USERS, BENCH_QUERY (appended, e.g.
-- "?sipMethod=INVITE"), BENCH_PREFIX (instead of "target": two wrk runs at once, one per
-- node of a cluster, place different keys).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;"
  .. package.path
local pacing = require("pacing")

setup = pacing.setup
delay = pacing.delay

function init(args)
  pacing.init()
  users = tonumber(os.getenv("BENCH_USERS") or "1000")
  query = os.getenv("BENCH_QUERY") or ""
  prefix = os.getenv("BENCH_PREFIX") or "target"
end

function request()
  local n = pacing.next_number()
  local path = string.format("/callcontroller/bench%d/%s%d%s", n % users, prefix, n, query)
  return wrk.format("POST", path, {["Content-Length"] = "0"})
end

function done(summary, latency, requests)
  pacing.report(summary, latency)
end
