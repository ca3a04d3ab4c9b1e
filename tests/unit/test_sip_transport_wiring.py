"""
How the transport layer wires what it opens: the UDP socket's protocol delivers to the
layer, an outgoing TLS stream waits for its handshake, an incoming TLS connection is
counted against its own client's address and a refusal names TLS, and port 0 tries 20
times.
"""

from __future__ import annotations

import pytest
from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from sipxcc.sip.transport import Target, TransportLayer, _StreamFactory, _TLSStreamFactory
from tests.unit.test_sip_codec_edges import OPTIONS
from tests.unit.test_sip_stream_limits import stack
from tests.unit.test_sip_transport_binding import Reactor


def logged(run) -> list[str]:
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(e) for e in events]


def test_the_udp_socket_delivers_what_it_receives_to_the_layer():
    reactor = Reactor()
    layer = TransportLayer(reactor, "192.0.2.10", 5070, ("udp",))
    received = []
    layer.on_message = lambda message, source: received.append((message.method, source[:3]))
    layer.start()
    [(_, _, _, _, protocol)] = reactor.listened
    protocol.datagramReceived(OPTIONS % 1, ("192.0.2.20", 5060))
    assert received == [("OPTIONS", ("UDP", "192.0.2.20", 5060))]


def test_port_zero_tries_twenty_ports_before_it_gives_up():
    class AlwaysBusy(Reactor):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError(98, "in use"))

    reactor = AlwaysBusy()
    layer = TransportLayer(reactor, "127.0.0.1", 0, ("udp", "tcp"))
    with pytest.raises(CannotListenError):
        layer.start()
    assert len(reactor.listened) == 20  # twenty UDP ports tried, each let go


def test_an_outgoing_tls_stream_logs_a_failed_handshake_and_waits_for_it_to_take_flow_control():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("tls",))
    layer.client_tls = ssl.optionsForClientTLS("proxy.sipx.test")
    layer.send(b"x", Target("TLS", "192.0.2.1", 5061))
    [(_, _, factory, _, _, _)] = reactor.sslClients
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5061))
    proto.makeConnection(transport)
    assert transport.producer is None  # pausing before the handshake would stall it
    lines = logged(lambda: proto.connectionLost(None))
    assert [line for line in lines if "handshake failed" in line] == \
        ["SIP over TLS to 192.0.2.1:5061: handshake failed, nothing sent: None"]


def tls_factory(layer):
    return _TLSStreamFactory(ssl.CertificateOptions(), False, _StreamFactory(layer, "TLS"))


def test_incoming_tls_connections_count_against_each_clients_own_address():
    reactor, layer = stack(max_connections_per_host=1)
    factory = tls_factory(layer)
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40000)) is not None
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.3", 40000)) is not None
    assert layer.limits.by_client == {"127.0.0.2": 1, "127.0.0.3": 1}


def test_a_refused_tls_connection_is_logged_as_tls():
    reactor, layer = stack(max_connections_per_host=1)
    factory = tls_factory(layer)
    address = IPv4Address("TCP", "127.0.0.2", 40000)
    factory.buildProtocol(address)
    lines = logged(lambda: factory.buildProtocol(address))
    assert [line for line in lines if "refusing" in line] == [
        "refusing SIP TLS connections: the per-address connection limit is reached (latest "
        "from 127.0.0.2; 1 refused since start; logged at most once a minute)"]
