"""Helpers of the Redis connections' unit tests, without a server and without the
reactor:

 - L{Log}: the events logged, as the operator reads them;
 - L{FakeRedis}: Redis as a connection's C{connect} reaches it, each connection a real
   L{RespProtocol} on an in-memory L{Wire}: every write kept as sent (C{raw}) and decoded
   into its commands, the replies encoded as Redis sends them (L{resp}), at once or when
   the test says; L{FakeRedis.publish} sends a message to the connections subscribed to
   its channel (L{answer_as_subscribed_redis}: a subscription's Redis).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
from twisted.internet import defer, error, task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from sipxcc.calls.redis_client import RedisConnection, RedisSubscription
from sipxcc.calls.redis_protocol import RedisError, RespProtocol

URL = "redis://127.0.0.1:6379/0"


class Log:
    """The events logged while L{capture} is open."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[Log]:
        made = cls()
        globalLogPublisher.addObserver(made.events.append)
        try:
            yield made
        finally:
            globalLogPublisher.removeObserver(made.events.append)

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]

    def infos(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.info]

    def failures(self) -> list[str]:
        """Tracebacks in the operator's log (an unhandled error in a Deferred, ...)."""
        gc.collect()  # a Deferred's unhandled error is logged when it is collected
        return [formatEvent(e) for e in self.events if "log_failure" in e]


def outcomes(ds: list[defer.Deferred[Any]]) -> list[Any]:
    """A list that gets each Deferred's result (or Failure) as it fires."""
    out: list[Any] = []
    for d in ds:
        d.addBoth(out.append)
    return out


# --- the command connection's Redis ---------------------------------------------------------


class Simple(str):
    """A simple string reply (C{+OK}), as opposed to a bulk string (bytes)."""


def resp(value: Any) -> bytes:
    """C{value} encoded as Redis sends a reply: bytes a bulk string, L{Simple} a simple
    string, int an integer, None a nil bulk string, a list an array, a L{RedisError} an
    error reply (its text)."""
    if isinstance(value, Simple):
        return b"+%s\r\n" % value.encode()
    if isinstance(value, RedisError):
        return b"-%s\r\n" % str(value).encode()
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(resp(item) for item in value)
    raise TypeError(f"no RESP for {value!r}")


def decode(data: bytes) -> list[tuple[str, ...]]:
    """The commands in C{data} as RESP arrays of bulk strings (what a client writes), each
    argument as text."""
    reader = hiredis.Reader()
    reader.feed(data)
    commands = []
    while (command := reader.gets()) is not False:
        commands.append(tuple(arg.decode() for arg in command))
    return commands


def answer_as_redis(commands: list[tuple[str, ...]]) -> list[Any]:
    """Redis' replies to a login and PING; C{+OK} to anything else."""
    return [Simple("PONG") if c[0] == "PING" else Simple("OK") for c in commands]


def answer_as_subscribed_redis(commands: list[tuple[str, ...]]) -> list[Any]:
    """Redis' replies (RESP2) to a subscription's commands: C{+OK} to the login, a
    confirmation per channel to a C{SUBSCRIBE} (the count of channels so far), and
    C{[b"pong", b""]} to a PING (which a subscription sends only once subscribed)."""
    replies: list[Any] = []
    for command in commands:
        if command[0] == "SUBSCRIBE":
            replies += [[b"subscribe", channel.encode(), n]
                        for n, channel in enumerate(command[1:], 1)]
        elif command[0] == "PING":
            replies.append([b"pong", b""])
        else:
            replies.append(Simple("OK"))
    return replies


class Wire(StringTransport):
    """One connection's transport: each write goes to its L{FakeRedis}. Closing it is
    recorded in C{closing} ("lose", "abort"); as on a reactor, C{connectionLost} comes
    later: when the test calls L{FakeRedis.close}."""

    def __init__(self, server: FakeRedis, protocol: RespProtocol):
        super().__init__()
        self.server, self.protocol = server, protocol
        self.closing: str | None = None
        self.hello: list[tuple[str, ...]] | None = None  # the first write
        self.subscribed: set[str] = set()  # channels whose SUBSCRIBE was answered

    def write(self, data: bytes) -> None:
        self.server.written(self, data)

    def loseConnection(self) -> None:
        self.closing = self.closing or "lose"

    def abortConnection(self) -> None:
        self.closing = "abort"


