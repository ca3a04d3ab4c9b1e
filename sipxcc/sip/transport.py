"""
SIP transports (RFC 3261 §18): one UDP socket and a TCP listener on the same address
and port, outgoing TCP connections reused per peer and closed when idle.

Incoming TCP/TLS connections are capped (L{sipxcc.sip.limits}); on every stream a message
must be complete within L{MESSAGE_DEADLINE} seconds of its first byte (an incoming
connection's first message: of the connection opening), its head is at most
L{sipxcc.sip.framing.MAX_HEAD} bytes, and a connection without traffic for
C{idle_timeout} seconds is closed.

The layer above sees only C{on_message(message, source)} and C{send(data, target)}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, cast

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ConnectError, ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IPushProducer,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from sipxcc.hosts import is_ip
from sipxcc.logs import logger
from sipxcc.sip.framing import MAX_HEAD, StreamParser, parse_datagram
from sipxcc.sip.limits import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST, ConnectionLimits
from sipxcc.sip.message import MAX_MESSAGE, Request, Response, SIPParseError
from sipxcc.sip.stats import NO_STATS, SipStats

log = logger(__name__)

Message = Request | Response

ErrorCallback = Callable[[BaseException], object]
"""Told why a message could not be sent (a refused connection, a socket error)."""


class _StreamTransport(Protocol):
    """What a connected TCP or TLS transport offers us: Twisted's ITCPTransport, IConsumer
    and IPushProducer together (tcp.Connection and TLSMemoryBIOProtocol both are)."""

    def write(self, data: bytes) -> None: ...
    def getPeer(self) -> Any: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...

UDP_MTU_LIMIT = 1300  # RFC 3261 §18.1.1: larger requests go over a congestion-controlled transport

MESSAGE_DEADLINE = 10.0
"""Seconds from a message's first byte on a stream until its head and body are complete;
an incoming connection's first message must be complete this long after it opened."""

IDLE_TIMEOUT = 300.0
"""Seconds a TCP/TLS connection without traffic is kept open."""

ABORT_GRACE = 2.0
"""Seconds a connection we close may take to flush before it is aborted."""


def refused(reason: object) -> bool:
    """Whether a send failed because the peer refused the connection (a TCP reset): a
    C{Failure} or the exception itself, as L{TransportLayer.send}'s C{on_error} gets it."""
    return isinstance(getattr(reason, "value", reason), ConnectionRefusedError)


class Target(NamedTuple):
    """Where a message goes: C{transport} is C{"UDP"}, C{"TCP"} or C{"TLS"}."""

    transport: str
    host: str
    port: int


class Source(NamedTuple):
    """Where a message came from; C{connection} is the stream it arrived on, if any."""

    transport: str
    host: str
    port: int
    connection: object | None


class SIPDatagramProtocol(protocol.DatagramProtocol):
    """Frames one SIP message per datagram (RFC 3261 §18.3)."""

    def __init__(self, layer: TransportLayer):
        self.layer = layer

    def startProtocol(self) -> None:
        # the socket itself where there is one: udp.Port.write re-validates every address
        transport = self.transport
        assert transport is not None  # startProtocol follows the transport being set
        sock = getattr(transport, "socket", None)
        self.sendto: Callable[[bytes, tuple[str, int]], object] = (
            sock.sendto if sock is not None else transport.write)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if data.strip(b"\r\n") == b"":
            return  # RFC 5626 keep-alive
        source = Source("UDP", addr[0], addr[1], None)
        try:
            message = parse_datagram(data, self.layer.max_size)
        except SIPParseError as e:
            self.layer.parse_failed(e, source)
            return
        self.layer.deliver(message, source)


