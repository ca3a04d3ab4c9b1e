"""
CPU of whole REFER click-to-call calls without sockets: the UA, the REFER flow and the
registry against the unit tests' scripted proxy and phone (tests/unit/sipfakes.py), on a
Clock. Each call: INVITE, 100, 180, 200, ACK, REFER, 202, NOTIFY (100), 200, NOTIFY (200,
terminated), 200, BYE, 200; then every timer runs out. The far end's text handling is
counted too (the same code before and after a change). For instruction counts:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.call_bench --calls 300     (and --calls 0)
"""

from __future__ import annotations

import argparse
import time

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.users import User
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer

USER1 = User("user1@sipx.test", "user1", ("201",), "User One", "0" * 32, "1" * 32)
NOTIFIES = ((b"SIP/2.0 100 Trying\r\n", "active"),
            (b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource"))


def one_call(net: FakeNetwork, registry: CallRegistry, number: int) -> None:
    call = registry.place(CallRequest(USER1, "user1@sipx.test", f"user{number}@sipx.test"))
    [invite] = net.sent_messages()
    phone = FarEnd(invite)
    net.deliver(answer(invite, 100, "Trying"))
    net.deliver(answer(invite, 180, "Ringing", phone.tag))
    net.deliver(phone.ok(b"v=0\r\n"))
    _ack, refer = net.sent_messages()
    net.deliver(answer(refer, 202, "Accepted"))
    for frag, state in NOTIFIES:
        net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", state),
                                             ("Content-Type", "message/sipfrag")], frag))
    bye = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    net.deliver(answer(bye[0], 200, "OK"))
    assert call.ended, call.state


def run(calls: int) -> float:
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    registry = CallRegistry(net.clock, {"REFER": lambda call, end: ReferFlow(ctx, call, end)})
    start = time.process_time()
    for number in range(calls):
        one_call(net, registry, number)
    net.clock.advance(200)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    best = min(run(args.calls) for _ in range(args.repeat))
    if args.calls:
        print(f"{args.calls} calls: best {best:.3f} s, {best / args.calls * 1e6:.0f} us per call")


if __name__ == "__main__":
    main()
