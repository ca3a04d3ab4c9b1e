"""
Limits that keep the web listeners answering under abuse (SECURITY.md "Limits").

L{LimitedChannel} is the HTTP/1.1 channel every connection gets: a request's head and
body must arrive within L{REQUEST_DEADLINE} seconds of its first byte (and the first one
within that time of the connection opening, which also ends half-open TLS handshakes);
bodies larger than L{MAX_BODY} get 413; the head is bounded by Twisted's own
C{totalHeadersSize}/C{maxHeaders} (400), a request line longer than C{MAX_LENGTH} gets
414 and a header line 431. L{ConnectionLimits} caps open connections in
total and per client (an IPv4 address, or an IPv6 /64), and keeps L{TRUSTED_RESERVE} of
the total for the trusted hosts (C{http.trusted}), which untrusted clients cannot take; a
connection beyond a cap is answered 503 and closed. A keep-alive connection serves at
most L{MAX_REQUESTS_PER_CONNECTION} requests and is not kept alive beyond
L{MAX_CONNECTION_LIFETIME} seconds: the response that reaches either carries
C{Connection: close}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, ITransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

from sipxcc.hosts import client_key
from sipxcc.timers import TimerHandle
from sipxcc.web import render

log = Logger()

MAX_CONNECTIONS = 1000
"""Open HTTP(S) connections at once, all clients together."""

MAX_CONNECTIONS_PER_HOST = 100
"""Open HTTP(S) connections at once from one untrusted client (IPv4 address or IPv6 /64)."""

TRUSTED_RESERVE = MAX_CONNECTIONS // 10
"""Of L{MAX_CONNECTIONS}, the connections only trusted hosts may use (by default a tenth
of whatever the total is)."""

MAX_REQUESTS_PER_CONNECTION = 1000
"""Requests one keep-alive connection serves; the last response carries C{Connection: close}."""

MAX_CONNECTION_LIFETIME = 300.0
"""Seconds after which a connection's next response carries C{Connection: close} (an idle
one is closed after L{IDLE_TIMEOUT} anyway)."""

REQUEST_DEADLINE = 10.0
"""Seconds from a request's first byte (or from connecting) until its body is complete."""

IDLE_TIMEOUT = 30
"""Seconds an idle keep-alive connection is kept open."""

ABORT_GRACE = 2.0
"""Seconds a closing connection may take to flush before it is aborted."""

MAX_BODY = 65536
"""Largest request body accepted (the API takes its parameters in the query)."""

MAX_HEADERS = 100
"""Most header lines in one request."""

MAX_HEAD_SIZE = 16384
"""Largest request line plus headers, in bytes."""

_CLOSE = b"Connection: close\r\nContent-Length: 0\r\n\r\n"


class ConnectionLimits:
    """
    Counts the open connections: in total, per untrusted client (L{client_key}), and how
    many untrusted ones there are. Untrusted clients may hold at most C{total - reserved}
    connections together, so the trusted hosts (C{is_trusted}) always find C{reserved}
    free; trusted hosts are limited by the total only.
    """

    def __init__(self, total: int = MAX_CONNECTIONS, per_host: int = MAX_CONNECTIONS_PER_HOST,
                 reserved: int | None = None,
                 is_trusted: Callable[[str], bool] | None = None):
        self.total = total
        self.per_host = per_host
        if reserved is None:
            reserved = total // 10
        self.reserved = min(reserved, total)
        self._is_trusted = is_trusted or (lambda host: False)
        self.open = 0
        self.untrusted = 0
        self.by_host: dict[str, int] = {}
        self.refused = 0

    def admit(self, host: str) -> str | None:
        """
        Count a new connection from C{host}; returns the key to L{release} it with, or
        None (and nothing counted) if over a cap.
        """
        if self.open >= self.total:
            self.refused += 1
            return None
        if self._is_trusted(host):
            self.open += 1
            return ""
        key = client_key(host)
        if (self.untrusted >= self.total - self.reserved
                or self.by_host.get(key, 0) >= self.per_host):
            self.refused += 1
            return None
        self.open += 1
        self.untrusted += 1
        self.by_host[key] = self.by_host.get(key, 0) + 1
        return key

    def release(self, key: str) -> None:
        """A connection L{admit}ted under C{key} has closed."""
        self.open -= 1
        if key == "":
            return
        self.untrusted -= 1
        left = self.by_host.get(key, 1) - 1
        if left:
            self.by_host[key] = left
        else:
            self.by_host.pop(key, None)


def _peer_host(transport: ITransport) -> str:
    peer = transport.getPeer()
    return getattr(peer, "host", None) or str(peer)


