"""
The Redis connections of the shared call registry.

The command connection (L{RedisConnection}) speaks RESP on the reactor
(sipxcc/calls/redis_protocol.py: redis-py's encoder, hiredis' parser): one socket keeps
the commands in the order they were given, as the store needs (a call's status lines,
then its end), and the commands given during one reactor turn go out as one write (one
round trip). What this module adds: the login (C{AUTH}, C{SELECT}), the bound on commands
waiting (L{MAX_PENDING}), refusing commands at once (L{RegistryUnavailable}) while Redis
cannot be reached, noticing a lost connection while idle (a PING every L{KEEPALIVE}
seconds) and one that stopped answering (L{SOCKET_TIMEOUT}), reconnecting with
exponential back-off on the reactor's clock, and Lua scripts run by their SHA-1.

The subscriber (L{RedisSubscription}) runs redis-py's blocking client (Debian 12:
python3-redis) on a thread of its own and hands messages to the reactor within a bound.

Nothing here touches the global reactor: the reactor (for its clock, its connections, its
thread hand-over) is passed in by sipxcc/tap.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

try:
    import redis
except ImportError as missing:
    raise ImportError("registry.backend = redis needs redis-py: apt-get install python3-redis "
                      "(or pip install 'sipxcc[redis]')") from missing
from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_protocol import Command, ConnectionLost, RedisError, RespProtocol, endpoint
from sipxcc.logs import logger

log = logger(__name__)

#: commands given and not yet answered, on one connection
MAX_PENDING = 10_000
#: subscription messages handed to the reactor and not yet run by it
MAX_QUEUED_MESSAGES = 10_000
#: reconnecting: the first delay, the factor between attempts and the longest delay (s)
INITIAL_DELAY = 0.2
FACTOR = 2.0
MAX_DELAY = 5.0
#: seconds without a command after which an idle connection is checked with a PING
KEEPALIVE = 1.0
#: seconds a connection attempt, the login or a command's reply may take (the command
#: connection: checked every L{KEEPALIVE}); seconds a socket call may block the
#: subscriber's thread
SOCKET_TIMEOUT = 5.0
#: seconds the subscriber waits for a message before looking whether it should stop
POLL = 0.25
#: seconds L{RedisConnection.stop} waits for its connection to close (then aborts it),
#: and the subscriber's for its thread to end, before firing all the same (the thread is
#: a daemon thread: it cannot keep the process from exiting)
STOP_TIMEOUT = 2.0

#: the commands of one L{RedisConnection.pipeline} call and the Deferred of their replies
_Group = tuple[list[Command], "defer.Deferred[list[Any]]"]


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


def client_options(settings: Settings, password: str | None = None,
                   ca_file: str | None = None) -> dict[str, Any]:
    """redis-py's connection options for C{settings}: C{password} (from the password
    file) wins over the URL's; over TLS the server's certificate must chain to C{ca_file}
    (the system's CAs without it) and name the host."""
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "db": settings.database,
        "username": settings.username,
        "password": password if password is not None else settings.password,
        "socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT,
        "max_connections": 1,
    }
    if settings.tls:
        options.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True,
                       ssl_ca_certs=ca_file)
    return options


def _client(options: dict[str, Any]) -> Any:
    client = redis.Redis(**options)
    client.response_callbacks = {}  # Redis' own replies: bytes, int, lists, None
    return client


Runner = Callable[..., "defer.Deferred[Any]"]
#: connects, and calls its argument with the reason once the connection is lost
Connect = Callable[[Callable[[str], None]], "defer.Deferred[RespProtocol]"]


def _daemon_thread(**kwargs: Any) -> threading.Thread:
    return threading.Thread(daemon=True, **kwargs)


class _OneThread(ThreadPool):
    """A thread pool of one daemon thread: a connection left open (a failed start, a
    test) cannot keep the process from exiting."""

    threadFactory = staticmethod(_daemon_thread)  # type: ignore[assignment]

    def __init__(self, name: str):
        super().__init__(1, 1, name)


def _in_thread(reactor: Any, pool: ThreadPool) -> Runner:
    def run(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return deferToThreadPool(reactor, pool, f, *args)
    return run


def _stop_pool(clock: Any, pool: ThreadPool, close: Callable[[], None],
               timeout: float) -> defer.Deferred[None]:
    """Stop C{pool} and then run C{close}, both on a short-lived thread of their own (the
    pool's thread ends once the command it runs is over, which may block up to
    L{SOCKET_TIMEOUT}): the reactor never waits. Fires on the reactor when both are done,
    or after C{timeout} seconds on C{clock}, whichever comes first."""
    done: defer.Deferred[None] = defer.Deferred()

    def finished() -> None:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)

    def too_late() -> None:
        log.warn("the Redis thread {name} did not end within {timeout} s; not waiting "
                 "for it any longer", name=pool.name, timeout=timeout)
        done.callback(None)

    def stop() -> None:
        try:
            pool.stop()
            close()
        except Exception as error:  # a socket that fails to close: nothing left to do
            clock.callFromThread(log.warn, "closing the Redis connection failed: {error}",
                                 error=error)
        finally:
            clock.callFromThread(finished)

    timer = clock.callLater(timeout, too_late)
    _daemon_thread(target=stop, name=f"{pool.name}-stop").start()
    return done


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


