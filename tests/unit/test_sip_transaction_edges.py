"""RFC 3261 §17 transactions at their edges, on a Clock: what a stream's loss reports,
which connection a request goes out on, and Timers H and L from both sides."""

from __future__ import annotations

from sipxcc.sip.transaction import T1, TransportFailure
from sipxcc.sip.transport import Source, Target
from sipxcc.timers import SLACK
from tests.unit.sipfakes import PROXY, FakeNetwork, answer
from tests.unit.test_sip_transactions import incoming, request

TCP = Target("TCP", *PROXY)
PHONE = Source("UDP", "127.0.0.1", 5071, None)


def on_stream(net: FakeNetwork) -> list:
    """Replace the transport's send: record (data, target, on_error, connection)."""
    sent: list = []
    net.layer.send = lambda data, target, on_error=None, connection=None: sent.append(
        (data, target, on_error, connection))
    return sent


def request_sent(sent: list) -> bytes:
    """The bytes of the first request sent."""
    return sent[0][0]


def test_a_request_goes_out_on_the_connection_it_was_given():
    net = FakeNetwork()
    sent = on_stream(net)
    stream = object()
    net.ua.transactions.client(request(net, "OPTIONS"), TCP, print, print, stream)
    [(_, target, _, connection)] = sent
    assert (target, connection) == (TCP, stream)


def test_a_stream_lost_under_a_pending_request_fails_it_as_connection_lost():
    net = FakeNetwork()
    on_stream(net)
    got, failed = [], []
    net.ua.transactions.client(request(net, "OPTIONS"), TCP, got.append, failed.append)
    net.ua.transactions.connection_lost(TCP)
    [failure] = failed
    assert isinstance(failure, TransportFailure) and str(failure) == "connection lost"
    assert got == [] and not net.ua.transactions.clients


def test_over_a_stream_a_final_response_ends_the_transaction_at_once():
    net = FakeNetwork()
    sent = on_stream(net)
    got, failed = [], []
    txn = net.ua.transactions.client(request(net, "OPTIONS"), TCP, got.append, failed.append)
    net.deliver(answer(request_sent(sent), 200, "OK"))
    assert [r.status for r in got] == [200] and failed == []
    assert txn.state == "terminated" and not net.ua.transactions.clients


def test_timer_h_ends_an_unacknowledged_rejection_at_64_t1_not_before():
    net = FakeNetwork()
    net.clock.advance(100)
    txn = net.ua.transactions.server(incoming("INVITE"), PHONE)
    assert txn.respond(486, "Busy Here").status == 486
    assert txn.respond(500, "Server Internal Error") is None  # one final response only
    net.clock.advance(64 * T1 - 0.01)
    assert txn.state == "completed" and net.ua.transactions.servers
    net.clock.advance(0.01)
    assert txn.state == "terminated" and not net.ua.transactions.servers


def test_timer_l_absorbs_invite_retransmissions_for_64_t1_after_a_2xx():
    net = FakeNetwork()
    txn = net.ua.transactions.server(incoming("INVITE"), PHONE)
    assert txn.respond(200, "OK").status == 200
    assert txn.respond(200, "OK") is None  # a second 2xx is the TU's to send, not ours
    net.clock.advance(64 * T1 - 0.01)
    assert txn.state == "accepted" and net.ua.transactions.servers
    net.clock.advance(0.01 + SLACK)
    assert txn.state == "terminated" and not net.ua.transactions.servers


def test_a_2xx_resent_from_a_late_start_still_gives_up_64_t1_after_its_own_start():
    net = FakeNetwork()
    net.clock.advance(1000)
    txn = net.ua.transactions.server(incoming("INVITE"), PHONE)
    txn.respond(200, "OK")
    gave_up: list[float] = []
    handle = txn.retransmit_until_ack(lambda: gave_up.append(net.clock.seconds() - 1000))
    net.clock.advance(31.5)
    assert gave_up == [] and handle.active()
    net.clock.advance(4)
    assert gave_up == [35.5] and not handle.active()


def ack_for(invite, rejection) -> object:
    ack = incoming("ACK", branch=invite.branch, to_tag=rejection.to_tag)
    ack.headers.set("From", invite.headers.get("From"))
    return ack


def test_an_ack_before_the_first_timer_g_stops_every_resend_and_timer_i_ends_it():
    net = FakeNetwork()
    invite = incoming("INVITE")
    txn = net.ua.transactions.server(invite, PHONE)
    rejection = txn.respond(486, "Busy Here")
    net.sent()
    net.deliver(ack_for(invite, rejection), ("127.0.0.1", 5071))
    assert txn.state == "confirmed"
    net.clock.advance(T1)
    net.clock.advance(T1)
    assert net.sent() == []
    net.clock.advance(5 + SLACK)  # Timer I: T4
    assert txn.state == "terminated" and not net.ua.transactions.servers


def test_over_a_stream_the_ack_of_a_rejection_ends_the_transaction_at_once():
    net = FakeNetwork()
    on_stream(net)
    invite = incoming("INVITE")
    txn = net.ua.transactions.server(invite, Source("TCP", "127.0.0.1", 5071, None))
    rejection = txn.respond(486, "Busy Here")
    net.deliver(ack_for(invite, rejection), ("127.0.0.1", 5071))
    assert txn.state == "terminated" and not net.ua.transactions.servers


def test_a_final_response_after_two_resends_stops_them():
    for method, status in (("OPTIONS", 200), ("INVITE", 486)):
        net = FakeNetwork()
        got, failed = [], []
        net.ua.transactions.client(request(net, method), Target("UDP", *PROXY), got.append,
                                   failed.append)
        [(sent, _)] = net.sent()
        net.clock.advance(T1)
        net.clock.advance(2 * T1)
        assert [m.method for m, _ in net.sent()] == [method, method]
        net.deliver(answer(sent, status, "Final", "x"))
        net.sent()  # the ACK of a rejected INVITE
        net.clock.advance(4 * T1)
        net.clock.advance(4 * T1)
        assert net.sent() == [] and [r.status for r in got] == [status] and failed == []


def test_every_response_of_a_transaction_but_100_carries_one_to_tag_and_no_body():
    net = FakeNetwork()
    txn = net.ua.transactions.server(incoming("INVITE"), PHONE)
    trying, ringing, ok = (txn.respond(100, "Trying"), txn.respond(180, "Ringing"),
                           txn.respond(200, "OK"))
    assert trying.to_tag is None and ringing.to_tag and ok.to_tag == ringing.to_tag
    assert [m.body for m, _ in net.sent()] == [b"", b"", b""]


def test_an_invite_resent_before_any_answer_gets_nothing_and_one_final_per_request():
    net = FakeNetwork()
    invite = incoming("INVITE")
    net.ua.transactions.server(invite, PHONE)
    net.deliver(invite, ("127.0.0.1", 5071))
    assert net.sent() == []
    options = net.ua.transactions.server(incoming("OPTIONS"), PHONE)
    assert options.respond(200, "OK").status == 200
    assert options.respond(500, "Server Internal Error") is None
