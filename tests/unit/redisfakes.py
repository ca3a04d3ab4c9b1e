"""Helpers of the Redis connection's unit tests, without a server and without the reactor:

 - L{Log}: the events logged, as the operator reads them;
 - L{FakeRedis}: Redis as the command connection's C{connect} reaches it, each connection
   a real L{RespProtocol} on an in-memory L{Wire}: every write decoded into its commands,
   the replies encoded as Redis sends them (L{resp}), at once or when the test says;
 - for the subscriber, which still runs redis-py on a thread of its own: fakes of
   redis-py's pub/sub (L{FakeSource}) and of the reactor's thread hand-over
   (L{FakeReactor}, L{ThreadedReactor}), and a runner whose calls wait (L{Held}).
"""

from __future__ import annotations

import gc
import queue
import time
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


class Wire(StringTransport):
    """One connection's transport: each write goes to its L{FakeRedis}. Closing it is
    recorded in C{closing} ("lose", "abort"); as on a reactor, C{connectionLost} comes
    later: when the test calls L{FakeRedis.close}."""

    def __init__(self, server: FakeRedis, protocol: RespProtocol):
        super().__init__()
        self.server, self.protocol = server, protocol
        self.closing: str | None = None
        self.hello: list[tuple[str, ...]] | None = None  # the first write

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
    """

    def __init__(self, clock: task.Clock):
        self.clock = clock
        self.reachable = True
        self.answering = True
        self.hold_connects = False
        self.answer: Callable[[list[tuple[str, ...]]], list[Any]] = answer_as_redis
        self.attempts = 0
        self.connections: list[RespProtocol] = []
        self.writes: list[list[tuple[str, ...]]] = []
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
        self.writes.append(commands)
        if not wire.hello:
            wire.hello = commands
        if not self.reachable:
            wire.protocol.connectionLost(Failure(error.ConnectionLost("Connection reset by peer")))
        elif self.answering:
            wire.protocol.dataReceived(b"".join(resp(r) for r in self.answer(commands)))
        else:
            self.unanswered.append((wire.protocol, commands))

    def release(self) -> None:
        """Answer the oldest write waiting (C{answer})."""
        protocol, commands = self.unanswered.pop(0)
        protocol.dataReceived(b"".join(resp(r) for r in self.answer(commands)))

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


# --- the subscriber ------------------------------------------------------------------------


def run_at_once(f: Any, *args: Any) -> defer.Deferred[Any]:
    """The blocking call, run on the spot (no thread): its result or failure."""
    return defer.maybeDeferred(f, *args)


class Held:
    """A runner (C{run=}) whose blocking calls wait until the test lets them run."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.jobs.append((f, args, d))
        return d

    def finish(self) -> None:
        """Run the oldest waiting call now, its result or error to its Deferred."""
        f, args, d = self.jobs.pop(0)
        defer.maybeDeferred(f, *args).chainDeferred(d)


class FakeReactor(task.Clock):
    """A clock whose thread hand-overs wait until L{run_handed_over}."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_over: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.handed_over.append((f, args, kw))

    def run_handed_over(self) -> None:
        calls, self.handed_over = self.handed_over, []
        for f, args, kw in calls:
            f(*args, **kw)


class ThreadedReactor(task.Clock):
    """A clock that takes hand-overs from real threads (as the reactor's callFromThread)
    and runs them when the test asks, waiting for them with a deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_over: queue.Queue[Any] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.handed_over.put((f, args, kw))

    def run_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> None:
        """Run hand-overs as they come until C{condition()} holds (or fail at the
        deadline)."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, "the condition did not hold in time"
            try:
                f, args, kw = self.handed_over.get(timeout=left)
            except queue.Empty:
                continue
            f(*args, **kw)


class FakePubSub:
    """redis-py's PubSub: subscribing is recorded (and refused while the source is
    C{broken}); messages come from the source's list; once it is empty the subscriber is
    told to stop (C{stop_when_drained})."""

    def __init__(self, source: FakeSource):
        self.source = source

    def subscribe(self, *channels: str) -> None:
        self.source.subscriptions.append(channels)
        if self.source.broken:
            import redis
            raise redis.ConnectionError("Connection refused")

    def get_message(self, timeout: float = 0) -> Any:
        if self.source.messages:
            return self.source.messages.pop(0)
        assert self.source.stop_when_drained is not None
        self.source.stop_when_drained.set()
        return None

    def close(self) -> None:
        pass


class FakeSource:
    """A redis-py client as the subscriber uses it (C{pubsub()})."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.subscriptions: list[tuple[str, ...]] = []
        self.broken = False
        self.stop_when_drained: Any = None

    def pubsub(self, ignore_subscribe_messages: bool = False) -> Any:
        assert ignore_subscribe_messages
        return FakePubSub(self)


def subscription(reactor: Any, source: FakeSource,
                 **kw: Any) -> tuple[RedisSubscription, list[tuple[bytes, bytes]]]:
    """A subscriber to C{sipxcc:cmd:a} on C{source}, its blocking calls run on the spot;
    and the list of what its handler got."""
    got: list[tuple[bytes, bytes]] = []
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",),
                            lambda channel, data: got.append((channel, data)),
                            client=source, run=run_at_once, **kw)
    source.stop_when_drained = sub._stopping
    return sub, got