@implementer(IPushProducer)
class SIPStreamProtocol(protocol.Protocol):
    """
    Frames SIP messages on a TCP or TLS stream by Content-Length (RFC 3261 §18.3).

    It is the producer of what it writes: while the peer does not take our answers and the
    transport's buffer is full, nothing more is read from it, so its requests cannot pile
    up answers in our memory.
    """

    flow_control_from_start = True
    """Whether L{connectionMade} registers us as the producer (see L{_TLSClientProtocol})."""

    admitted: tuple[str, bool] | None = None
    """The L{ConnectionLimits} token of an incoming connection, None for an outgoing one."""

    def __init__(self, layer: TransportLayer, transport_name: str):
        self.layer = layer
        self.transport_name = transport_name
        self.peer: tuple[str, int] | None = None
        self.idle: IDelayedCall | None = None
        self.deadline: IDelayedCall | None = None
        self.abort: IDelayedCall | None = None
        self.pending: list[tuple[bytes, ErrorCallback | None]] = []
        self.connected_ok = False
        self.parser = StreamParser(self._message, layer.max_size, on_invalid=self._invalid,
                                   on_ping=self._pong, max_head=layer.max_head)

    @property
    def stream(self) -> _StreamTransport:
        """The connected transport (only used between connectionMade and connectionLost)."""
        transport = self.transport
        assert transport is not None, "not connected"
        # the reactor connects us to a tcp.Connection or a TLSMemoryBIOProtocol only: both
        # are consumers and push producers as well as transports
        return cast(_StreamTransport, transport)

    def connectionMade(self) -> None:
        peer = self.stream.getPeer()
        self.peer = (peer.host, peer.port)
        self.connected_ok = True
        self.layer.connection_made(self)
        for data, _ in self.pending:
            self.stream.write(data)
        self.pending = []
        if self.flow_control_from_start:
            self.stream.registerProducer(self, True)
        self.touch()
        if self.admitted is not None:  # incoming: the first message is due from now on
            self._start_deadline()

    def touch(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.reset(self.layer.idle_timeout)
        else:
            self.idle = self.layer.reactor.callLater(self.layer.idle_timeout, self._idle_close)

    def _idle_close(self) -> None:
        self.idle = None
        self._close()

    def _start_deadline(self) -> None:
        self.deadline = self.layer.reactor.callLater(self.layer.message_deadline,
                                                     self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None

    def _deadline_passed(self) -> None:
        self.deadline = None
        self.layer.deadline_closed += 1
        host, port = self.peer or ("", 0)
        log.debug("closing a SIP {transport} connection from {host}:{port}: no complete "
                  "message within {seconds} s", transport=self.transport_name, host=host,
                  port=port, seconds=self.layer.message_deadline)
        self._close()

    def _close(self) -> None:
        """Close now; abort if what is still queued is not taken within L{ABORT_GRACE}."""
        if self.abort is None:
            self.abort = self.layer.reactor.callLater(ABORT_GRACE, self._abort)
        self.stream.unregisterProducer()
        self.stream.loseConnection()

    # IPushProducer: the transport's write buffer is full, or has drained

    def pauseProducing(self) -> None:
        self.stream.pauseProducing()  # read no more from the peer

    def resumeProducing(self) -> None:
        if self.abort is None:
            self.stream.resumeProducing()

    def stopProducing(self) -> None:
        pass  # connectionLost follows

    def _abort(self) -> None:
        self.abort = None
        self.stream.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.abort is not None:
            return  # closing: read nothing more
        self.touch()
        parser = self.parser
        completed = parser.completed
        try:
            parser.feed(data)
        except SIPParseError as e:
            self._cancel_deadline()
            self.layer.parse_failed(e, self._source())
            self._close()  # framing is lost for good on this stream
            return
        # the deadline runs from a message's first byte until it is complete, never restarted
        # by more bytes of the same message
        if parser.completed != completed:
            self._cancel_deadline()
        if self.deadline is None and parser.in_message:
            self._start_deadline()

    def _invalid(self, error: SIPParseError) -> None:
        """A well-framed but invalid message: answer it (400) and keep the connection."""
        self.layer.parse_failed(error, self._source())

    def _pong(self) -> None:
        self.stream.write(b"\r\n")  # RFC 5626 §4.4.1: CRLFCRLF ping gets a CRLF pong

    def _source(self) -> Source:
        host, port = self.peer or ("", 0)
        return Source(self.transport_name, host, port, self)

    def _message(self, message: Message) -> None:
        self.layer.deliver(message, self._source())

    def send(self, data: bytes, on_error: ErrorCallback | None = None) -> None:
        if self.connected_ok:
            self.stream.write(data)
            self.touch()
        else:
            self.pending.append((data, on_error))

    def connect_failed(self, reason: Failure) -> None:
        pending, self.pending = self.pending, []
        for _, on_error in pending:
            if on_error is not None:
                on_error(reason)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected_ok = False  # Twisted leaves us the dead transport: send no more on it
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None
        self._cancel_deadline()
        if self.abort is not None and self.abort.active():
            self.abort.cancel()
        if self.admitted is not None:
            admitted, self.admitted = self.admitted, None
            self.layer.limits.release(admitted)
        self.layer.connection_lost(self)


class _StreamFactory(protocol.Factory):
    """Incoming TCP or TLS connections: admitted within the limits, or closed at once."""

    def __init__(self, layer: TransportLayer, transport_name: str):
        self.layer = layer
        self.transport_name = transport_name

    def buildProtocol(self, addr: IAddress | None) -> SIPStreamProtocol | None:
        host = getattr(addr, "host", None) or ""
        admitted = self.layer.limits.admit(host, self.transport_name)
        if admitted is None:
            return None  # the listening port closes the socket
        proto = SIPStreamProtocol(self.layer, self.transport_name)
        proto.admitted = admitted
        return proto


class _TLSStreamFactory(TLSMemoryBIOFactory):
    """TLS around L{_StreamFactory}: a refused connection is closed before any handshake."""

    # WrappingFactory promises a protocol, Factory allows None: None refuses the connection
    def buildProtocol(  # type: ignore[override]
            self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


class _OutgoingFactory(protocol.ClientFactory):
    def __init__(self, proto: SIPStreamProtocol):
        self.proto = proto

    def buildProtocol(self, addr: IAddress | None) -> SIPStreamProtocol:
        return self.proto

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        # out of the pool first (a sender told of the failure may send to the peer again),
        # then each sender waiting on it learns why, before anything else hears it is lost
        self.proto.layer.forget_connection(self.proto)
        self.proto.connect_failed(reason)
        self.proto.layer.connection_lost(self.proto)


class TransportLayer:
    """
    The UDP, TCP (and TLS) transports of one SIP address. Received messages go to
    C{on_message(message, source)}; unparseable ones to C{on_bad_message(error, source)}.
    """

    def __init__(self, reactor: Any, address: str, port: int,
                 transports: tuple[str, ...] | list[str] = ("udp", "tcp"),
                 on_message: Callable[[Message, Source], object] | None = None,
                 on_bad_message: Callable[[SIPParseError, Source], object] | None = None,
                 tls_context: Any = None,
                 idle_timeout: float = IDLE_TIMEOUT, max_size: int = MAX_MESSAGE,
                 max_connections: int = MAX_CONNECTIONS,
                 max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST,
                 message_deadline: float = MESSAGE_DEADLINE, max_head: int = MAX_HEAD):
        self.reactor = reactor
        self.address = address
        self.port = port
        self.transports = tuple(t.lower() for t in transports)
        self.on_message = on_message
        self.on_bad_message = on_bad_message
        self.tls_context = tls_context
        self.idle_timeout = idle_timeout
        self.max_size = max_size
        self.max_head = max_head
        self.message_deadline = message_deadline
        self.limits = ConnectionLimits(reactor, max_connections, max_connections_per_host)
        self.deadline_closed = 0
        self.connections: dict[tuple[str, str, int], SIPStreamProtocol] = {}
        self.resolved: dict[str, tuple[str, float]] = {}
        self.ports: list[IListeningPort] = []
        self.udp: SIPDatagramProtocol | None = None
        self.dropped = 0
        self.on_connection_lost: Callable[[Target], None] | None = None
        self.proxy_host: str | None = None
        self.stats: SipStats = NO_STATS  # counts what is sent and received

    def set_proxy(self, host: str) -> None:
        """The proxy's host: its connections are exempt from the per-address cap (a name
        counts once it has been resolved)."""
        self.proxy_host = host
        self.limits.add_proxy(host)

    def start(self) -> None:
        """Bind every configured transport; raises CannotListenError when a port is taken."""
        if self.port == 0:
            self._start_on_any_port()
            return
        self._bind(self.port)

    def _start_on_any_port(self, attempts: int = 20) -> None:
        """Port 0 (tests): UDP picks a port, which TCP (and TLS) must then share."""
        for attempt in range(attempts):
            try:
                self._bind(0)
                return
            except CannotListenError:
                for port in self.ports:
                    port.stopListening()
                self.ports, self.port = [], 0
                if attempt == attempts - 1:
                    raise

    def _bind(self, port: int) -> None:
        if "udp" in self.transports:
            self.udp = SIPDatagramProtocol(self)
            udp: IListeningPort = self.reactor.listenUDP(port, self.udp,
                                                         interface=self.address,
                                                         maxPacketSize=self.max_size)
            self.ports.append(udp)
            port = udp.getHost().port  # type: ignore[attr-defined]  # an IPv4/IPv6Address
        if "tcp" in self.transports:
            tcp: IListeningPort = self.reactor.listenTCP(port, _StreamFactory(self, "TCP"),
                                                         interface=self.address)
            self.ports.append(tcp)
            port = tcp.getHost().port  # type: ignore[attr-defined]  # an IPv4/IPv6Address
        self.port = port
        if "tls" in self.transports and self.tls_context is not None:
            # SIP over TLS on the next port, as 5061 follows 5060 (RFC 3261 §19.1.2)
            factory = _TLSStreamFactory(self.tls_context, False, _StreamFactory(self, "TLS"))
            self.ports.append(self.reactor.listenTCP(port + 1, factory, interface=self.address))

    def stop(self) -> Deferred[list[object]]:
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.loseConnection()
        from twisted.internet.defer import gatherResults, maybeDeferred
        ports, self.ports = self.ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])

    # Receiving

    def deliver(self, message: Message, source: Source) -> None:
        assert self.on_message is not None, "the user agent sets on_message before start()"
        self.stats.received(message)
        try:
            self.on_message(message, source)
        except SIPParseError as error:  # a header parsed lazily turned out malformed
            self.parse_failed(error, source)

    def parse_failed(self, error: SIPParseError, source: Source) -> None:
        self.dropped += 1
        if self.on_bad_message is not None:
            self.on_bad_message(error, source)

    def connection_made(self, proto: SIPStreamProtocol) -> None:
        assert proto.peer is not None  # set by connectionMade
        self.connections[(proto.transport_name, proto.peer[0], proto.peer[1])] = proto

    def forget_connection(self, proto: SIPStreamProtocol) -> None:
        """Take C{proto} out of the pool of outgoing connections, if it is there."""
        if proto.peer is not None:
            key = (proto.transport_name, proto.peer[0], proto.peer[1])
            if self.connections.get(key) is proto:
                del self.connections[key]

    def connection_lost(self, proto: SIPStreamProtocol) -> None:
        self.forget_connection(proto)
        if proto.peer is not None and self.on_connection_lost is not None:
            self.on_connection_lost(Target(proto.transport_name, *proto.peer))

    # Sending

    def send(self, data: bytes, target: Target, on_error: ErrorCallback | None = None,
             connection: object | None = None) -> None:
        """
        Send C{data} to C{target}; over C{connection} when given and still open (§18.2.2).
        Asynchronous failures (a TCP connection that cannot be made) go to C{on_error}.
        """
        self.stats.sent(data)
        if not is_ip(target.host):
            self._resolve_then_send(data, target, on_error, connection)
            return
        if target.transport == "UDP":
            if self.udp is None or self.udp.transport is None:
                if on_error is not None:
                    on_error(RuntimeError("no UDP transport"))
                return
            try:
                self.udp.sendto(data, (target.host, target.port))
            except BlockingIOError:
                pass  # a full socket buffer loses the datagram; retransmission covers it
            except OSError as e:
                if on_error is not None:
                    on_error(e)
            return
        if isinstance(connection, SIPStreamProtocol) and connection.transport is not None \
                and connection.connected_ok:
            connection.send(data, on_error)
            return
        key = (target.transport, target.host, target.port)
        proto = self.connections.get(key)
        if proto is None:
            proto = self._connect(target)
        proto.send(data, on_error)

    def _resolve_then_send(self, data: bytes, target: Target, on_error: ErrorCallback | None,
                           connection: object | None) -> None:
        """A host name (RFC 3263 reduced to an A/AAAA lookup), cached for a minute."""
        cached = self.resolved.get(target.host)
        now = self.reactor.seconds()
        if cached is not None and cached[1] > now:
            self.send(data, target._replace(host=cached[0]), on_error, connection)
            return

        def resolved(address: str) -> None:
            self.resolved[target.host] = (address, self.reactor.seconds() + 60)
            if target.host == self.proxy_host:
                self.limits.add_proxy(address)
            self.send(data, target._replace(host=address), on_error, connection)

        def failed(reason: Failure) -> None:
            if on_error is not None:
                on_error(reason.value or RuntimeError("name resolution failed"))
        self.reactor.resolve(target.host).addCallbacks(resolved, failed)

    def _connect(self, target: Target) -> SIPStreamProtocol:
        tls = target.transport == "TLS"
        proto = (_TLSClientProtocol if tls else SIPStreamProtocol)(self, target.transport)
        proto.peer = (target.host, target.port)
        self.connections[(target.transport, target.host, target.port)] = proto
        factory = _OutgoingFactory(proto)
        if tls:
            creator = self.tls_client_context()
            if creator is None:  # never TLS without verifying the peer: fail like a refusal
                log.error("no SIP over TLS to {host}:{port}: no client TLS options",
                          host=target.host, port=target.port)
                refused = ConnectError("no client TLS options")
                self.reactor.callLater(0, factory.clientConnectionFailed, None,
                                       Failure(refused))
                return proto
            self.reactor.connectSSL(target.host, target.port, factory, creator, timeout=10)
        else:
            self.reactor.connectTCP(target.host, target.port, factory, timeout=10)
        return proto

    #: the daemon's L{sipxcc.tls.client_options}: the proxy's certificate and name verified
    client_tls: Any = None

    def tls_client_context(self) -> Any:
        """Options for outgoing SIP over TLS; None means no outgoing TLS at all."""
        return self.client_tls


@implementer(IHandshakeListener)
class _TLSClientProtocol(SIPStreamProtocol):
    """An outgoing SIP-TLS stream. A handshake that fails (a certificate we do not trust,
    or one for another name) is logged once; the connection's loss then fails its
    requests like an unreachable proxy (RFC 3261 §18.4: 503). Nothing was sent on it:
    TLS holds what we write until the handshake has succeeded."""

    handshake_done = False
    # A write before the handshake makes TLS pause its producer until it has read the
    # server's reply; pausing would stop that very read. Flow control starts afterwards.
    flow_control_from_start = False

    def handshakeCompleted(self) -> None:
        self.handshake_done = True
        self.stream.registerProducer(self, True)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.handshake_done:
            value = getattr(reason, "value", reason)
            why = " ".join(str(value).split())[:300] or type(value).__name__
            host, port = self.peer or ("?", 0)
            log.error("SIP over TLS to {host}:{port}: handshake failed, nothing sent: {why}",
                      host=host, port=port, why=why)
        super().connectionLost(reason)
