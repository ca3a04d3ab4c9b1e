"""RFC 3261 §17 transaction machines against the RFC's timer tables, on a Clock."""

from __future__ import annotations

from sipxcc.sip.message import Request, make_branch, make_tag
from sipxcc.sip.transaction import T1, T2, T4
from sipxcc.sip.transport import Source, Target
from sipxcc.timers import SLACK
from tests.unit.sipfakes import PROXY, FakeNetwork, answer

UDP = Target("UDP", *PROXY)


def request(net: FakeNetwork, method: str = "INVITE") -> Request:
    return net.ua.new_request(method, "sip:user1@sipx.test", "<sip:user3@sipx.test>",
                              "<sip:user1@sipx.test>")


def client(net, method="INVITE", target=UDP):
    got, failed = [], []
    txn = net.ua.transactions.client(request(net, method), target, got.append, failed.append)
    return txn, got, failed


def send_times(net, until: float, step: float = 0.25) -> list[float]:
    """Advance the clock to C{until}, noting when something was sent."""
    times = []
    start = net.clock.seconds()
    if net.sent():
        times.append(0.0)
    while net.clock.seconds() - start < until:
        net.clock.advance(step)
        for _ in net.sent():
            times.append(net.clock.seconds() - start)
    return times


def test_invite_client_retransmits_at_timer_a_and_gives_up_at_timer_b():
    net = FakeNetwork()
    txn, got, failed = client(net)
    times = send_times(net, 64 * T1)
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert len(failed) == 1 and "INVITE" in str(failed[0])
    assert txn.state == "terminated" and not net.ua.transactions.clients


def test_invite_client_stops_retransmitting_on_provisional_and_acks_failure():
    net = FakeNetwork()
    txn, got, failed = client(net)
    [(invite, _)] = net.sent()
    net.deliver(answer(invite, 180, "Ringing", "x"))
    assert send_times(net, 40) == []  # Proceeding: no retransmission, no Timer B
    net.deliver(answer(invite, 486, "Busy Here", "x"))
    [(ack, addr)] = net.sent()
    assert ack.method == "ACK" and ack.branch == invite.branch and ack.to_tag == "x"
    net.deliver(answer(invite, 486, "Busy Here", "x"))  # retransmitted final: ACK again
    assert [m.method for m, _ in net.sent()] == ["ACK"]
    assert [r.status for r in got] == [180, 486]  # the retransmission is absorbed
    net.clock.advance(32)  # Timer D
    assert txn.state == "completed"
    net.clock.advance(SLACK)  # wait timers may end late, together with others due
    assert txn.state == "terminated"


def test_non_invite_client_timer_e_caps_at_t2_and_timer_f_fires():
    net = FakeNetwork()
    txn, got, failed = client(net, "OPTIONS")
    times = send_times(net, 64 * T1)
    assert times[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == T2 for a, b in zip(times[4:], times[5:], strict=False))
    assert len(failed) == 1


def test_non_invite_client_completed_waits_timer_k():
    net = FakeNetwork()
    txn, got, failed = client(net, "OPTIONS")
    [(options, _)] = net.sent()
    net.deliver(answer(options, 200, "OK"))
    assert txn.state == "completed"
    net.clock.advance(T4)
    assert txn.state == "completed"
    net.clock.advance(SLACK)
    assert txn.state == "terminated"


def test_reliable_transport_does_not_retransmit():
    net = FakeNetwork()
    sent = []
    net.layer.send = lambda data, target, on_error=None, connection=None: sent.append(data)
    txn, got, failed = client(net, "INVITE", Target("TCP", *PROXY))
    net.clock.advance(31)
    assert len(sent) == 1
    net.clock.advance(1)
    assert len(failed) == 1 and "INVITE" in str(failed[0])  # Timer B, without a retransmission


def incoming(method: str, branch: str | None = None, to_tag: str | None = None) -> Request:
    req = Request(method, "sip:callcontroller@127.0.0.1:6050")
    h = req.headers
    h.add("Via", f"SIP/2.0/UDP 127.0.0.1:5071;branch={branch or make_branch()};rport")
    h.add("Max-Forwards", "70")
    h.add("From", f"<sip:user1@sipx.test>;tag={make_tag()}")
    h.add("To", "<sip:callcontroller@sipx.test>" + (f";tag={to_tag}" if to_tag else ""))
    h.add("Call-ID", "abc@127.0.0.1")
    h.add("CSeq", f"1 {method}")
    return req