class LimitedChannel(http.HTTPChannel):
    """
    An HTTPChannel that enforces the limits above. Its factory (the Site) must have a
    C{limits} attribute (a L{ConnectionLimits}) and set C{callLater} (HTTPFactory does).
    """

    maxHeaders = MAX_HEADERS
    totalHeadersSize = MAX_HEAD_SIZE
    abortTimeout = 5

    _admitted_host: str | None = None
    _opened: float | None = None
    _requests_seen = 0
    _deadline: TimerHandle | None = None
    _abort_call: IDelayedCall | None = None
    _closing = False
    _in_request = False
    _body_bytes = 0
    _reading_body = False

    @property
    def _transport(self) -> ITransport:
        transport = self.transport
        assert transport is not None, "not connected"
        return transport

    def connectionMade(self) -> None:
        host = _peer_host(self._transport)
        limits = getattr(getattr(self, "factory", None), "limits", None)
        key = limits.admit(host) if limits is not None else None
        if limits is not None and key is None:
            self._closing = True
            log.info("refusing an HTTP connection from {host}: connection limit reached",
                     host=host)
            self._transport.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
                                 + _CLOSE)
            self._close()
            return
        if limits is not None:
            self._limits = limits
            self._admitted_host = key
        clock = getattr(getattr(self, "factory", None), "clock", None)
        self._opened = clock.seconds() if clock is not None else None
        super().connectionMade()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._in_request:
            self._start_deadline()
        if self._reading_body:
            self._body_bytes += len(data)
            if self._body_bytes > MAX_BODY + MAX_HEAD_SIZE:  # chunked: framing included
                self._refuse(413, b"Payload Too Large")
                return
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def allHeadersReceived(self) -> None:
        if self.length is not None and self.length > MAX_BODY:
            self._refuse(413, b"Payload Too Large")
            return
        self._reading_body = True
        self._body_bytes = 0
        super().allHeadersReceived()  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def checkPersistence(self, request: http.Request, version: bytes) -> bool:
        """Keep alive as HTTP/1.1 says, unless this connection served its share or is old."""
        self._requests_seen += 1
        persistent: bool = super().checkPersistence(  # type: ignore[no-untyped-call]  # Twisted's, untyped
            request, version)
        if persistent and (self._requests_seen >= MAX_REQUESTS_PER_CONNECTION
                           or self._too_old()):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return persistent

    def _too_old(self) -> bool:
        if self._opened is None:
            return False
        elapsed: float = self.factory.clock.seconds() - self._opened
        return elapsed >= MAX_CONNECTION_LIFETIME

    def allContentReceived(self) -> None:
        self._in_request = False
        self._reading_body = False
        self._cancel_deadline()
        super().allContentReceived()  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def lineLengthExceeded(self, line: bytes) -> None:
        method = line.split(b" ", 1)[0]
        if method and b" " in line[:64] and b":" not in method:  # the request line: its URI
            body = render.processing_status_xml(414, "Request URI too long")
            self._refuse(414, b"URI Too Long", body)
        else:
            self._refuse(431, b"Request Header Fields Too Large")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_deadline()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self._admitted_host is not None:
            self._limits.release(self._admitted_host)
            self._admitted_host = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def _start_deadline(self) -> None:
        self._in_request = True
        if self._deadline is None or not self._deadline.active():
            deadlines = getattr(self.factory, "deadlines", None)
            if deadlines is not None:  # the Site's shared queue: no reactor call per request
                self._deadline = deadlines.call_later(self._too_slow)
            else:
                self._deadline = self.callLater(  # type: ignore[no-untyped-call]  # Twisted's, untyped
                    REQUEST_DEADLINE, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._closing:
            return
        if getattr(self, "_handlingRequest", False):
            self._closing = True
            self._close()  # a response may be under way: no 408 in the middle of it
            return
        self._refuse(408, b"Request Timeout")

    def _refuse(self, code: int, reason: bytes, body: bytes = b"") -> None:
        self._closing = True
        self._cancel_deadline()
        if body:
            self._transport.write(b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: %s\r\n"
                                 b"Content-Length: %d\r\n\r\n%s"
                                 % (code, reason, render.XML_TYPE, len(body), body))
        else:
            self._transport.write(b"HTTP/1.1 %d %s\r\n" % (code, reason) + _CLOSE)
        self._close()

    def _close(self) -> None:
        """Close after flushing; abort if the peer does not let us (e.g. no TLS handshake)."""
        self._transport.loseConnection()
        self._abort_call = self.callLater(  # type: ignore[no-untyped-call]  # Twisted's, untyped
            ABORT_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
