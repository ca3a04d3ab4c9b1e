"""
The SIP transaction layer's cost per transaction, without sockets or a reactor.

Each round runs the four RFC 3261 §17 machines once the way a REFER click-to-call does:
an INVITE client transaction (100, 180, 200, then Timer M), a non-INVITE client transaction
(BYE, 200, Timer K), an INVITE server transaction (100, 180, 200, a retransmitted INVITE,
Timer L) and a non-INVITE server transaction (NOTIFY, 200, Timer J), over UDP on a Clock.
Messages are built before the measured loop. Run it under callgrind for instruction counts,
which a shared machine does not disturb:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.transaction_bench --rounds 2000
    (and again with --rounds 0: the difference / 2000 is the cost of one round)

or without valgrind for CPU seconds (C{--repeat} takes the best of several runs).
"""

from __future__ import annotations

import argparse
import time

from twisted.internet.task import Clock

from sipxcc.sip.message import Request, Response, make_branch, make_tag, response_to
from sipxcc.sip.stats import NO_STATS
from sipxcc.sip.transport import Source, Target
from sipxcc.sip.useragent import UASettings, UserAgent

PEER = Target("UDP", "127.0.0.1", 5080)
SOURCE = Source("UDP", "127.0.0.1", 5080, None)


class NullTransport:
    """Takes what the UA sends and drops it."""

    on_message = on_bad_message = on_connection_lost = None
    stats = NO_STATS

    def set_proxy(self, host: str) -> None:
        pass

    def send(self, data: bytes, target: Target, on_error: object = None,
             connection: object = None) -> None:
        pass


def _request(method: str, ours: bool) -> Request:
    request = Request(method, "sip:bob@127.0.0.1:5080")
    via = "127.0.0.1:6050" if ours else "127.0.0.1:5080"
    request.headers.add("Via", f"SIP/2.0/UDP {via};branch={make_branch()};rport")
    request.headers.add("Max-Forwards", "70")
    request.headers.add("From", f"<sip:alice@127.0.0.1>;tag={make_tag()}")
    request.headers.add("To", "<sip:bob@127.0.0.1>")
    request.headers.add("Call-ID", make_branch())
    request.headers.add("CSeq", f"1 {method}")
    request.headers.add("Contact", "<sip:alice@127.0.0.1:6050>")
    return request


def _round_messages() -> tuple[object, ...]:
    invite, bye = _request("INVITE", True), _request("BYE", True)
    tag = make_tag()
    answers = [response_to(invite, status, reason, tag if status > 100 else None)
               for status, reason in ((100, "Trying"), (180, "Ringing"), (200, "OK"))]
    bye_ok = response_to(bye, 200, "OK", tag)
    incoming, notify = _request("INVITE", False), _request("NOTIFY", False)
    return invite, answers, bye, bye_ok, incoming, notify


def run(rounds: int) -> float:
    """Run C{rounds} rounds; the CPU seconds they took."""
    clock = Clock()
    ua = UserAgent(clock, NullTransport(), UASettings("sip:127.0.0.1:5080;lr", "127.0.0.1",
                                                      6050))
    layer = ua.transactions
    messages = [_round_messages() for _ in range(rounds)]
    got: list[Response] = []
    start = time.process_time()
    for invite, answers, bye, bye_ok, incoming, notify in messages:
        txn = layer.client(invite, PEER, got.append, got.append)
        for answer in answers:
            txn.receive(answer)
        txn = layer.client(bye, PEER, got.append, got.append)
        txn.receive(bye_ok)
        server = layer.server(incoming, SOURCE)
        server.respond(100, "Trying")
        server.respond(180, "Ringing")
        server.respond(200, "OK")
        server.receive_retransmission(incoming)
        server = layer.server(notify, SOURCE)
        server.respond(200, "OK")
        got.clear()
    clock.advance(64 * 0.5 + 1)  # Timers M, K, L, J: every transaction ends
    elapsed = time.process_time() - start
    assert not layer.clients and not layer.servers
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    best = min(run(args.rounds) for _ in range(args.repeat))
    if args.rounds:
        print(f"{args.rounds} rounds: best {best:.3f} s, "
              f"{best / args.rounds * 1e6:.1f} us per round (4 transactions)")


if __name__ == "__main__":
    main()