class RedisConnection:
    """
    One connection to Redis for commands, on the reactor (L{RespProtocol}). L{execute}
    and L{pipeline} return Deferreds firing with Redis' replies (bytes, int, list or None;
    an error reply fails with L{RedisError}); they fail at once with
    L{RegistryUnavailable} while Redis is not reachable or when L{MAX_PENDING} commands
    already wait. C{on_state(up)} hears of each change; L{start} connects, logs in
    (C{AUTH}, C{SELECT}) and keeps reconnecting with back-off until L{stop}.

    C{connect} (returns a Deferred firing with a connected L{RespProtocol}) is for tests;
    by default it connects to the URL's host and port (TLS for C{rediss://}).
    """

    def __init__(self, reactor: Any, url: str, password: str | None = None,
                 on_state: Callable[[bool], None] | None = None, *,
                 ca_file: str | None = None, max_pending: int = MAX_PENDING,
                 connect: Connect | None = None, stop_timeout: float = STOP_TIMEOUT):
        self.clock = reactor
        self.stop_timeout = stop_timeout
        self.settings = parse_url(url)
        self.host, self.port = self.settings.host, self.settings.port
        self.password = password if password is not None else self.settings.password
        self.on_state = on_state
        self.max_pending = max_pending
        self.ca_file = ca_file
        self._connect_to = connect if connect is not None else self._connect_endpoint
        self._endpoint: IStreamClientEndpoint | None = None
        self._protocol: RespProtocol | None = None
        self._up = False
        self._running = False
        self._backoff = _Backoff()
        self._retry: Any = None
        self._keepalive: Any = None
        self._busy = False  # a command was given since the last keep-alive check
        self._queue: deque[_Group] = deque()
        self._send_scheduled: Any = None  # the call of L{_send} at the end of this turn
        self.pending = 0  # commands given and not yet answered
        #: why the last attempt to connect failed, or the connection was lost
        self.last_error: str | None = None
        self._waiting: list[defer.Deferred[None]] = []
        #: SHA-1 of each Lua script loaded on the current connection
        self._loaded: set[str] = set()
        self._shas: dict[str, str] = {}  # script text -> its SHA-1

    @property
    def up(self) -> bool:
        """Connected, as far as the last command or PING showed."""
        return self._up

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect now, then keep the connection (reconnecting with back-off)."""
        if self._running:
            return
        self._running = True
        self._connect()

    def stop(self) -> defer.Deferred[None]:
        """Stop reconnecting, fail what waits, and close the connection. Returns at once;
        the Deferred fires once the connection is closed, or after C{stop_timeout}
        seconds."""
        if not self._running:
            return defer.succeed(None)
        self._running = False
        for timer in (self._retry, self._keepalive, self._send_scheduled):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._keepalive = self._send_scheduled = None
        if self._up:  # down first: what the failures below run gives no new command
            self._up = False
            if self.on_state is not None:
                self.on_state(False)
        queued, self._queue = self._queue, deque()
        self.pending -= sum(len(commands) for commands, _ in queued)
        for _, d in queued:
            d.errback(RegistryUnavailable("the Redis connection is closed"))
        protocol, self._protocol = self._protocol, None
        if protocol is None:  # (the current connection is never one already lost)
            return defer.succeed(None)
        closed: defer.Deferred[None] = defer.Deferred()
        protocol.closed.addBoth(lambda _: None if closed.called else closed.callback(None))

        def too_late() -> None:
            # what was written could not be flushed (Redis stopped reading): closed now
            log.warn("the Redis connection did not close within {timeout} s; aborted",
                     timeout=self.stop_timeout)
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
        """Log in (C{AUTH}), pick the database (C{SELECT}) and PING; a new connection
        (or a restarted Redis) has no script loaded yet."""
        self._loaded.clear()
        commands: list[Command] = []
        if self.password is not None:
            user = self.settings.username
            commands.append(("AUTH", user, self.password) if user else ("AUTH", self.password))
        if self.settings.database:
            commands.append(("SELECT", self.settings.database))
        commands.append(("PING",))
        # a server that takes the connection but never answers (or a TLS handshake that
        # stalls) is given up on, as a command's reply is (L{SOCKET_TIMEOUT})
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
        log.info("connected to Redis at {host}:{port}", host=self.host, port=self.port)
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
        log.warn("cannot reach Redis at {host}:{port} ({error}); retrying in {delay} s",
                 host=self.host, port=self.port, error=self.last_error, delay=delay)
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
        log.warn("lost the connection to Redis ({error}); reconnecting", error=error)
        if self.on_state is not None:
            self.on_state(False)
        # (up means started and not trying to connect: no attempt is scheduled)
        self._retry = self.clock.callLater(self._backoff.next(), self._connect)

    def _check(self) -> None:
        """Every L{KEEPALIVE} seconds: an idle connection is checked with a PING; one
        whose oldest command has waited L{SOCKET_TIMEOUT} seconds for its reply is
        closed (and reconnected)."""
        self._keepalive = self.clock.callLater(KEEPALIVE, self._check)
        protocol = self._protocol
        oldest = protocol.oldest if protocol is not None else None
        if oldest is not None and self.clock.seconds() - oldest >= SOCKET_TIMEOUT:
            protocol.abort(f"no reply within {SOCKET_TIMEOUT} s")  # type: ignore[union-attr]
            return
        if not self._busy:
            self.execute("PING").addErrback(lambda _: None)
        self._busy = False

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


class RedisSubscription:
    """
    Stays subscribed to C{channels} on a connection of its own and hands each message to
    C{on_message(channel, data)} on the reactor. The subscriber runs on a thread of its
    own; when its connection breaks it is subscribed again after a back-off delay (as
    L{RedisConnection}). Messages waiting for the reactor are bounded
    (C{max_queued}); beyond, they are dropped, counted in C{dropped} and logged.
    """

    def __init__(self, reactor: Any, url: str, channels: tuple[str, ...],
                 on_message: Callable[[bytes, bytes], None], password: str | None = None,
                 *, ca_file: str | None = None, max_queued: int = MAX_QUEUED_MESSAGES,
                 client: Any = None, run: Runner | None = None,
                 stop_timeout: float = STOP_TIMEOUT):
        self.reactor = reactor
        self.stop_timeout = stop_timeout
        self.settings = parse_url(url)
        self.channels = channels
        self.on_message = on_message
        self.max_queued = max_queued
        options = client_options(self.settings, password, ca_file)
        options["health_check_interval"] = 10  # a silent dead connection is noticed
        self.client = client if client is not None else _client(options)
        self._pool: ThreadPool | None = None
        if run is None:
            self._pool = pool = _OneThread("redis-subscriber")
            run = _in_thread(reactor, pool)
        self._run = run
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.queued = 0  # messages handed to the reactor and not yet run
        self.dropped = 0
        self._backoff = _Backoff()
        self._retry: Any = None
        self._running = False

    def start(self) -> None:
        """Subscribe (on the subscriber's thread) and stay subscribed until L{stop}."""
        if self._running:
            return
        self._running = True
        self._stopping.clear()
        if self._pool is not None:
            self._pool.start()
        self._subscribe()

    def stop(self) -> defer.Deferred[None]:
        """Unsubscribe. Returns at once; the Deferred fires once the subscriber's thread
        has ended (within L{POLL} seconds, unless it is connecting), or after
        C{stop_timeout} seconds."""
        if not self._running:
            return defer.succeed(None)
        self._running = False
        self._stopping.set()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._pool is None:
            return defer.succeed(None)
        return _stop_pool(self.reactor, self._pool, lambda: None, self.stop_timeout)

    def _subscribe(self) -> None:
        self._retry = None
        d = self._run(self._listen)
        d.addCallbacks(lambda _: None, self._broken)

    def _broken(self, failure: Failure) -> None:
        if not self._running:
            return
        delay = self._backoff.next()
        log.warn("Redis subscription lost ({error}); subscribing again in {delay} s",
                 error=failure.value, delay=delay)
        self._retry = self.reactor.callLater(delay, self._subscribe)

    def _listen(self) -> None:
        """On the subscriber's thread: subscribe, then pass messages on until stopped
        (returns) or the connection breaks (raises)."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*self.channels)
            self.reactor.callFromThread(self._backoff.reset)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=POLL)
                if message is not None and message["type"] == "message":
                    self._hand_over(message["channel"], message["data"])
        finally:
            pubsub.close()

    def _hand_over(self, channel: bytes, data: bytes) -> None:
        """On the subscriber's thread: queue one message for the reactor, within the
        bound."""
        with self._lock:
            if self.queued >= self.max_queued:
                self.dropped += 1
                dropped = self.dropped
            else:
                self.queued += 1
                dropped = 0
        if dropped:
            if dropped == 1 or dropped % 1000 == 0:
                self.reactor.callFromThread(
                    log.warn, "Redis messages waiting for the reactor beyond {bound}: "
                    "{dropped} dropped so far", bound=self.max_queued, dropped=dropped)
            return
        self.reactor.callFromThread(self._deliver, channel, data)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        with self._lock:
            self.queued -= 1
        try:
            self.on_message(channel, data)
        except Exception:
            log.failure("a Redis message handler failed")