class FakeRedis:
    """
    Redis as L{RedisConnection}'s C{connect} reaches it. Each connection made is a
    L{RespProtocol} on a L{Wire} (in C{connections}); C{writes} holds every write's
    commands (decoded, as text), in order, whatever the connection. While C{answering},
    each write is answered at once with C{answer(commands)} (replies as L{resp} encodes
    them); otherwise it waits in C{unanswered} for L{release}. While not C{reachable},
    connecting is refused and a write loses its connection ("Connection reset by peer").
    With C{hold_connects}, attempts wait in C{connecting} for the test to fire them.
    C{raw} holds every write's bytes.
    """

    def __init__(self, clock: task.Clock,
                 answer: Callable[[list[tuple[str, ...]]], list[Any]] = answer_as_redis):
        self.clock = clock
        self.reachable = True
        self.answering = True
        self.hold_connects = False
        self.answer = answer
        self.attempts = 0
        self.connections: list[RespProtocol] = []
        self.writes: list[list[tuple[str, ...]]] = []
        self.raw: list[bytes] = []
        self.unanswered: list[tuple[RespProtocol, list[tuple[str, ...]]]] = []
        self.connecting: list[defer.Deferred[RespProtocol]] = []

    def connect(self, on_lost: Callable[[str], None]) -> defer.Deferred[RespProtocol]:
        """C{connect=} of L{RedisConnection}."""
        self.attempts += 1
        if not self.reachable:
            return defer.fail(error.ConnectionRefusedError("Connection refused"))
        protocol = RespProtocol(self.clock, on_lost)
        protocol.makeConnection(Wire(self, protocol))
        self.connections.append(protocol)
        if self.hold_connects:
            held: defer.Deferred[RespProtocol] = defer.Deferred()
            self.connecting.append(held)
            return held
        return defer.succeed(protocol)

    def written(self, wire: Wire, data: bytes) -> None:
        commands = decode(data)
        self.raw.append(data)
        self.writes.append(commands)
        if not wire.hello:
            wire.hello = commands
        if not self.reachable:
            wire.protocol.connectionLost(Failure(error.ConnectionLost("Connection reset by peer")))
        elif self.answering:
            self._answer(wire.protocol, commands)
        else:
            self.unanswered.append((wire.protocol, commands))

    def release(self) -> None:
        """Answer the oldest write waiting (C{answer})."""
        self._answer(*self.unanswered.pop(0))

    def _answer(self, protocol: RespProtocol, commands: list[tuple[str, ...]]) -> None:
        wire = protocol.transport
        assert isinstance(wire, Wire)
        for command in commands:
            if command[0] == "SUBSCRIBE":
                wire.subscribed.update(command[1:])
        protocol.dataReceived(b"".join(resp(r) for r in self.answer(commands)))

    def publish(self, channel: str, data: bytes) -> int:
        """Send C{data} on C{channel} to every open connection subscribed to it, as Redis
        does (C{[b"message", channel, data]}); how many got it."""
        got = 0
        for protocol in self.connections:
            wire = protocol.transport
            if (isinstance(wire, Wire) and channel in wire.subscribed and not protocol.lost
                    and wire.closing is None):
                protocol.dataReceived(resp([b"message", channel.encode(), data]))
                got += 1
        return got

    def sent(self) -> list[list[tuple[str, ...]]]:
        """The writes but each connection's first (its login: AUTH, SELECT, PING)."""
        hellos = {id(p.transport.hello) for p in self.connections}  # type: ignore[union-attr]
        return [commands for commands in self.writes if id(commands) not in hellos]

    def close(self, reason: Exception | None = None) -> None:
        """Every connection being closed gets its C{connectionLost} (with C{reason}, or
        as Twisted reports a close or an abort)."""
        for protocol in self.connections:
            wire = protocol.transport
            if isinstance(wire, Wire) and wire.closing and not protocol.lost:
                why = reason or (error.ConnectionAborted() if wire.closing == "abort"
                                 else error.ConnectionDone())
                protocol.connectionLost(Failure(why))

    def pings(self) -> int:
        """Keep-alive PINGs written (a write of one PING that is not a login)."""
        return self.sent().count([("PING",)])


def connection(clock: task.Clock, server: FakeRedis, url: str = URL,
               **kw: Any) -> RedisConnection:
    """A L{RedisConnection} to C{server}; C{conn.states} lists what C{on_state} heard."""
    states: list[bool] = []
    conn = RedisConnection(clock, url, on_state=states.append, connect=server.connect, **kw)
    conn.states = states  # type: ignore[attr-defined]
    return conn


def started(**kw: Any) -> tuple[task.Clock, FakeRedis, RedisConnection]:
    """A clock, a stand-in Redis and a connection to it, connected."""
    clock = task.Clock()
    server = FakeRedis(clock)
    conn = connection(clock, server, **kw)
    conn.start()
    assert conn.up
    return clock, server, conn


# --- the subscription's Redis ------------------------------------------------------------


def subscription(clock: task.Clock, server: FakeRedis, url: str = URL,
                 channels: tuple[str, ...] = ("sipxcc:cmd:a",),
                 **kw: Any) -> tuple[RedisSubscription, list[tuple[bytes, bytes]]]:
    """A L{RedisSubscription} to C{channels} on C{server} (not started), and the list of
    what its handler got."""
    got: list[tuple[bytes, bytes]] = []
    sub = RedisSubscription(clock, url, channels,
                            lambda channel, data: got.append((channel, data)),
                            connect=server.connect, **kw)
    return sub, got


class Endpoints:
    """Stands for sipxcc.calls.redis_protocol.endpoint (as redis_client calls it): records
    what it is asked for and returns an endpoint that refuses."""

    def __init__(self, monkeypatch: Any) -> None:
        self.made: list[tuple[Any, ...]] = []
        self.connects = 0
        monkeypatch.setattr("sipxcc.calls.redis_client.endpoint", self.endpoint)

    def endpoint(self, reactor: Any, host: str, port: int, *, tls: bool, ca_file: str | None,
                 timeout: float) -> Endpoints:
        self.made.append((reactor, host, port, tls, ca_file, timeout))
        return self

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.connects += 1
        return defer.fail(error.ConnectionRefusedError("no Redis here"))
