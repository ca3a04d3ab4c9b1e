"""
The CPU the metrics and call-log machinery adds to one REFER click-to-call, in process:
the 13 SIP messages through the sink (7 sent, 6 received, as the daemon sees them), the
call's status events through the registry's subscribers, and one HTTP request counted.

    .venv/bin/python -m bench.metrics_cost
"""

from __future__ import annotations

import time

from twisted.internet.task import Clock

from sipxcc.calls.call import CallRequest
from sipxcc.calls.calllog import CallLog
from sipxcc.calls.registry import CallRegistry
from sipxcc.sip.message import Request, Response
from sipxcc.users import User
from sipxcc.web.metrics import Metrics

CALLS = 20_000
USER = User("bench@sipx.test", "bench", (), None, None, None)
SENT = [b"INVITE sip:u@h SIP/2.0\r\n", b"ACK sip:u@h SIP/2.0\r\n", b"REFER sip:u@h SIP/2.0\r\n",
        b"SIP/2.0 200 OK\r\n", b"SIP/2.0 200 OK\r\n", b"BYE sip:u@h SIP/2.0\r\n",
        b"SIP/2.0 200 OK\r\n"]
RECEIVED = [Response(100, "Trying"), Response(180, "Ringing"), Response(200, "OK"),
            Response(202, "Accepted"), Request("NOTIFY", "sip:x@h"),
            Request("NOTIFY", "sip:x@h")]
LINES = [("INVITE", "SIP/2.0 100 Trying"), ("INVITE", "SIP/2.0 180 Ringing"),
         ("INVITE", "SIP/2.0 200 OK"), ("REFER", "SIP/2.0 202 Accepted"),
         ("NOTIFY", "SIP/2.0 100 Trying"), ("NOTIFY", "SIP/2.0 200 OK")]


class Flow:
    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        pass

    def hangup(self, why="hangup"):
        pass


class Answered:
    prepath, postpath, code = [b"callcontroller"], [], 200


def run(metrics_on: bool, log_on: bool) -> float:
    """CPU seconds per call for CALLS calls."""
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": Flow}, max_calls=CALLS + 1,
                            max_calls_per_agent=CALLS + 1, max_retained=10)
    metrics = Metrics(clock)
    if metrics_on:
        metrics.follow(registry)
    if log_on:
        CallLog(clock).follow(registry)
    sip = metrics.sip
    started = time.process_time()
    for n in range(CALLS):
        call = registry.place(CallRequest(USER, "bench@sipx.test", f"t{n}@sipx.test"))
        for data, message in zip(SENT, RECEIVED, strict=False):
            if metrics_on:
                sip.sent(data)
                sip.received(message)
        if metrics_on:
            sip.sent(SENT[-1])
            metrics.http_request(Answered)
        for method, line in LINES:
            call.record(int(clock.seconds() * 1000), "c", method, line)
        call.finish("ended")
        call.flow.on_end(call)
    return (time.process_time() - started) / CALLS


def main() -> None:
    for label, on, log in (("none", False, False), ("metrics", True, False),
                           ("metrics + call log (info)", True, True)):
        best = min(run(on, log) for _ in range(3))
        print(f"{label:28s} {best * 1e6:7.1f} us CPU per call (registry and events included)")


if __name__ == "__main__":
    main()
