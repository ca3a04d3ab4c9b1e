"""CPU of the call-control layer per REFER click-to-call, in process (no HTTP, no sockets).

Drives N REFER click-to-calls through the registry, the REFER flow and the user agent on a
fake UDP socket and a Clock, with the scripted far end of the unit tests: INVITE, 100, 180,
200, ACK, REFER, 202, NOTIFY(100), 200, NOTIFY(200, terminated), 200, BYE, 200. Prints the
CPU time per call (process_time). For a count that does not depend on the machine's load,
run it under valgrind: C{valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m
bench.refer_flow_cpu --calls 300} and read "Collected" (instructions).
"""

from __future__ import annotations

import argparse
import gc
import time

from sipxcc.calls.call import CallRequest
from sipxcc.calls.callbacks import StatusCallbacks
from sipxcc.calls.context import FlowContext
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.users import User
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer

AGENT = User("user1@sipx.test", "user1", ("201",), "User One", "", "")


def one_call(net: FakeNetwork, registry: CallRegistry, n: int) -> None:
    call = registry.place(CallRequest(AGENT, "user1@sipx.test", f"t{n}@sipx.test"))
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 100, "Trying"))
    phone = FarEnd(invite)
    net.deliver(answer(invite, 180, "Ringing", phone.tag))
    net.deliver(phone.ok(b"v=0\r\n"))
    _ack, refer = net.sent_messages()
    net.deliver(answer(refer, 202, "Accepted"))
    for frag, sub in ((b"SIP/2.0 100 Trying\r\n", "active"),
                      (b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")):
        net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", sub),
                                             ("Content-Type", "message/sipfrag")], frag))
    bye = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    net.deliver(answer(bye[0], 200, "OK"))
    assert call.ended and call.state == "ended", call.state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    # as in the daemon (sipxcc.calls.control): the webhook sender sees every new call
    registry = CallRegistry(net.clock, {"REFER": lambda call, end: ReferFlow(ctx, call, end)},
                            max_calls_per_agent=10,
                            observers=(StatusCallbacks(net.clock, lambda u, b: None).attach,))
    for n in range(20):  # warm-up
        one_call(net, registry, -n - 1)
    gc.collect()  # the collector as the daemon sets it up (sipxcc.tap)
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    start = time.process_time()
    for n in range(args.calls):
        one_call(net, registry, n)
        if n % 500 == 0:
            net.clock.advance(40)  # let the transactions' wait states end
    cpu = time.process_time() - start
    print(f"{args.calls} REFER click-to-calls: {cpu * 1e6 / args.calls:.1f} us CPU per call")


if __name__ == "__main__":
    main()
