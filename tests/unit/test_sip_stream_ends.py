"""
How a SIP stream connection ends, on a Clock: closed when idle, at the message deadline or
aborted when stuck, its loss then frees its slot and leaves no timer behind; a response
whose connection is lost goes over a new one (RFC 3261 §18.2.2).
"""

from __future__ import annotations

from twisted.python.failure import Failure

from sipxcc.sip.transport import Source
from tests.unit.test_sip_stream_limits import accept, stack
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

