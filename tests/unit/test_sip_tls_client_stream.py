"""An outgoing SIP-TLS stream (RFC 3261 §26.3.1): a handshake that fails is one error line
naming the peer and why, and the stream is gone; once the handshake is done the stream
takes flow control and its loss logs no handshake error."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from sipxcc.sip.transport import _TLSClientProtocol
from tests.unit.test_sip_stream_limits import stack


def connected():
    reactor, layer = stack()
    proto = _TLSClientProtocol(layer, "TLS")
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 5061))
    proto.makeConnection(transport)
    return layer, proto, transport


def handshake_errors(run) -> list[str]:
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(e) for e in events if "handshake failed" in formatEvent(e)]


def test_a_failed_handshake_is_one_line_naming_the_peer_and_why():
    layer, proto, transport = connected()
    assert ("TLS", "192.0.2.5", 5061) in layer.connections
    reason = Failure(ConnectionLost("certificate verify failed:\n   unable to get issuer"))
    lines = handshake_errors(lambda: proto.connectionLost(reason))
    assert lines == ["SIP over TLS to 192.0.2.5:5061: handshake failed, nothing sent: "
                     "Connection to the other side was lost in a non-clean fashion: "
                     "certificate verify failed: unable to get issuer."]
    assert ("TLS", "192.0.2.5", 5061) not in layer.connections


def test_a_reason_without_text_is_named_by_its_type_and_a_long_one_is_cut_at_300():
    layer, proto, transport = connected()
    lines = handshake_errors(lambda: proto.connectionLost(Failure(ValueError())))
    assert lines == ["SIP over TLS to 192.0.2.5:5061: handshake failed, nothing sent: "
                     "ValueError"]
    layer, proto, transport = connected()
    lines = handshake_errors(lambda: proto.connectionLost(Failure(ValueError("x" * 400))))
    assert lines == ["SIP over TLS to 192.0.2.5:5061: handshake failed, nothing sent: "
                     + "x" * 300]


def test_after_the_handshake_the_stream_takes_flow_control_and_logs_no_handshake_error():
    layer, proto, transport = connected()
    assert transport.producer is None  # no pausing before the handshake
    proto.handshakeCompleted()
    assert transport.producer is proto and transport.streaming is True
    assert handshake_errors(lambda: proto.connectionLost(Failure(ConnectionLost()))) == []
