"""RFC 3261 §13.3.1.4: a UAS resends its 2xx to an INVITE until the ACK, at most 64*T1."""

from __future__ import annotations

from sipxcc.sip.transaction import T1
from sipxcc.sip.transport import Source
from tests.unit.sipfakes import FakeNetwork
from tests.unit.test_sip_transactions import incoming, send_times

PHONE = ("127.0.0.1", 5071)
PHONE_SOURCE = Source("UDP", *PHONE, None)


def answered(source=PHONE_SOURCE):
    """An INVITE server transaction (created as the UA would) answered 200 OK."""
    net = FakeNetwork()
    txn = net.ua.transactions.server(incoming("INVITE"), source)
    ok = txn.respond(200, "OK")
    return net, txn, ok


def test_the_2xx_is_resent_at_t1_doubling_to_t2_until_64_t1_then_no_ack_is_reported():
    net, txn, ok = answered()
    [(first, addr)] = net.sent()
    assert first.status == 200 and addr == PHONE
    gave_up = []
    txn.retransmit_until_ack(lambda: gave_up.append(net.clock.seconds()))
    times = send_times(net, 40)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert gave_up == [35.5]  # the first resend due at or after 64*T1 reports instead
    assert 35.5 >= 64 * T1


def test_every_resend_is_the_2xx_byte_for_byte():
    net, txn, ok = answered()
    [(first, _)] = net.sent()
    txn.retransmit_until_ack(lambda: None)
    net.clock.advance(T1)
    [(again, _)] = net.sent()
    assert again.to_bytes() == first.to_bytes()


def test_cancelling_the_handle_when_the_ack_comes_stops_the_resends():
    net, txn, ok = answered()
    net.sent()
    gave_up = []
    handle = txn.retransmit_until_ack(lambda: gave_up.append(True))
    assert handle.active()
    net.clock.advance(2 * T1)
    assert len(net.sent()) == 1
    handle.cancel()
    assert not handle.active()
    assert send_times(net, 40) == [] and gave_up == []


def test_over_a_stream_nothing_is_resent_but_a_missing_ack_is_still_reported():
    net = FakeNetwork()
    sent = []
    net.layer.send = lambda data, target, on_error=None, connection=None: sent.append(data)
    txn = net.ua.transactions.server(incoming("INVITE"), Source("TCP", *PHONE, None))
    txn.respond(200, "OK")
    gave_up = []
    txn.retransmit_until_ack(lambda: gave_up.append(net.clock.seconds()))
    while net.clock.seconds() < 35:
        net.clock.advance(0.25)  # Clock runs what is due at the end of a step
    assert len(sent) == 1 and gave_up == []
    net.clock.advance(0.5)
    assert len(sent) == 1 and gave_up == [35.5]