def test_non_invite_server_absorbs_retransmissions_until_timer_j():
    net = FakeNetwork()
    req = incoming("OPTIONS")
    net.deliver(req, ("127.0.0.1", 5071))
    [(ok, addr)] = net.sent()
    assert ok.status == 200 and addr == ("127.0.0.1", 5071)
    assert "INVITE" in ok.headers.get("Allow")
    net.deliver(req, ("127.0.0.1", 5071))
    [(again, _)] = net.sent()
    assert again.to_bytes() == ok.to_bytes()
    net.clock.advance(64 * T1 + SLACK)
    assert not net.ua.transactions.servers


def test_invite_server_retransmits_error_response_with_timer_g_until_ack():
    net = FakeNetwork()
    req = incoming("INVITE")
    net.deliver(req, ("127.0.0.1", 5071))
    [(response, _)] = net.sent()
    assert response.status == 405  # we place calls; we do not take them
    times = send_times(net, 2.0)
    assert times == [0.5, 1.5]
    ack = incoming("ACK", branch=req.branch, to_tag=response.to_tag)
    ack.headers.set("From", req.headers.get("From"))
    net.deliver(ack, ("127.0.0.1", 5071))
    assert send_times(net, 10) == []


def test_responses_go_to_received_and_rport():
    net = FakeNetwork()
    req = incoming("OPTIONS")
    net.layer.udp.datagramReceived(req.to_bytes(), ("127.0.0.9", 40000))
    [(ok, addr)] = net.sent()
    assert addr == ("127.0.0.9", 40000)
    via = ok.top_via
    assert via.received == "127.0.0.9" and via.rport == 40000


def test_unknown_dialog_gets_481_and_unknown_method_501():
    net = FakeNetwork()
    net.deliver(incoming("BYE", to_tag="nope"), ("127.0.0.1", 5071))
    net.deliver(incoming("FOO"), ("127.0.0.1", 5071))
    assert [m.status for m, _ in net.sent()] == [481, 501]


def test_merged_request_gets_482():
    net = FakeNetwork()
    first = incoming("OPTIONS")
    second = Request("OPTIONS", first.uri)
    for name, value in first.headers.items():
        second.headers.add(name, value if name != "Via" else
                           f"SIP/2.0/UDP 127.0.0.1:5072;branch={make_branch()}")
    net.deliver(first, ("127.0.0.1", 5071))
    net.deliver(second, ("127.0.0.1", 5072))
    assert [m.status for m, _ in net.sent()] == [200, 482]


def test_malformed_request_gets_400():
    net = FakeNetwork()
    net.layer.udp.datagramReceived(
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: one OPTIONS\r\n\r\n",
        ("127.0.0.1", 5071))
    [(data, addr)] = net.socket.written  # it echoes the bad CSeq, so it does not parse
    assert data.startswith(b"SIP/2.0 400 Bad Request\r\n") and addr == ("127.0.0.1", 5071)


def test_source_record_is_used_for_stream_responses():
    net = FakeNetwork()
    written = []
    net.layer.send = lambda data, target, on_error=None, connection=None: written.append(
        (target, connection))
    conn = object()
    net.ua.receive(incoming("OPTIONS"), Source("TCP", "127.0.0.1", 40001, conn))
    # over that connection; should it close, a new one goes to the sent-by port (§18.2.2)
    assert written == [(Target("TCP", "127.0.0.1", 5071), conn)]


def test_a_response_whose_to_header_is_malformed_is_dropped_not_raised():
    net = FakeNetwork()
    outgoing = net.ua.invite(request(net))
    [(invite, _)] = net.sent()
    ok = answer(invite, 200, "OK", "x")
    ok.headers.set("To", "<sip:broken")
    net.deliver(ok)
    assert net.ua.counters["bad"] == 1 and outgoing.final_status is None
    net.deliver(answer(invite, 200, "OK", "x"))  # the retransmitted, sound one is taken
    assert outgoing.final_status == 200 and outgoing.dialog is not None
