"""
Hostile datagrams at the user agent core: whatever arrives on the SIP port is answered
per RFC 3261 (400/403/481/482/483/405/501, or 200 to OPTIONS) or dropped, never raises,
and leaves no transaction or dialog behind once the timers have run.
"""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.unit.sipfakes import FakeNetwork  # noqa: E402

#: what the core may answer to a request nobody expects (RFC 3261 §8.2, §12.2.2, §16.3)
RFC_ANSWERS = {200, 400, 403, 405, 416, 420, 481, 482, 483, 501, 505}
#: 64*T1 (Timer H/J) plus slack: every server transaction must be gone after this
ALL_TIMERS = 64 * 0.5 + 5

METHODS = st.sampled_from(["INVITE", "ACK", "CANCEL", "OPTIONS", "BYE", "REFER", "NOTIFY",
                           "INFO", "UPDATE", "PRACK", "REGISTER", "SUBSCRIBE", "MESSAGE",
                           "PUBLISH", "FOO", "invite", "X-" * 3])
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+~", min_size=1,
                max_size=10)
ODD = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=12)
SOURCES = st.sampled_from([("127.0.0.1", 5080), ("192.0.2.7", 5060), ("::1", 5062),
                           ("10.0.0.1", 1)])


@st.composite
def requests(draw) -> bytes:
    """A request that is well-formed often enough to reach the UA core, odd elsewhere."""
    method = draw(METHODS)
    uri = draw(st.sampled_from(["sip:callcontroller@127.0.0.1:6050", "sip:x@[::1]",
                                "tel:+123", "sip:%00@h", "*"]))
    branch = draw(st.one_of(st.just("z9hG4bK") .map(lambda p: p + "abc"),
                            TOKEN.map(lambda t: "z9hG4bK" + t), TOKEN, st.just("")))
    via_host = draw(st.sampled_from(["127.0.0.1:5080", "192.0.2.9", "[::1]:5062", "h"]))
    lines = [f"{method} {uri} SIP/2.0",
             f"Via: SIP/2.0/UDP {via_host};branch={branch}"
             + draw(st.sampled_from(["", ";rport", ";received=1.2.3.4", ";rport=x"]))]
    if draw(st.booleans()):
        lines.append("Max-Forwards: " + draw(st.sampled_from(["70", "0", "-1", "x", "1"])))
    lines.append(f"From: <sip:a@example.com>;tag={draw(TOKEN)}")
    to_tag = draw(st.one_of(st.none(), TOKEN))
    lines.append("To: <sip:callcontroller@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""))
    lines.append(f"Call-ID: {draw(st.one_of(TOKEN, ODD))}")
    cseq_method = draw(st.one_of(st.just(method), METHODS))
    cseq = draw(st.one_of(st.integers(0, 2**31), st.just(2**63), st.just(-1)))
    lines.append(f"CSeq: {cseq} {cseq_method}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from(["Contact", "Route", "Record-Route", "Event",
                                           "Subscription-State", "Content-Type",
                                           "Require", "Proxy-Require", "X-" + "a"]))
                     + ": " + draw(ODD))
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        lines.append(f"Content-Length: {draw(st.integers(-2, 80))}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body
    if draw(st.booleans()):  # a few flipped bytes
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    return data


DATAGRAMS = st.one_of(requests(), st.binary(max_size=300),
                      st.builds(lambda r: r.replace(b"SIP/2.0", b"SIP/2.0", 1), requests())
                      .map(lambda d: b"SIP/2.0 200 OK\r\n" + d.split(b"\r\n", 1)[-1]))


class Answer:
    """A response the UA sent, read from its status line (its CSeq may echo garbage)."""

    def __init__(self, data: bytes):
        self.first_line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        self.status = int(self.first_line.split()[1])
        to = [line for line in data.split(b"\r\n") if line.lower().startswith(b"to:")]
        self.to_tag = to[0].partition(b";tag=")[2] if to else None


def answers(network: FakeNetwork) -> list[Answer]:
    """The responses sent since the last call."""
    new = network.socket.written[network._seen:]
    network._seen = len(network.socket.written)
    return [Answer(data) for data, _ in new if data.startswith(b"SIP/2.0 ")]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(DATAGRAMS, SOURCES), min_size=1, max_size=6))
def test_any_datagram_is_answered_per_rfc_or_dropped_and_nothing_is_left(datagrams):
    network = FakeNetwork()
    for data, source in datagrams:
        network.layer.udp.datagramReceived(data, source)
    network.clock.advance(0)
    assert all(data.startswith(b"SIP/2.0 ") for data, _ in network.socket.written)
    for response in answers(network):
        assert response.status in RFC_ANSWERS, response.first_line
    for _ in range(int(ALL_TIMERS * 2)):
        network.clock.advance(0.5)
    ua = network.ua
    assert ua.transactions.servers == {}
    assert ua.transactions.clients == {}
    assert ua.dialogs == {}
    assert network.clock.getDelayedCalls() == []


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests())
def test_a_request_retransmitted_gets_the_same_answer(data):
    network = FakeNetwork()
    network.deliver(data)
    first = answers(network)
    network.deliver(data)
    again = answers(network)
    if first and first[0].status >= 200 and not data.startswith(b"ACK"):
        assert [r.first_line for r in again] == [r.first_line for r in first]
        assert again[0].to_tag == first[0].to_tag


def test_a_flood_of_unknown_dialog_requests_leaves_nothing_behind():
    network = FakeNetwork()
    for n in range(2000):
        network.deliver(
            b"BYE sip:callcontroller@127.0.0.1:6050 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKflood%d\r\n"
            b"From: <sip:a@x>;tag=a%d\r\nTo: <sip:b@y>;tag=b%d\r\nCall-ID: c%d\r\n"
            b"CSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n" % (n, n, n, n),
            source=("192.0.2.9", 5060))
    statuses = {r.status for r in answers(network)}
    assert statuses == {481}
    assert len(network.ua.transactions.servers) == 2000
    network.clock.advance(ALL_TIMERS)
    assert network.ua.transactions.servers == {}
    assert len(network.ua.recent) == 0


def test_a_flood_of_new_requests_keeps_merge_memory_bounded():
    from sipxcc.sip.useragent import MERGE_MEMORY

    network = FakeNetwork()

    def options(n: int, branch: str) -> bytes:
        return (b"OPTIONS sip:callcontroller@127.0.0.1:6050 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK%s\r\n"
                b"From: <sip:a@x>;tag=a%d\r\nTo: <sip:b@y>\r\nCall-ID: c%d\r\n"
                b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                % (branch.encode(), n, n))

    for n in range(MERGE_MEMORY + 500):
        network.deliver(options(n, f"flood{n}"), source=("192.0.2.9", 5060))
    assert len(network.ua.recent) <= MERGE_MEMORY
    last = MERGE_MEMORY + 499
    network.deliver(options(last, "another-path"), source=("192.0.2.9", 5060))
    assert answers(network)[-1].status == 482  # the newest are still remembered
    network.clock.advance(33)
    network.deliver(options(0, "later"), source=("192.0.2.9", 5060))
    assert len(network.ua.recent) == 1  # the window passed: everything older forgotten
