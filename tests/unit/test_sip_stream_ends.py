"""
How a SIP stream connection ends, on a Clock: closed when idle, at the message deadline or
aborted when stuck, its loss then frees its slot and leaves no timer behind; a response
whose connection is lost goes over a new one (RFC 3261 §18.2.2).
"""

from __future__ import annotations

from twisted.python.failure import Failure

from sipxcc.sip.transport import ABORT_GRACE, MESSAGE_DEADLINE, Source
from tests.unit.test_sip_stream_limits import accept, options, stack
from tests.unit.test_sip_transactions import incoming


def lose(proto) -> None:
    proto.connectionLost(Failure(ConnectionError("gone")))


def test_a_response_whose_connection_was_lost_goes_over_a_new_one_to_the_sent_by_port():
    reactor, layer = stack()
    proto, transport = accept(layer, "127.0.0.2", 40000)
    request = incoming("OPTIONS")
    request.headers.set("Via", "SIP/2.0/TCP 127.0.0.2:5071;branch=z9hG4bKx")
    lose(proto)  # as Twisted does it: the protocol keeps its (dead) transport
    layer.on_message(request, Source("TCP", "127.0.0.2", 40000, proto))
    assert transport.value() == b""
    [(host, port, *_)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.2", 5071)


def test_a_connection_closed_when_idle_frees_its_slot_and_leaves_no_timer_once_lost():
    reactor, layer = stack(idle_timeout=60)
    proto, transport = accept(layer)
    proto.dataReceived(options(1))
    reactor.advance(60)
    assert transport.disconnecting and layer.limits.open == 1
    lose(proto)
    assert layer.limits.open == 0 and reactor.getDelayedCalls() == []


def test_a_connection_aborted_when_stuck_frees_its_slot_once_lost():
    reactor, layer = stack(idle_timeout=60)
    proto, transport = accept(layer)
    proto.dataReceived(options(1))
    reactor.advance(60)
    reactor.advance(ABORT_GRACE)  # the peer takes nothing: the close is forced
    assert transport.disconnected
    lose(proto)
    assert layer.limits.open == 0 and reactor.getDelayedCalls() == []


def test_connections_closed_at_the_deadline_are_counted_and_free_their_slots_once_lost():
    reactor, layer = stack()
    first, _ = accept(layer, "127.0.0.2", 40000)
    second, _ = accept(layer, "127.0.0.3", 40001)
    reactor.advance(MESSAGE_DEADLINE)
    assert layer.deadline_closed == 2
    lose(first)
    lose(second)
    assert layer.limits.open == 0 and reactor.getDelayedCalls() == []


def test_a_connection_lost_while_active_leaves_no_timer_behind():
    reactor, layer = stack()
    proto, _ = accept(layer)
    proto.dataReceived(options(1)[:20])  # a message begun: idle and deadline timers run
    lose(proto)
    assert layer.limits.open == 0 and reactor.getDelayedCalls() == []


def test_a_second_invalid_message_completed_in_two_parts_stops_the_deadline():
    reactor, layer = stack()
    proto, transport = accept(layer)
    bad = options(1).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INFO")  # framed, but invalid
    proto.dataReceived(bad)
    proto.dataReceived(bad[:30])
    reactor.advance(1)
    proto.dataReceived(bad[30:])
    reactor.advance(MESSAGE_DEADLINE)
    assert not transport.disconnecting and layer.deadline_closed == 0
