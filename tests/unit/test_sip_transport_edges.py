"""SIP over TCP at its edges: a connection is found again by its peer's address (for the
responses that must go back on it, RFC 3261 §18.2.2), and the size limits configured on
the transport layer are the ones its streams enforce."""

from __future__ import annotations

from sipxcc.sip.framing import MAX_HEAD
from tests.unit.test_sip_stream_limits import accept, answers, head_length, options, stack


def test_an_accepted_connection_is_known_by_its_transport_and_peer_address():
    reactor, layer = stack()
    proto, transport = accept(layer, "127.0.0.2", 40001)
    assert layer.connections == {("TCP", "127.0.0.2", 40001): proto}
    proto.connectionLost(None)
    assert layer.connections == {}


def test_a_stream_takes_the_head_limit_configured_on_the_layer():
    small = head_length(options(1)) + 20
    assert small < MAX_HEAD
    reactor, layer = stack(max_head=small)
    proto, transport = accept(layer)
    proto.dataReceived(options(1, pad=small - head_length(options(1))))
    assert answers(transport) == [200] and not transport.disconnecting
    proto.dataReceived(options(2, pad=small + 1 - head_length(options(2))))
    assert transport.disconnecting and layer.dropped == 1


def test_a_stream_takes_the_message_size_limit_configured_on_the_layer():
    message = options(1)
    reactor, layer = stack(max_size=len(message))
    proto, transport = accept(layer)
    proto.dataReceived(message)
    assert answers(transport) == [200] and not transport.disconnecting
    body = b"x" * 1
    bigger = options(2).replace(b"Content-Length: 0", b"Content-Length: 1") + body
    proto.dataReceived(bigger)
    assert transport.disconnecting and layer.dropped == 1
