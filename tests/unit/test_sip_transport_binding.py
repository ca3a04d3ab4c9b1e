"""Which sockets the SIP transports open, where outgoing connections go, and UDP send errors."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet import defer, ssl
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from sipxcc.sip.transport import SIPStreamProtocol, Target, TransportLayer


class Port:
    """A listening port that reports the port asked for (or 40000 for 0)."""

    def __init__(self, kind, port):
        self.kind, self.port, self.stopped = kind, port or 40000, False

    def getHost(self):
        return IPv4Address(self.kind, "127.0.0.1", self.port)

    def stopListening(self):
        self.stopped = True


class Reactor(MemoryReactorClock):
    """Records every listen call, with all its arguments."""

    def __init__(self):
        super().__init__()
        self.listened = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.listened.append(("UDP", port, interface, maxPacketSize, protocol))
        return Port("UDP", port)

    def listenTCP(self, port, factory, backlog=50, interface=""):
        self.listened.append(("TCP", port, interface, factory))
        return Port("TCP", port)

    def listenSSL(self, port, factory, context, backlog=50, interface=""):
        self.listened.append(("TLS", port, interface, factory, context))
        return Port("TLS", port)


def test_udp_and_tcp_listen_on_the_configured_address_and_port():
    reactor = Reactor()
    layer = TransportLayer(reactor, "192.0.2.10", 5070, ("UDP", "tcp"), max_size=4000)
    layer.start()
    (udp, udp_port, udp_if, size, proto), (tcp, tcp_port, tcp_if, factory) = reactor.listened
    assert (udp, udp_port, udp_if, size) == ("UDP", 5070, "192.0.2.10", 4000)
    assert proto is layer.udp
    assert (tcp, tcp_port, tcp_if) == ("TCP", 5070, "192.0.2.10")
    stream = factory.buildProtocol(None)
    assert isinstance(stream, SIPStreamProtocol) and stream.transport_name == "TCP"
    assert stream.layer is layer
    assert layer.port == 5070 and len(layer.ports) == 2


def test_only_the_configured_transports_listen():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("tcp",))
    layer.start()
    assert [entry[0] for entry in reactor.listened] == ["TCP"]
    assert layer.udp is None
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("udp",))
    layer.start()
    assert [entry[0] for entry in reactor.listened] == ["UDP"]


@implementer(IOpenSSLServerConnectionCreator)
class ServerCreator:
    """Server TLS options that record each connection they are asked to create."""

    def __init__(self):
        self.options, self.used = ssl.CertificateOptions(), []

    def serverConnectionForTLS(self, protocol):
        self.used.append(protocol)
        return SSL.Connection(self.options.getContext(), None)


def test_tls_listens_on_the_next_port_with_the_context():
    # TLS is a TCP port wrapped in TLS, so that a connection over the limits is refused
    # before any TLS state is made
    reactor = Reactor()
    context = ServerCreator()
    layer = TransportLayer(reactor, "127.0.0.1", 5060, ("udp", "tcp", "tls"),
                           tls_context=context)
    layer.start()
    kind, port, interface, factory = reactor.listened[-1]
    assert (kind, port, interface) == ("TCP", 5061, "127.0.0.1")
    tls = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
    assert tls.wrappedProtocol.transport_name == "TLS"
    tls.makeConnection(StringTransport())
    assert context.used == [tls]  # the configured server options made its TLS connection
    assert layer.port == 5060 and len(layer.ports) == 3


def test_tls_without_a_context_does_not_listen():
    reactor = Reactor()
    TransportLayer(reactor, "127.0.0.1", 5060, ("udp", "tcp", "tls")).start()
    assert [entry[0] for entry in reactor.listened] == ["UDP", "TCP"]


def test_port_zero_uses_the_port_udp_was_given_for_tcp():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 0, ("udp", "tcp"))
    layer.start()
    assert [entry[1] for entry in reactor.listened] == [0, 40000]
    assert layer.port == 40000


def test_port_zero_gives_up_after_its_attempts():
    class AlwaysBusy(Reactor):
        def listenTCP(self, port, factory, backlog=50, interface=""):
            raise CannotListenError(interface, port, OSError(98, "in use"))

    reactor = AlwaysBusy()
    layer = TransportLayer(reactor, "127.0.0.1", 0, ("udp", "tcp"))
    with pytest.raises(CannotListenError):
        layer._start_on_any_port(attempts=3)
    assert len(reactor.listened) == 3  # three UDP ports tried, each let go
    assert layer.ports == [] and layer.port == 0


def test_a_taken_fixed_port_is_an_error_at_once():
    class Taken(Reactor):
        def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
            raise CannotListenError(interface, port, OSError(98, "in use"))

    with pytest.raises(CannotListenError):
        TransportLayer(Taken(), "127.0.0.1", 5060, ("udp", "tcp")).start()


def test_stop_closes_every_port_and_connection():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("udp", "tcp"))
    layer.start()
    ports = list(layer.ports)
    layer.send(b"x", Target("TCP", "127.0.0.1", 5080))
    proto = reactor.tcpClients[0][2].buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))
    proto.makeConnection(transport)
    done = []
    layer.stop().addCallback(done.append)
    assert done and all(port.stopped for port in ports) and layer.ports == []
    assert transport.disconnecting


def test_outgoing_tcp_and_tls_connect_to_the_target_with_a_timeout():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("tcp", "tls"))
    layer.send(b"one", Target("TCP", "192.0.2.1", 5080))
    [(host, port, factory, timeout, _)] = reactor.tcpClients
    assert (host, port, timeout) == ("192.0.2.1", 5080, 10)
    failed = []
    layer.send(b"two", Target("TLS", "192.0.2.1", 5081), failed.append)
    reactor.advance(0)
    # never TLS without options that verify the peer: the send fails
    assert reactor.sslClients == [] and len(failed) == 1
    layer.client_tls = creator = ssl.optionsForClientTLS("proxy.sipx.test")
    layer.send(b"two", Target("TLS", "192.0.2.1", 5081))
    [(host, port, factory, context, timeout, _)] = reactor.sslClients
    assert (host, port, timeout) == ("192.0.2.1", 5081, 10)
    assert context is creator
    assert set(layer.connections) == {("TCP", "192.0.2.1", 5080), ("TLS", "192.0.2.1", 5081)}
    proto = layer.connections[("TLS", "192.0.2.1", 5081)]
    assert (proto.transport_name, proto.peer) == ("TLS", ("192.0.2.1", 5081))


def test_a_resolved_name_is_cached_for_a_minute():
    reactor = Reactor()
    layer = TransportLayer(reactor, "127.0.0.1", 5070, ("tcp",))
    asked = []
    reactor.resolve = lambda host: (asked.append(host), defer.succeed("192.0.2.7"))[1]
    target = Target("TCP", "proxy.sipx.test", 5080)
    layer.send(b"one", target)
    reactor.advance(59.9)
    layer.send(b"two", target)
    assert asked == ["proxy.sipx.test"]
    reactor.advance(0.1)
    layer.send(b"three", target)
    assert asked == ["proxy.sipx.test"] * 2
    [(host, port, *_)] = reactor.tcpClients  # one connection to the address, reused
    assert (host, port) == ("192.0.2.7", 5080)
    assert layer.connections[("TCP", "192.0.2.7", 5080)].pending == [
        (b"one", None), (b"two", None), (b"three", None)]


class Socket:
    def __init__(self, error=None):
        self.error, self.sent = error, []

    def sendto(self, data, addr):
        if self.error is not None:
            raise self.error
        self.sent.append((data, addr))


def udp_layer(socket):
    from twisted.internet.testing import FakeDatagramTransport

    from sipxcc.sip.transport import SIPDatagramProtocol

    layer = TransportLayer(MemoryReactorClock(), "127.0.0.1", 5070, ("udp",))
    layer.udp = SIPDatagramProtocol(layer)
    transport = FakeDatagramTransport()
    transport.socket = socket
    layer.udp.makeConnection(transport)
    return layer


def test_udp_goes_out_of_the_socket_to_the_target():
    socket = Socket()
    udp_layer(socket).send(b"data", Target("UDP", "192.0.2.1", 5080))
    assert socket.sent == [(b"data", ("192.0.2.1", 5080))]


def test_a_full_udp_buffer_drops_the_datagram_silently():
    errors = []
    udp_layer(Socket(BlockingIOError())).send(b"data", Target("UDP", "192.0.2.1", 5080),
                                              errors.append)
    assert errors == []


def test_a_udp_send_error_goes_to_the_sender():
    errors = []
    error = OSError(101, "Network is unreachable")
    udp_layer(Socket(error)).send(b"data", Target("UDP", "192.0.2.1", 5080), errors.append)
    assert errors == [error]
    udp_layer(Socket(error)).send(b"data", Target("UDP", "192.0.2.1", 5080))  # no one to tell


def test_udp_without_a_socket_is_an_error_for_the_sender():
    layer = TransportLayer(MemoryReactorClock(), "127.0.0.1", 5070, ("tcp",))
    errors = []
    layer.send(b"data", Target("UDP", "192.0.2.1", 5080), errors.append)
    assert len(errors) == 1 and "no UDP transport" in str(errors[0])
    layer.send(b"data", Target("UDP", "192.0.2.1", 5080))
