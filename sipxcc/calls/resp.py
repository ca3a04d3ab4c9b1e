"""
A small Redis client on Twisted: the RESP2 wire protocol, pipelined commands, a bound
on the commands waiting for their reply, and a reconnecting connection that refuses
commands at once (L{RegistryUnavailable}) while Redis cannot be reached.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet import defer, protocol
from twisted.python.failure import Failure

from sipxcc.logs import logger

log = logger(__name__)

#: commands sent on one connection and waiting for their reply
MAX_PENDING = 10_000
#: bytes of one reply (a bulk string, or the unparsed rest of the input)
MAX_REPLY = 16 * 1024 * 1024
#: elements of one array reply
MAX_ARRAY = 1_000_000


class RegistryUnavailable(Exception):
    """Redis cannot be reached now (not connected, connection lost, too many pending)."""


class RedisError(Exception):
    """Redis answered a command with an error reply."""


class ProtocolError(Exception):
    """The server's reply is not valid RESP, or is beyond the bounds."""


def encode(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = str(arg).encode("ascii")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    """More bytes are needed."""


def _parse(data: bytes, pos: int) -> tuple[Any, int]:
    """One reply starting at C{pos}: (value, position after it); raises L{_Incomplete}."""
    end = data.find(b"\r\n", pos)
    if end < 0:
        if len(data) - pos > MAX_REPLY:
            raise ProtocolError("reply line too long")
        raise _Incomplete()
    kind, line = data[pos:pos + 1], data[pos + 1:end]
    pos = end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), pos
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        return _bulk(data, pos, int(line))
    if kind == b"*":
        return _array(data, pos, int(line))
    raise ProtocolError(f"unknown reply type {kind!r}")


def _bulk(data: bytes, pos: int, size: int) -> tuple[bytes | None, int]:
    if size < 0:
        return None, pos
    if size > MAX_REPLY:
        raise ProtocolError("bulk reply too long")
    if len(data) < pos + size + 2:
        raise _Incomplete()
    return data[pos:pos + size], pos + size + 2


def _array(data: bytes, pos: int, count: int) -> tuple[list[Any] | None, int]:
    if count < 0:
        return None, pos
    if count > MAX_ARRAY:
        raise ProtocolError("array reply too long")
    items = []
    for _ in range(count):
        item, pos = _parse(data, pos)
        items.append(item)
    return items, pos


