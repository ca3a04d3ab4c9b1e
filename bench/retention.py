"""
What retained calls cost, and how fast GET finds and renders one among many (issue 7):

    .venv/bin/python -m bench.retention [--calls 100000] [--gets 20000]

It fills the real CallRegistry with finished REFER calls carrying the status events of
a typical click-to-call (as `make bench`'s phone produces them), then measures the
memory per retained call (tracemalloc and RSS) and the latency of GET's server-side work
for a random retained call: the key lookup plus the status document, first and repeated,
and the registry's part of GET /calls for an agent with a few calls among them all.
The HTTP layer's own cost is what `make bench` shows for the POST (p50 about 1 ms).
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from twisted.internet.task import Clock

from sipxcc.calls.call import CallRequest
from sipxcc.calls.registry import CallRegistry
from sipxcc.users import User
from sipxcc.web.render import StatusCache, call_document

LISTED = 50
EVENTS = [("INVITE", "SIP/2.0 100 Trying"), ("INVITE", "SIP/2.0 180 Ringing"),
          ("INVITE", "SIP/2.0 200 OK"), ("REFER", "SIP/2.0 202 Accepted"),
          ("NOTIFY", "SIP/2.0 100 Trying"), ("NOTIFY", "SIP/2.0 200 OK")]


class EndsAtOnce:
    """A flow that records a typical REFER call's events and ends."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        call_id = f"{random.getrandbits(96):024x}@127.0.0.1"  # a Call-ID per call, as on the wire
        for n, (method, line) in enumerate(EVENTS):
            # each status line arrives as a new string, as parsed from a message
            self.call.record(1795680000000 + n, call_id, method, "".join(line))
        self.call.finish("ended")
        self.on_end(self.call)

    def hangup(self, why):
        pass


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--gets", type=int, default=20_000)
    parser.add_argument("--traced", action="store_true",
                        help="also count bytes with tracemalloc (inflates RSS)")
    args = parser.parse_args(argv)
    agent = User("agent@sipx.test", "agent", (), None, None, None)
    registry = CallRegistry(Clock(), {"REFER": EndsAtOnce}, max_calls=args.calls,
                            max_calls_per_agent=args.calls, max_retained=args.calls + LISTED,
                            max_retained_per_owner=args.calls)
    # another agent's calls, placed first: GET /calls for it must not walk the fill
    listed = User("listed@sipx.test", "listed", (), None, None, None)
    for n in range(LISTED):
        registry.place(CallRequest(listed, f"listed{n}@sipx.test", "target@sipx.test",
                                   result_cache_time=180))
    gc.collect()
    rss_before = rss_kib()
    if args.traced:
        tracemalloc.start()
    for n in range(args.calls):
        registry.place(CallRequest(agent, f"caller{n}@sipx.test", f"target{n}@sipx.test",
                                   result_cache_time=180))
    gc.collect()
    rss_after = rss_kib()
    print(f"retained calls: {len(registry.by_id)}")
    print(f"RSS per retained call: {(rss_after - rss_before) * 1024 / args.calls:.0f} B")
    if args.traced:
        traced, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"traced per retained call: {traced / args.calls:.0f} B")

    start = time.perf_counter()
    for _ in range(100):
        assert len(registry.calls_of(listed.identity, LISTED)) == LISTED
    print(f"GET /calls listing of another agent's {LISTED} calls: "
          f"{(time.perf_counter() - start) * 1e4:.1f} us (registry part)")

    cache = StatusCache()
    first, repeated = [], []
    for n in (random.randrange(args.calls) for _ in range(args.gets)):
        key = (agent.identity, f"caller{n}@sipx.test", f"target{n}@sipx.test")
        for times in (first, repeated):  # the same call twice: rendered, then cached
            start = time.perf_counter()
            call_document(registry.lookup(key), False, cache)
            times.append(time.perf_counter() - start)
    for label, times in (("first GET", first), ("repeated GET", repeated)):
        times.sort()
        p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
        print(f"{label}: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us "
              f"({args.gets} key lookups + documents)")
    registry.clear()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
