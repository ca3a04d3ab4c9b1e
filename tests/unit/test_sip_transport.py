"""SIP over TCP (RFC 3261 §18): framing, answers on the same connection, reuse, idle close."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sipxcc.sip.framing import StreamParser
from sipxcc.sip.transport import SIPStreamProtocol, Target, TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent

OPTIONS = (b"OPTIONS sip:callcontroller@127.0.0.1:6050 SIP/2.0\r\n"
           b"Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK%d\r\n"
           b"Max-Forwards: 70\r\nFrom: <sip:a@sipx.test>;tag=1\r\nTo: <sip:b@sipx.test>\r\n"
           b"Call-ID: c%d\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n")


def setup():
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",), idle_timeout=60)
    UserAgent(reactor, layer, UASettings("sip:127.0.0.1:5080;lr;transport=tcp", "127.0.0.1",
                                         6050))
    proto = SIPStreamProtocol(layer, "TCP")
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(transport)
    return reactor, layer, proto, transport


def responses(transport: StringTransport) -> list:
    found = []
    parser = StreamParser(found.append, on_invalid=lambda e: found.append(e.partial))
    parser.feed(transport.value())
    transport.clear()
    return found


def test_compact_content_length_frames_messages_fed_byte_by_byte():
    reactor, layer, proto, transport = setup()
    data = (OPTIONS % (1, 1)) + b"\r\n\r\n" + (OPTIONS % (2, 2))
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    answers = responses(transport)
    assert [(a.status, a.call_id) for a in answers] == [(200, "c1"), (200, "c2")]
    assert not transport.disconnecting


def test_invalid_but_framed_message_gets_400_and_the_connection_stays():
    reactor, layer, proto, transport = setup()
    bad = (OPTIONS % (3, 3)).replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS")
    proto.dataReceived(bad + OPTIONS % (4, 4))
    data = transport.value()
    assert data.startswith(b"SIP/2.0 400 ") and b"SIP/2.0 200 OK" in data
    assert not transport.disconnecting


def test_garbage_closes_the_connection():
    reactor, layer, proto, transport = setup()
    proto.dataReceived(b"\x16\x03\x01 this is not SIP\r\n\r\n")
    assert transport.disconnecting


def test_idle_connection_is_closed():
    reactor, layer, proto, transport = setup()
    reactor.advance(59)
    assert not transport.disconnecting
    proto.dataReceived(OPTIONS % (5, 5))
    reactor.advance(59)
    assert not transport.disconnecting
    reactor.advance(1)
    assert transport.disconnecting


def test_outgoing_connection_is_reused_and_queued_until_connected():
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",))
    target = Target("TCP", "127.0.0.1", 5080)
    layer.send(b"one", target)
    layer.send(b"two", target)
    assert len(reactor.tcpClients) == 1
    host, port, factory, timeout, _ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 5080)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))
    proto.makeConnection(transport)
    assert transport.value() == b"onetwo"
    layer.send(b"three", target)
    assert transport.value() == b"onetwothree" and len(reactor.tcpClients) == 1


def test_failed_connection_is_reported_to_the_sender():
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",))
    errors = []
    layer.send(b"one", Target("TCP", "127.0.0.1", 5080), errors.append)
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert len(errors) == 1 and not layer.connections


def test_a_closed_connection_fails_the_pending_transactions():
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",))
    ua = UserAgent(reactor, layer, UASettings("sip:127.0.0.1:5080;lr;transport=tcp",
                                              "127.0.0.1", 6050))
    request = ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                             "<sip:user1@sipx.test>")
    outgoing = ua.invite(request)
    failures = []
    outgoing.deferred.addErrback(failures.append)
    proto = reactor.tcpClients[0][2].buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5080))
    proto.makeConnection(transport)
    proto.connectionLost(Failure(ConnectionRefusedError()))
    assert failures and failures[0].value.status == 503
    assert not ua.transactions.clients


def test_a_proxy_host_name_is_resolved_once_and_cached():
    from twisted.internet import defer

    from tests.unit.sipfakes import FakeNetwork

    net = FakeNetwork(proxy="sip:proxy.sipx.test;lr")
    asked = []
    net.clock.resolve = lambda host: (asked.append(host), defer.succeed("127.0.0.7"))[1]
    for _ in range(2):
        request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                     "<sip:user1@sipx.test>")
        net.ua.send(request, net.ua.proxy_target)
    assert [addr for _, addr in net.sent()] == [("127.0.0.7", 5060)] * 2
    assert asked == ["proxy.sipx.test"]


def test_an_unresolvable_host_fails_the_request():
    from twisted.internet import defer

    from tests.unit.sipfakes import FakeNetwork

    net = FakeNetwork(proxy="sip:nowhere.invalid;lr")
    net.clock.resolve = lambda host: defer.fail(OSError("no such host"))
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    failures = []
    net.ua.send(request, net.ua.proxy_target).deferred.addErrback(failures.append)
    assert failures and failures[0].value.status == 503


def test_port_zero_retries_until_udp_and_tcp_share_a_port():
    from twisted.internet.error import CannotListenError

    class Listening:
        def __init__(self, port):
            self.port, self.stopped = port, False

        def getHost(self):
            return IPv4Address("UDP", "127.0.0.1", self.port)

        def stopListening(self):
            self.stopped = True

    class Busy(MemoryReactorClock):
        """UDP gets 40000, then 40001; TCP finds 40000 taken."""

        udp = [Listening(40000), Listening(40001)]

        def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
            return self.udp.pop(0)

        def listenTCP(self, port, factory, backlog=50, interface=""):
            if port == 40000:
                raise CannotListenError(interface, port, OSError(98, "in use"))
            return super().listenTCP(port, factory, backlog, interface)

    reactor = Busy()
    first, second = reactor.udp
    layer = TransportLayer(reactor, "127.0.0.1", 0, ("udp", "tcp"))
    layer.start()
    assert layer.port == 40001 and len(layer.ports) == 2
    assert first.stopped and not second.stopped
