"""
Limits on SIP over TCP/TLS, on a Clock: connection caps (total, per address, the proxy's
reserved share), the deadline for a complete message, the head limit, the abort of a
connection that does not take its last bytes; and that responses go to where a request
really came from, whatever its Via claims (RFC 3261 §18.2.1/§18.2.2, RFC 3581 §4).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from sipxcc.sip.framing import MAX_HEAD, StreamParser, parse_datagram
from sipxcc.sip.limits import ConnectionLimits, client_key
from sipxcc.sip.message import SIPParseError
from sipxcc.sip.transport import (
    ABORT_GRACE,
    MESSAGE_DEADLINE,
    Source,
    Target,
    TransportLayer,
    _StreamFactory,
    _TLSStreamFactory,
)
from sipxcc.sip.useragent import UASettings, UserAgent
from tests.unit.sipfakes import FakeNetwork
from tests.unit.test_sip_transactions import incoming

PROXY = "127.0.0.5"


def options(n: int, pad: int = 0) -> bytes:
    return (b"OPTIONS sip:callcontroller@127.0.0.1:6050 SIP/2.0\r\n"
            b"Via: SIP/2.0/TCP 127.0.0.2:40000;branch=z9hG4bK%d\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:a@sipx.test>;tag=1\r\nTo: <sip:b@sipx.test>\r\n"
            b"Call-ID: c%d\r\nCSeq: 1 OPTIONS\r\n" % (n, n)
            + (b"X-Pad: " + b"p" * (pad - 9) + b"\r\n" if pad else b"")
            + b"Content-Length: 0\r\n\r\n")


def head_length(message: bytes) -> int:
    return message.index(b"\r\n\r\n")


def stack(**limits):
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",), **limits)
    UserAgent(reactor, layer, UASettings(f"sip:{PROXY}:5080;lr;transport=tcp", "127.0.0.1",
                                         6050))
    return reactor, layer


def accept(layer, host: str = "127.0.0.2", port: int = 40000, factory=None):
    """What the listening port does for a new connection: (protocol, transport) or None."""
    address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
    proto = (factory or _StreamFactory(layer, "TCP")).buildProtocol(address)
    if proto is None:
        return None
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    return proto, transport


def answers(transport: StringTransport) -> list[int]:
    found = []
    StreamParser(found.append).feed(transport.value())
    transport.clear()
    return [response.status for response in found]


# The deadline for a complete message


def test_a_head_dribbled_a_byte_a_second_is_closed_at_the_deadline_from_its_first_byte():
    reactor, layer = stack()
    proto, transport = accept(layer)
    proto.dataReceived(options(1))  # the first message: no deadline is running now
    assert answers(transport) == [200]
    reactor.advance(100)
    slow = options(2)
    start = reactor.seconds()
    for byte in range(int(MESSAGE_DEADLINE)):  # one byte a second: each one "traffic"
        proto.dataReceived(slow[byte:byte + 1])
        reactor.advance(1 if byte < MESSAGE_DEADLINE - 1 else 0.999)
    assert reactor.seconds() - start < MESSAGE_DEADLINE and not transport.disconnecting
    reactor.advance(0.001)
    assert transport.disconnecting and layer.deadline_closed == 1


def test_the_first_message_is_due_within_the_deadline_of_connecting():
    reactor, layer = stack()
    proto, transport = accept(layer)
    reactor.advance(MESSAGE_DEADLINE - 0.001)
    assert not transport.disconnecting
    reactor.advance(0.001)
    assert transport.disconnecting


def test_a_message_completed_before_the_deadline_stops_it_and_the_next_gets_its_own():
    reactor, layer = stack()
    proto, transport = accept(layer)
    first, second = options(1), options(2)
    proto.dataReceived(first[:10])
    reactor.advance(MESSAGE_DEADLINE - 1)
    proto.dataReceived(first[10:] + second[:10])  # completes one, starts the next
    assert answers(transport) == [200]
    reactor.advance(MESSAGE_DEADLINE - 0.001)
    assert not transport.disconnecting
    proto.dataReceived(second[10:])
    reactor.advance(MESSAGE_DEADLINE * 10)  # idle, between messages: no deadline runs
    assert answers(transport) == [200] and not transport.disconnecting


def test_keep_alive_crlfs_between_messages_start_no_deadline():
    reactor, layer = stack()
    proto, transport = accept(layer)
    proto.dataReceived(options(1))
    for _ in range(30):
        proto.dataReceived(b"\r\n\r\n")
        reactor.advance(MESSAGE_DEADLINE / 2)
    assert not transport.disconnecting


def test_a_slow_body_counts_against_the_same_deadline():
    reactor, layer = stack()
    proto, transport = accept(layer)
    proto.dataReceived(options(1))
    message = options(2).replace(b"Content-Length: 0", b"Content-Length: 100")
    proto.dataReceived(message)
    reactor.advance(MESSAGE_DEADLINE - 0.001)
    proto.dataReceived(b"x" * 99)
    assert not transport.disconnecting
    reactor.advance(0.001)
    assert transport.disconnecting


def test_an_idle_connection_is_closed_after_the_idle_timeout_and_aborted_if_stuck():
    reactor, layer = stack(idle_timeout=60)
    proto, transport = accept(layer)
    proto.dataReceived(options(1))
    reactor.advance(59.999)
    assert not transport.disconnecting
    reactor.advance(0.001)
    assert transport.disconnecting and not transport.disconnected
    reactor.advance(ABORT_GRACE)  # the peer takes nothing: the close is forced
    assert transport.disconnected


def test_an_outgoing_connection_has_no_deadline_before_the_peer_sends():
    reactor, layer = stack()
    layer.send(b"x", Target("TCP", PROXY, 5080))
    proto = reactor.tcpClients[0][2].buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", PROXY, 5080))
    proto.makeConnection(transport)
    reactor.advance(MESSAGE_DEADLINE * 5)
    assert not transport.disconnecting
    proto.dataReceived(b"SIP/2.0 2")
    reactor.advance(MESSAGE_DEADLINE)
    assert transport.disconnecting


def test_while_the_peer_does_not_take_our_answers_nothing_more_is_read_from_it():
    reactor, layer = stack()
    proto, transport = accept(layer)
    assert transport.producer is proto and transport.streaming
    proto.pauseProducing()  # what the transport does when its write buffer is full
    assert transport.producerState == "paused"
    proto.resumeProducing()  # ... and when it has drained
    assert transport.producerState == "producing"
    proto.pauseProducing()
    reactor.advance(MESSAGE_DEADLINE)  # closed: the producer goes, reading stays off
    assert transport.disconnecting and transport.producer is None
    proto.resumeProducing()
    assert transport.producerState == "paused"


# The head limit


def test_a_head_of_the_limit_is_taken_and_one_byte_more_closes_the_connection():
    reactor, layer = stack()
    at_limit = options(1, pad=MAX_HEAD - head_length(options(1)))
    assert head_length(at_limit) == MAX_HEAD
    proto, transport = accept(layer)
    proto.dataReceived(at_limit)
    assert answers(transport) == [200] and not transport.disconnecting
    over = options(2, pad=MAX_HEAD + 1 - head_length(options(2)))
    proto.dataReceived(over)
    assert transport.disconnecting and layer.dropped == 1


def test_an_unfinished_head_over_the_limit_closes_the_connection_without_waiting():
    reactor, layer = stack()
    proto, transport = accept(layer)
    proto.dataReceived(options(1)[:-4] + b"\r\nX-Pad: ")
    assert not transport.disconnecting
    proto.dataReceived(b"p" * MAX_HEAD)
    assert transport.disconnecting


def test_the_rfc_4475_long_request_is_over_the_stream_head_limit_but_fine_as_a_datagram():
    from tests.unit.test_sip_torture import LONGREQ
    assert head_length(LONGREQ) > MAX_HEAD
    assert parse_datagram(LONGREQ).method == "INVITE"
    parser = StreamParser(lambda message: None)
    try:
        parser.feed(LONGREQ)
    except SIPParseError as error:
        assert "head larger than 16384" in str(error)
    else:
        raise AssertionError("a 34 KB head was taken on a stream")


def test_a_stream_refused_for_its_head_is_freed_without_the_garbage_collector():
    """400 connections each sending 64 KB of head used to keep 26 MB until a collection."""
    import gc
    import weakref
    gc.disable()
    try:
        parser = StreamParser(lambda message: None)
        alive = weakref.ref(parser)
        try:
            parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX-Pad: " + b"p" * 65000)
        except SIPParseError:
            pass
        del parser
        assert alive() is None
    finally:
        gc.enable()


# Connection caps


def test_connections_beyond_the_per_host_cap_are_refused_and_a_closed_one_frees_its_slot():
    reactor, layer = stack(max_connections_per_host=3)
    held = [accept(layer, port=40000 + n) for n in range(3)]
    assert all(held)
    assert accept(layer, port=40010) is None
    assert accept(layer, "127.0.0.3") is not None  # another address is still served
    proto, _ = held[0]
    proto.connectionLost(Failure(ConnectionError()))
    assert accept(layer, port=40011) is not None
    assert layer.limits.refused == 1


def test_the_total_cap_keeps_a_share_for_the_proxy_which_has_no_per_host_cap():
    reactor, layer = stack(max_connections=10, max_connections_per_host=3)
    # others share 10 - 3: 7 connections from three addresses, the 8th is refused
    for n in range(7):
        assert accept(layer, f"127.0.0.{10 + n // 3}", 40000 + n) is not None
    assert accept(layer, "127.0.0.20") is None
    # the proxy gets the rest, beyond the per-host cap, up to the total
    for n in range(3):
        assert accept(layer, PROXY, 41000 + n) is not None
    assert accept(layer, PROXY, 41010) is None
    assert layer.limits.open == 10 and layer.limits.refused == 2


def test_the_proxy_may_use_the_whole_total():
    reactor, layer = stack(max_connections=10, max_connections_per_host=3)
    for n in range(10):
        assert accept(layer, PROXY, 41000 + n) is not None
    assert accept(layer, PROXY, 41010) is None and accept(layer, "127.0.0.2") is None


def test_a_proxy_host_name_is_exempt_once_resolved():
    from twisted.internet import defer
    reactor = MemoryReactorClock()
    reactor.resolve = lambda host: defer.succeed("127.0.0.7")
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("tcp",), max_connections_per_host=1)
    UserAgent(reactor, layer, UASettings("sip:proxy.sipx.test:5080;lr;transport=tcp",
                                         "127.0.0.1", 6050))
    assert accept(layer, "127.0.0.7", 1) is not None and accept(layer, "127.0.0.7", 2) is None
    layer.send(b"x", Target("TCP", "proxy.sipx.test", 5080))
    assert accept(layer, "127.0.0.7", 3) is not None


def test_the_addresses_taken_for_the_proxy_are_bounded():
    from sipxcc.sip.limits import MAX_PROXY_ADDRESSES
    limits = ConnectionLimits(MemoryReactorClock())
    for n in range(MAX_PROXY_ADDRESSES + 10):
        limits.add_proxy(f"192.0.2.{n}")
    assert len(limits.proxies) == MAX_PROXY_ADDRESSES
    assert limits.is_proxy("192.0.2.0") and not limits.is_proxy(f"192.0.2.{MAX_PROXY_ADDRESSES}")


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4():
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    limits = ConnectionLimits(MemoryReactorClock(), total=100, per_host=2)
    assert limits.admit("2001:db8:1:2::1") and limits.admit("2001:db8:1:2:ffff::9")
    assert limits.admit("2001:db8:1:2::77") is None
    assert limits.admit("2001:db8:1:3::1") is not None


def test_refusals_are_counted_and_logged_at_most_once_an_interval():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = MemoryReactorClock()
        limits = ConnectionLimits(clock, total=1, per_host=1, log_interval=60)
        assert limits.admit("127.0.0.2") is not None
        for _ in range(100):
            assert limits.admit("127.0.0.3") is None
        clock.advance(59)
        limits.admit("127.0.0.3")
        logged = [e for e in events if "refusing SIP" in e.get("log_format", "")]
        assert len(logged) == 1 and limits.refused == 101
        clock.advance(1)
        limits.admit("127.0.0.3")
        logged = [e for e in events if "refusing SIP" in e.get("log_format", "")]
        assert len(logged) == 2 and logged[-1]["count"] == 102
    finally:
        globalLogPublisher.removeObserver(events.append)


def test_a_refused_tls_connection_gets_no_tls_state_at_all():
    reactor, layer = stack(max_connections_per_host=1)
    from twisted.internet import ssl
    factory = _TLSStreamFactory(ssl.CertificateOptions(), False, _StreamFactory(layer, "TLS"))
    address = IPv4Address("TCP", "127.0.0.2", 40000)
    assert factory.buildProtocol(address) is not None
    assert factory.buildProtocol(address) is None


def test_outgoing_connections_do_not_count_against_the_incoming_caps():
    reactor, layer = stack(max_connections_per_host=1)
    for port in range(5081, 5084):
        layer.send(b"x", Target("TCP", "127.0.0.2", port))
    for _, _, factory, _, _ in reactor.tcpClients:
        factory.buildProtocol(None).makeConnection(
            StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.2", 5081)))
    assert layer.limits.open == 0
    assert accept(layer) is not None


# Where responses go


def test_a_request_claiming_another_received_and_rport_is_answered_at_its_real_source():
    net = FakeNetwork()
    request = incoming("OPTIONS")
    request.headers.set("Via", "SIP/2.0/UDP 127.0.0.9:5071;branch=z9hG4bKlie;"
                        "received=203.0.113.9;rport=9")
    net.deliver(request, ("127.0.0.9", 40000))
    [(ok, addr)] = net.sent()
    assert addr == ("127.0.0.9", 40000)
    assert (ok.top_via.received, ok.top_via.rport) == ("127.0.0.9", 40000)


def test_without_rport_the_answer_goes_to_the_source_address_at_the_sent_by_port():
    net = FakeNetwork()
    request = incoming("OPTIONS")
    request.headers.set("Via", "SIP/2.0/UDP 127.0.0.9:5071;branch=z9hG4bKx;"
                        "received=203.0.113.9")
    net.deliver(request, ("127.0.0.9", 40000))
    [(ok, addr)] = net.sent()
    assert addr == ("127.0.0.9", 5071) and ok.top_via.received == "127.0.0.9"


def test_a_400_to_a_malformed_request_also_goes_to_its_real_source():
    net = FakeNetwork()
    request = incoming("OPTIONS")
    request.headers.set("Via", "SIP/2.0/UDP 127.0.0.9:5071;branch=z9hG4bKx;"
                        "received=203.0.113.9;rport=9")
    request.headers.set("Max-Forwards", "x")
    net.deliver(request, ("127.0.0.9", 40000))
    [(data, addr)] = net.socket.written
    assert data.startswith(b"SIP/2.0 400 ") and addr == ("127.0.0.9", 40000)


def test_a_stream_response_whose_connection_closed_goes_to_the_source_at_the_sent_by_port():
    reactor, layer = stack()
    proto, transport = accept(layer, "127.0.0.2", 40000)
    request = incoming("OPTIONS")
    request.headers.set("Via", "SIP/2.0/TCP 127.0.0.2:5071;branch=z9hG4bKx;"
                        "received=203.0.113.9;rport=9")
    source = Source("TCP", "127.0.0.2", 40000, proto)
    proto.connectionLost(Failure(ConnectionError()))
    proto.transport = None
    layer.on_message(request, source)
    [(host, port, *_)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.2", 5071)