class RedisProtocol(protocol.Protocol):
    """One connection: commands go out at once; replies come back in order."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self.max_pending = max_pending
        self.pending: deque[defer.Deferred[Any]] = deque()
        self.buffer = b""
        self.on_lost: Callable[[RedisProtocol], None] | None = None

    def execute(self, *args: bytes | str | int | float) -> defer.Deferred[Any]:
        """Send one command; fires with its reply (fails with L{RedisError})."""
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple[bytes | str | int | float, ...]]
                 ) -> list[defer.Deferred[Any]]:
        """Send several commands in one write; one Deferred per command."""
        if len(self.pending) + len(commands) > self.max_pending:
            return [defer.fail(RegistryUnavailable("too many Redis commands pending"))
                    for _ in commands]
        ds: list[defer.Deferred[Any]] = []
        for _ in commands:
            d: defer.Deferred[Any] = defer.Deferred()
            self.pending.append(d)
            ds.append(d)
        assert self.transport is not None
        self.transport.write(b"".join(encode(args) for args in commands))
        return ds

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while pos < len(self.buffer):
                try:
                    value, pos = _parse(self.buffer, pos)
                except _Incomplete:
                    break
                if not self.pending:
                    raise ProtocolError("reply without a command")
                d = self.pending.popleft()
                if isinstance(value, RedisError):
                    d.errback(value)
                else:
                    d.callback(value)
        except (ProtocolError, ValueError) as exc:
            log.error("Redis protocol error: {error}; closing", error=exc)
            self.buffer = b""
            assert self.transport is not None
            self.transport.loseConnection()
            return
        self.buffer = self.buffer[pos:]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        pending, self.pending = self.pending, deque()
        for d in pending:
            d.errback(RegistryUnavailable("Redis connection lost"))
        if self.on_lost is not None:
            self.on_lost(self)


def parse_url(url: str) -> tuple[str, int, bool, str | None, int]:
    """(host, port, tls, password, database) of a C{redis://} or C{rediss://} URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must start with redis:// or rediss://")
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ValueError("the path must be a database number")
    password = unquote(parts.password) if parts.password else None
    return (parts.hostname or "127.0.0.1", parts.port or 6379, parts.scheme == "rediss",
            password, int(database))


class RedisConnection(protocol.ReconnectingClientFactory):
    """
    Keeps one connection to Redis, reconnecting with exponential back-off (at most
    C{maxDelay} seconds between attempts). L{execute} and L{pipeline} fail at once with
    L{RegistryUnavailable} while there is no connection. C{on_state(up)} hears of each
    change.
    """

    maxDelay = 5.0
    initialDelay = 0.2
    factor = 2.0

    def __init__(self, reactor: Any, url: str, password: str | None = None,
                 on_state: Callable[[bool], None] | None = None):
        self.reactor = reactor
        self.clock = reactor
        self.host, self.port, self.tls, url_password, self.database = parse_url(url)
        self.password = password if password is not None else url_password
        self.on_state = on_state
        self.connection: RedisProtocol | None = None
        self._waiting: list[defer.Deferred[None]] = []

    @property
    def up(self) -> bool:
        return self.connection is not None

    def start(self) -> None:
        if self.tls:
            from twisted.internet import ssl
            self.reactor.connectSSL(self.host, self.port, self,
                                    ssl.optionsForClientTLS(self.host))
        else:
            self.reactor.connectTCP(self.host, self.port, self, timeout=5)

    def stop(self) -> None:
        self.stopTrying()
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()

    def when_up(self) -> defer.Deferred[None]:
        """Fires once connected (at once if connected now)."""
        if self.connection is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        p = RedisProtocol()
        p.factory = self  # type: ignore[assignment]
        p.on_lost = self._lost
        self._greet(p)
        return p

    def _greet(self, p: RedisProtocol) -> None:
        def connected() -> None:
            hello: list[tuple[bytes | str | int | float, ...]] = []
            if self.password:
                hello.append(("AUTH", self.password))
            if self.database:
                hello.append(("SELECT", self.database))
            ds = p.pipeline(hello) if hello else []
            done = defer.gatherResults(ds, consumeErrors=True)
            done.addCallbacks(lambda _: self._up(p), lambda f: self._refused(p, f))
        p.connectionMade = connected  # type: ignore[method-assign]

    def _up(self, p: RedisProtocol) -> None:
        self.resetDelay()
        self.connection = p
        log.info("connected to Redis at {host}:{port}", host=self.host, port=self.port)
        if self.on_state is not None:
            self.on_state(True)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _refused(self, p: RedisProtocol, failure: Failure) -> None:
        log.error("Redis refused the connection: {error}", error=failure.value)
        if p.transport is not None:
            p.transport.loseConnection()

    def _lost(self, p: RedisProtocol) -> None:
        if self.connection is p:
            self.connection = None
            log.warn("lost the connection to Redis; reconnecting")
            if self.on_state is not None:
                self.on_state(False)

    def execute(self, *args: bytes | str | int | float) -> defer.Deferred[Any]:
        if self.connection is None:
            return defer.fail(RegistryUnavailable("Redis is not connected"))
        return self.connection.execute(*args)

    def pipeline(self, commands: list[tuple[bytes | str | int | float, ...]]
                 ) -> list[defer.Deferred[Any]]:
        if self.connection is None:
            return [defer.fail(RegistryUnavailable("Redis is not connected"))
                    for _ in commands]
        return self.connection.pipeline(commands)


class SubscriberProtocol(protocol.Protocol):
    """A connection in publish/subscribe mode: SUBSCRIBEs to C{channels} once connected
    (after AUTH, if a password is set), then hands each message to
    C{on_message(channel, data)}. Input is bounded as for commands."""

    def __init__(self, channels: tuple[str, ...], password: str | None,
                 on_message: Callable[[bytes, bytes], None]):
        self.channels = channels
        self.password = password
        self.on_message = on_message
        self.buffer = b""

    def connectionMade(self) -> None:
        commands: list[tuple[bytes | str | int | float, ...]] = []
        if self.password:
            commands.append(("AUTH", self.password))
        commands.append(("SUBSCRIBE", *self.channels))
        assert self.transport is not None
        self.transport.write(b"".join(encode(c) for c in commands))

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while pos < len(self.buffer):
                try:
                    value, pos = _parse(self.buffer, pos)
                except _Incomplete:
                    break
                if isinstance(value, RedisError):
                    raise ProtocolError(f"subscription refused: {value}")
                if isinstance(value, list) and len(value) == 3 and value[0] == b"message":
                    try:
                        self.on_message(value[1], value[2])
                    except Exception:
                        log.failure("a Redis message handler failed")
        except (ProtocolError, ValueError) as exc:
            log.error("Redis subscription: {error}; closing", error=exc)
            self.buffer = b""
            assert self.transport is not None
            self.transport.loseConnection()
            return
        self.buffer = self.buffer[pos:]


class RedisSubscription(protocol.ReconnectingClientFactory):
    """Stays subscribed to C{channels}, reconnecting with back-off like
    L{RedisConnection}."""

    maxDelay = 5.0
    initialDelay = 0.2
    factor = 2.0

    def __init__(self, reactor: Any, url: str, channels: tuple[str, ...],
                 on_message: Callable[[bytes, bytes], None], password: str | None = None):
        self.reactor = reactor
        self.clock = reactor
        self.host, self.port, self.tls, url_password, _ = parse_url(url)
        self.password = password if password is not None else url_password
        self.channels = channels
        self.on_message = on_message
        self.connection: SubscriberProtocol | None = None

    def start(self) -> None:
        if self.tls:
            from twisted.internet import ssl
            self.reactor.connectSSL(self.host, self.port, self,
                                    ssl.optionsForClientTLS(self.host))
        else:
            self.reactor.connectTCP(self.host, self.port, self, timeout=5)

    def stop(self) -> None:
        self.stopTrying()
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()

    def buildProtocol(self, addr: Any) -> SubscriberProtocol:
        self.resetDelay()
        p = SubscriberProtocol(self.channels, self.password, self.on_message)
        p.factory = self  # type: ignore[assignment]
        self.connection = p
        return p
