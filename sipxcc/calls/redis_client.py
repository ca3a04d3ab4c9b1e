"""
The Redis connections of the shared call registry, both on the reactor: RESP through
sipxcc/calls/redis_protocol.py (redis-py's encoder, hiredis' parser), no thread and no
thread pool.

What both connections share (L{_Link}): connecting (TLS for C{rediss://}), the login
(C{AUTH}, C{SELECT}) in the connection's first write, noticing a lost connection while
idle (a PING every L{KEEPALIVE} seconds) and one that stopped answering
(L{SOCKET_TIMEOUT}), reconnecting with exponential back-off on the reactor's clock, and
stopping within a bound (L{STOP_TIMEOUT}).

The command connection (L{RedisConnection}) keeps the commands in the order they were
given, as the store needs (a call's status lines, then its end), and sends the commands
given during one reactor turn as one write (one round trip); it bounds the commands
waiting (L{MAX_PENDING}), refuses commands at once (L{RegistryUnavailable}) while Redis
cannot be reached, and runs Lua scripts by their SHA-1.

The subscription (L{RedisSubscription}) subscribes to its channels on a connection of its
own (again on every new connection) and hands each message to its handler as it is read;
what waits is bounded by TCP (Redis is not read faster than the handler runs), and a
message larger than L{MAX_MESSAGE} bytes is dropped.

Nothing here touches the global reactor: the reactor (for its clock and its connections)
is passed in by sipxcc/tap.py.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_protocol import Command, ConnectionLost, RedisError, RespProtocol, endpoint
from sipxcc.logs import logger

log = logger(__name__)

#: commands given and not yet answered, on one connection
MAX_PENDING = 10_000
#: the largest message data a subscription hands to its handler (bytes); the nodes'
#: commands and answers are a few hundred bytes
MAX_MESSAGE = 64 * 1024
#: reconnecting: the first delay, the factor between attempts and the longest delay (s)
INITIAL_DELAY = 0.2
FACTOR = 2.0
MAX_DELAY = 5.0
#: seconds without traffic after which a connection is checked with a PING
KEEPALIVE = 1.0
#: seconds a connection attempt, the login or a reply may take (checked every
#: L{KEEPALIVE})
SOCKET_TIMEOUT = 5.0
#: seconds L{_Link.stop} waits for its connection to close before aborting it and firing
STOP_TIMEOUT = 2.0

#: the commands of one L{RedisConnection.pipeline} call and the Deferred of their replies
_Group = tuple[list[Command], "defer.Deferred[list[Any]]"]
#: connects, and calls its argument with the reason once the connection is lost
Connect = Callable[[Callable[[str], None]], "defer.Deferred[RespProtocol]"]


class Settings(NamedTuple):
    """Where Redis is and how to log in, read from a C{redis://} or C{rediss://} URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    database: int


def parse_url(url: str) -> Settings:
    """The L{Settings} of C{redis://[[user]:password@]host[:port][/db]} (C{rediss://}:
    TLS); raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must start with redis:// or rediss://")
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ValueError("the path must be a database number")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the port must be a number") from None
    return Settings(parts.hostname or "127.0.0.1", port, parts.scheme == "rediss",
                    unquote(parts.username) if parts.username else None,
                    unquote(parts.password) if parts.password else None, int(database))


class _Backoff:
    """Delays between connection attempts: L{INITIAL_DELAY}, times L{FACTOR} each
    failure, at most L{MAX_DELAY}; back to the start once connected."""

    def __init__(self) -> None:
        self.delay = INITIAL_DELAY

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * FACTOR, MAX_DELAY)
        return delay

    def reset(self) -> None:
        self.delay = INITIAL_DELAY


class _Link:
    """
    One connection to Redis kept open on the reactor, what L{RedisConnection} and
    L{RedisSubscription} share. L{start} connects, logs in (C{AUTH} with the password
    given, else the URL's; C{SELECT} the URL's database) and sends L{_greeting}'s commands,
    in one write; answered without an error reply, the link is up. While up it is checked
    every L{KEEPALIVE} seconds: a PING when nothing showed it alive since the last check
    (C{_busy}), closed once a reply has waited L{SOCKET_TIMEOUT} seconds. Lost or not
    reached, it is tried again after a back-off delay, until L{stop}. C{on_state(up)}
    hears of each change.

    C{connect} (returns a Deferred firing with a connected L{RespProtocol}; its argument
    is the protocol's C{on_lost}) is for tests; by default it connects to the URL's host
    and port (TLS for C{rediss://}).
    """

    #: what the operator reads; keys: host, port, error, delay, timeout and L{_fields}'
    _CONNECTED = "connected to Redis at {host}:{port}"
    _UNREACHABLE = "cannot reach Redis at {host}:{port} ({error}); retrying in {delay} s"
    _LOST = "lost the connection to Redis ({error}); reconnecting"
    _NOT_CLOSED = "the Redis connection did not close within {timeout} s; aborted"

    def __init__(self, reactor: Any, url: str, password: str | None, *,
                 ca_file: str | None, connect: Connect | None, stop_timeout: float,
                 on_state: Callable[[bool], None] | None = None):
        self.clock = reactor
        self.stop_timeout = stop_timeout
        self.settings = parse_url(url)
        self.host, self.port = self.settings.host, self.settings.port
        self.password = password if password is not None else self.settings.password
        self.on_state = on_state
        self.ca_file = ca_file
        self._connect_to = connect if connect is not None else self._connect_endpoint
        self._endpoint: IStreamClientEndpoint | None = None
        self._protocol: RespProtocol | None = None
        self._up = False
        self._running = False
        self._backoff = _Backoff()
        self._retry: Any = None
        self._keepalive: Any = None
        self._busy = False  # traffic since the last keep-alive check
        #: why the last attempt to connect failed, or the connection was lost
        self.last_error: str | None = None
        self._waiting: list[defer.Deferred[None]] = []

    @property
    def up(self) -> bool:
        """Connected and logged in, as far as the last reply showed."""
        return self._up

    def _greeting(self, protocol: RespProtocol) -> list[Command]:
        """The commands sent after the login, on each new connection."""
        raise NotImplementedError

    def _stopped(self) -> None:
        """What else L{stop} ends (called once the link is down, before it closes)."""

    def _fields(self) -> dict[str, Any]:
        """More keys for the log lines."""
        return {}

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect now, then keep the connection (reconnecting with back-off)."""
        if self._running:
            return
        self._running = True
        self._connect()

    def stop(self) -> defer.Deferred[None]:
        """Stop reconnecting and close the connection. Returns at once; the Deferred
        fires once the connection is closed, or after C{stop_timeout} seconds (then the
        connection is aborted)."""
        if not self._running:
            return defer.succeed(None)
        self._running = False
        for timer in (self._retry, self._keepalive):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._keepalive = None
        if self._up:  # down first: what L{_stopped} fails gives no new command
            self._up = False
            if self.on_state is not None:
                self.on_state(False)
        self._stopped()
        protocol, self._protocol = self._protocol, None
        if protocol is None:  # (the current connection is never one already lost)
            return defer.succeed(None)
        closed: defer.Deferred[None] = defer.Deferred()
        protocol.closed.addBoth(lambda _: None if closed.called else closed.callback(None))

        def too_late() -> None:
            # what was written could not be flushed (Redis stopped reading): closed now
            log.warn(self._NOT_CLOSED, timeout=self.stop_timeout)
            closed.callback(None)
            protocol.abort(f"not closed within {self.stop_timeout} s of the stop")
        timer = self.clock.callLater(self.stop_timeout, too_late)
        closed.addBoth(lambda _: timer.cancel() if timer.active() else None)
        protocol.transport.loseConnection()  # type: ignore[union-attr]
        return closed

    def when_up(self) -> defer.Deferred[None]:
        """Fires once connected (at once if connected now)."""
        if self._up:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    def _connect_endpoint(self, on_lost: Callable[[str], None]) -> defer.Deferred[RespProtocol]:
        """The default C{connect}: to the URL's host and port, over TLS for C{rediss://}.
        The endpoint is made on the first attempt (made with a test clock, a connection
        that is never started needs no reactor)."""
        if self._endpoint is None:
            self._endpoint = endpoint(self.clock, self.host, self.port, tls=self.settings.tls,
                                      ca_file=self.ca_file, timeout=SOCKET_TIMEOUT)
        # Twisted's connectProtocol is unannotated
        connected: defer.Deferred[RespProtocol] = connectProtocol(  # type: ignore[no-untyped-call]
            self._endpoint, RespProtocol(self.clock, on_lost))
        return connected

    def _connect(self) -> None:
        self._retry = None
        d = defer.maybeDeferred(self._connect_to, self._protocol_lost)
        d.addCallback(self._hello)
        d.addCallbacks(self._connected, self._unreachable)

    def _hello(self, protocol: RespProtocol) -> defer.Deferred[RespProtocol]:
        """Log in (C{AUTH}), pick the database (C{SELECT}) and greet (L{_greeting}), in
        one write; the first error reply fails the attempt and closes the connection."""
        commands: list[Command] = []
        if self.password is not None:
            user = self.settings.username
            commands.append(("AUTH", user, self.password) if user else ("AUTH", self.password))
        if self.settings.database:
            commands.append(("SELECT", self.settings.database))
        commands += self._greeting(protocol)
        # a server that takes the connection but never answers (or a TLS handshake that
        # stalls) is given up on, as a reply is (L{SOCKET_TIMEOUT})
        timer = self.clock.callLater(SOCKET_TIMEOUT, protocol.abort,
                                     f"no reply within {SOCKET_TIMEOUT} s")

        def answered(replies: list[Any]) -> RespProtocol:
            error = next((r for r in replies if isinstance(r, RedisError)), None)
            if error is not None:
                protocol.transport.loseConnection()  # type: ignore[union-attr]
                raise error
            return protocol

        def over(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result
        return protocol.send(commands).addBoth(over).addCallback(answered)

    def _connected(self, protocol: RespProtocol) -> None:
        if not self._running or protocol.lost:
            if not protocol.lost:
                protocol.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._protocol = protocol
        self._backoff.reset()
        self._up = True
        log.info(self._CONNECTED, host=self.host, port=self.port, **self._fields())
        self._keepalive = self.clock.callLater(KEEPALIVE, self._check)
        if self.on_state is not None:
            self.on_state(True)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _unreachable(self, failure: Failure) -> None:
        if not self._running:
            return
        delay = self._backoff.next()
        self.last_error = failure.getErrorMessage()
        log.warn(self._UNREACHABLE, host=self.host, port=self.port, error=self.last_error,
                 delay=delay, **self._fields())
        self._retry = self.clock.callLater(delay, self._connect)

    def _protocol_lost(self, error: str) -> None:
        current = self._protocol
        if current is not None and not current.lost:
            return  # an earlier connection (closed by stop(), a start since): not this one
        self._protocol = None
        self._lost(error)

    def _lost(self, error: str) -> None:
        if not self._up:
            return
        self._up = False
        self.last_error = error
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        # (up means started and not trying to connect: no attempt is scheduled)
        delay = self._backoff.next()
        log.warn(self._LOST, error=error, delay=delay, **self._fields())
        if self.on_state is not None:
            self.on_state(False)
        self._retry = self.clock.callLater(delay, self._connect)

    def _check(self) -> None:
        """Every L{KEEPALIVE} seconds: a connection without traffic since the last check
        is sent a PING; one whose oldest command has waited L{SOCKET_TIMEOUT} seconds
        for its reply is closed (and made again)."""
        self._keepalive = self.clock.callLater(KEEPALIVE, self._check)
        protocol = self._protocol
        assert protocol is not None  # (checked only while up: connected)
        oldest = protocol.oldest
        if oldest is not None and self.clock.seconds() - oldest >= SOCKET_TIMEOUT:
            protocol.abort(f"no reply within {SOCKET_TIMEOUT} s")
            return
        if not self._busy:
            protocol.send([("PING",)]).addErrback(lambda _: None)
        self._busy = False


class RedisConnection(_Link):
    """
    One connection to Redis for commands, on the reactor (L{RespProtocol}). L{execute}
    and L{pipeline} return Deferreds firing with Redis' replies (bytes, int, list or None;
    an error reply fails with L{RedisError}); they fail at once with
    L{RegistryUnavailable} while Redis is not reachable or when L{MAX_PENDING} commands
    already wait. C{on_state(up)} hears of each change; L{start} connects, logs in
    (C{AUTH}, C{SELECT}) and keeps reconnecting with back-off until L{stop}, which fails
    the commands not yet sent.

    C{connect} (returns a Deferred firing with a connected L{RespProtocol}) is for tests;
    by default it connects to the URL's host and port (TLS for C{rediss://}).
    """

    def __init__(self, reactor: Any, url: str, password: str | None = None,
                 on_state: Callable[[bool], None] | None = None, *,
                 ca_file: str | None = None, max_pending: int = MAX_PENDING,
                 connect: Connect | None = None, stop_timeout: float = STOP_TIMEOUT):
        super().__init__(reactor, url, password, ca_file=ca_file, connect=connect,
                         stop_timeout=stop_timeout, on_state=on_state)
        self.max_pending = max_pending
        self._queue: deque[_Group] = deque()
        self._send_scheduled: Any = None  # the call of L{_send} at the end of this turn
        self.pending = 0  # commands given and not yet answered
        #: SHA-1 of each Lua script loaded on the current connection
        self._loaded: set[str] = set()
        self._shas: dict[str, str] = {}  # script text -> its SHA-1

    def _greeting(self, protocol: RespProtocol) -> list[Command]:
        """A PING (the login's answer); a new connection (or a restarted Redis) has no
        script loaded yet."""
        self._loaded.clear()
        return [("PING",)]

    def _stopped(self) -> None:
        """The commands not yet sent fail."""
        if self._send_scheduled is not None and self._send_scheduled.active():
            self._send_scheduled.cancel()
        self._send_scheduled = None
        queued, self._queue = self._queue, deque()
        self.pending -= sum(len(commands) for commands, _ in queued)
        for _, d in queued:
            d.errback(RegistryUnavailable("the Redis connection is closed"))

    # --- commands -----------------------------------------------------------------------
    def execute(self, *args: bytes | str | int | float) -> defer.Deferred[Any]:
        """Send one command; fires with its reply."""
        return self.pipeline([args]).addCallback(lambda replies: replies[0])

    def pipeline(self, commands: list[Command]) -> defer.Deferred[list[Any]]:
        """Send several commands together, in order; one Deferred for them all, firing
        with their replies in order, or failing with the first error reply
        (L{RedisError}; the other commands ran all the same)."""
        if not self._up:
            return defer.fail(RegistryUnavailable("Redis is not connected"))
        if self.pending + len(commands) > self.max_pending:
            return defer.fail(RegistryUnavailable("too many Redis commands pending"))
        self.pending += len(commands)
        self._busy = True
        d: defer.Deferred[list[Any]] = defer.Deferred()
        self._queue.append((commands, d))
        if self._send_scheduled is None:
            self._send_scheduled = self.clock.callLater(0, self._send)
        return d

    def _send(self) -> None:
        """Every command of this reactor turn, as one write.

        C{EVAL} commands go out as C{EVALSHA} (40 bytes instead of the script's text);
        a script not yet loaded on this connection is loaded first, in the same write
        (C{SCRIPT LOAD}). Should Redis answer C{NOSCRIPT} all the same (its scripts
        flushed, a failover), that command is sent again with its text."""
        self._send_scheduled = None
        batch, self._queue = list(self._queue), deque()
        commands = [command for group, _ in batch for command in group]
        wire: list[Command] = []
        loads: set[int] = set()  # the position of each SCRIPT LOAD
        for command in commands:
            if command[0] == "EVAL":
                script = str(command[1])
                sha = self._shas.get(script)
                if sha is None:
                    sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()
                if sha not in self._loaded:
                    loads.add(len(wire))
                    wire.append(("SCRIPT", "LOAD", script))
                    self._loaded.add(sha)
                wire.append(("EVALSHA", sha, *command[2:]))
            else:
                wire.append(command)
        protocol = self._protocol
        d = (protocol.send(wire) if protocol is not None
             else defer.fail(ConnectionLost("Redis is not connected")))
        d.addCallback(self._unscripted, commands, loads)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(batch,),
                       errbackArgs=(batch,))

    def _unscripted(self, replies: list[Any], commands: list[Command],
                    loads: set[int]) -> Any:
        """The replies of C{commands} without those of the C{SCRIPT LOAD}s; commands that
        met C{NOSCRIPT} sent again with their script's text, and every script is loaded
        again. (A script whose C{SCRIPT LOAD} failed, one Redis cannot compile, meets
        C{NOSCRIPT} too: it is loaded again the next time.)"""
        if loads:
            replies = [reply for n, reply in enumerate(replies) if n not in loads]
        again = [n for n, reply in enumerate(replies)
                 if isinstance(reply, RedisError) and str(reply).startswith("NOSCRIPT")]
        if not again or self._protocol is None:
            return replies
        self._loaded.clear()

        def patch(retried: list[Any]) -> list[Any]:
            for n, reply in zip(again, retried, strict=True):
                replies[n] = reply
            return replies
        return self._protocol.send([commands[n] for n in again]).addCallback(patch)

    def _answered(self, replies: list[Any], batch: list[_Group]) -> None:
        start = 0
        for commands, d in batch:
            end = start + len(commands)
            self.pending -= len(commands)
            mine = replies[start:end]
            start = end
            error = next((r for r in mine if isinstance(r, RedisError)), None)
            if error is None:
                d.callback(mine)
            else:
                d.errback(error)

    def _failed(self, failure: Failure, batch: list[_Group]) -> None:
        """The connection was lost under C{batch} (its C{on_lost} told L{_lost} first),
        or a command could not be encoded: every group of the write fails."""
        self.pending -= sum(len(commands) for commands, _ in batch)
        for _, d in batch:
            d.errback(failure)



class RedisSubscription(_Link):
    """
    Stays subscribed to C{channels} on a connection of its own, on the reactor, and hands
    each message published on them to C{on_message(channel, data)} as it is read (an
    error in the handler is logged, and the next message still comes). When the
    connection breaks it subscribes again on a new one after a back-off delay, as
    L{RedisConnection} reconnects (Redis keeps no message for a subscriber away). A
    message whose data is larger than C{max_message} bytes is dropped, counted in
    C{dropped} and logged (the first, then every 1000th).
    """

    _CONNECTED = "subscribed to {channels} on Redis at {host}:{port}"
    _UNREACHABLE = ("cannot subscribe on Redis at {host}:{port} ({error}); retrying in "
                    "{delay} s")
    _LOST = "lost the Redis subscription ({error}); subscribing again in {delay} s"
    _NOT_CLOSED = "the Redis subscription did not close within {timeout} s; aborted"

    def __init__(self, reactor: Any, url: str, channels: tuple[str, ...],
                 on_message: Callable[[bytes, bytes], None], password: str | None = None,
                 *, ca_file: str | None = None, max_message: int = MAX_MESSAGE,
                 connect: Connect | None = None, stop_timeout: float = STOP_TIMEOUT):
        super().__init__(reactor, url, password, ca_file=ca_file, connect=connect,
                         stop_timeout=stop_timeout)
        self.channels = channels
        self.on_message = on_message
        self.max_message = max_message
        self.dropped = 0  # messages larger than C{max_message}

    def _greeting(self, protocol: RespProtocol) -> list[Command]:
        """C{SUBSCRIBE} to the channels; from now on, what Redis pushes comes to
        L{_push}."""
        protocol.on_push = self._push
        return [("SUBSCRIBE", *self.channels)]

    def _fields(self) -> dict[str, Any]:
        return {"channels": ", ".join(self.channels)}

    def _push(self, reply: Any) -> None:
        """A message (C{[b"message", channel, data]}) to the handler; anything else Redis
        pushes (a confirmation it owed no command) is ignored, as is all after L{stop}."""
        if not self._running:
            return
        self._busy = True  # the connection is alive: no keep-alive PING needed
        if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"):
            return
        _, channel, data = reply
        if not isinstance(channel, bytes) or not isinstance(data, bytes):
            return
        if len(data) > self.max_message:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("a Redis message of {size} bytes on {channel} dropped (larger than "
                         "{bound}): {dropped} dropped so far", size=len(data),
                         channel=channel.decode("utf-8", "replace"), bound=self.max_message,
                         dropped=self.dropped)
            return
        try:
            self.on_message(channel, data)
        except Exception:
            log.failure("a Redis message handler failed")
