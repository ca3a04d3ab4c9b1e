"""
Redis' protocol (RESP) on the reactor: commands are written on one stream in the order
given and replies matched to them in the same order (a Redis connection answers in
order). Encoding is redis-py's (C{Connection.pack_commands}), parsing is hiredis' reader
(Debian 12: python3-redis, python3-hiredis): this module only joins them to a Twisted
transport, so no thread hand-over sits between the reactor and Redis.

A subscribed connection (RESP2) is the same stream: Redis confirms a C{SUBSCRIBE} once per
channel, answers C{PING} with C{[b"pong", b""]}, and sends each message published on a
channel as C{[b"message", channel, data]} whenever it comes, even between a command and
its reply; such a push goes to the protocol's C{on_push}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

try:
    import hiredis
    import redis.connection
except ImportError as missing:
    raise ImportError("registry.backend = redis needs redis-py and hiredis: apt-get install "
                      "python3-redis python3-hiredis (or pip install 'sipxcc[redis]')"
                      ) from missing
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from sipxcc.calls.errors import RegistryUnavailable

Command = tuple[bytes | str | int | float, ...]

#: the commands Redis answers once per channel named (RESP2)
_PER_CHANNEL = frozenset({"SUBSCRIBE", "PSUBSCRIBE"})
#: what Redis sends a subscribed connection unasked: C{[kind, ...]}, never a reply
_PUSHED = frozenset({b"message", b"pmessage"})

#: redis-py's encoder (a connection object that never connects): str as UTF-8, numbers
#: as their decimal text, anything else refused (redis.DataError)
_PACKER = redis.connection.Connection()


#: bytes received without a complete reply beyond which the connection is closed: a
#: reply this large is not one sipxcc asked for (its largest is a call's status lines)
MAX_REPLY_BYTES = 64 * 1024 * 1024


class RedisError(Exception):
    """Redis answered a command with an error reply."""


class ConnectionLost(RegistryUnavailable):
    """The connection to Redis closed with commands unanswered."""


def pack(commands: list[Command]) -> bytes:
    """C{commands} as RESP arrays of bulk strings, one after the other."""
    return b"".join(_PACKER.pack_commands(commands))


def owed(command: Command) -> int:
    """How many replies Redis sends to C{command}: one, but one per channel to a
    C{SUBSCRIBE} (an error reply, though, is its whole answer)."""
    name = command[0]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if isinstance(name, str) and name.upper() in _PER_CHANNEL:
        return max(1, len(command) - 1)
    return 1


class _Waiting:
    """One group of commands written together, the replies each command still owes and
    the replies read so far."""

    __slots__ = ("owed", "replies", "deferred", "sent")

    def __init__(self, owed: deque[int], sent: float):
        self.owed = owed
        self.replies: list[Any] = []
        self.deferred: defer.Deferred[list[Any]] = defer.Deferred()
        self.sent = sent

    def answered(self, reply: Any) -> bool:
        """Take C{reply} (the first command's, or its next); True once every command has
        all of its replies."""
        self.replies.append(reply)
        if self.owed[0] == 1 or isinstance(reply, RedisError):
            self.owed.popleft()
        else:
            self.owed[0] -= 1
        return not self.owed


class RespProtocol(Protocol):
    """
    One connection to Redis. L{send} writes a group of commands and returns a Deferred
    firing with their replies in order: bytes, int, list or None, and an error reply as a
    L{RedisError} in its place (the group's other commands ran all the same); a
    C{SUBSCRIBE} has one reply per channel. When the connection closes, every group not
    fully answered fails with L{ConnectionLost} and C{on_lost(reason)} is called once.
    Bytes that are not RESP close the connection, and so do more than C{max_reply}
    bytes received without a complete reply.

    Without C{on_push} (a command connection), a reply Redis did not owe closes the
    connection. With it (a subscribed one), such a reply, and a published message
    whenever it comes (C{[b"message", ...]}, C{[b"pmessage", ...]}), go to
    C{on_push(reply)}.
    """

    def __init__(self, clock: Any, on_lost: Callable[[str], None] | None = None,
                 on_push: Callable[[Any], None] | None = None,
                 max_reply: int = MAX_REPLY_BYTES):
        self.clock = clock
        self.max_reply = max_reply
        self._partial = 0  # bytes received since the last complete reply
        self.on_lost = on_lost
        self.on_push = on_push
        self._reader = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[_Waiting] = deque()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.lost = False
        self._why: str | None = None  # why this side closed the connection

    def send(self, commands: list[Command]) -> defer.Deferred[list[Any]]:
        """Write C{commands} as one write; fires with their replies. No command: fires
        at once with none (nothing is written, nothing is owed). An argument redis-py
        cannot encode (C{None}, a lone surrogate): fails at once with its error, nothing
        written."""
        if self.lost or self.transport is None:
            return defer.fail(ConnectionLost("the Redis connection is closed"))
        if not commands:
            return defer.succeed([])
        try:
            data = pack(commands)
        except (redis.DataError, UnicodeEncodeError):
            return defer.fail()
        waiting = _Waiting(deque(owed(command) for command in commands), self.clock.seconds())
        self._waiting.append(waiting)
        self.transport.write(data)
        return waiting.deferred

    @property
    def oldest(self) -> float | None:
        """When the oldest group still waiting for a reply was written (None: none)."""
        return self._waiting[0].sent if self._waiting else None

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        self._partial += len(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as error:
                self.abort(f"Redis sent something that is not RESP: {error}")
                return
            if reply is False:
                if self._partial > self.max_reply and not self.lost:
                    self.abort(f"Redis sent a reply larger than {self.max_reply} bytes")
                return
            if self.lost:
                return
            self._partial = 0  # (the rest of this read is not counted: one read at most)
            if self.on_push is not None and (not self._waiting or _pushed(reply)):
                self.on_push(reply)
                continue
            if not self._waiting:
                self.abort("Redis sent a reply to no command")
                return
            head = self._waiting[0]
            if head.answered(reply):
                self._waiting.popleft()
                head.deferred.callback(head.replies)

    def abort(self, why: str) -> None:
        """Close the connection at once; C{why} is the reason given when it is lost."""
        self._why = why
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """C{on_lost} first (whoever owns the connection knows it is gone before the
        groups' callbacks run), then every group waiting fails (even if C{on_lost}
        raised)."""
        self.lost = True
        why = self._why or describe(reason)
        waiting, self._waiting = self._waiting, deque()
        try:
            if self.on_lost is not None:
                self.on_lost(why)
        finally:
            for group in waiting:
                group.deferred.errback(ConnectionLost(f"Redis connection lost: {why}"))
            self.closed.callback(None)


def _pushed(reply: Any) -> bool:
    """C{reply} is what Redis sends a subscribed connection unasked."""
    return isinstance(reply, list) and bool(reply) and isinstance(reply[0], bytes) and (
        reply[0] in _PUSHED)


def describe(reason: Failure) -> str:
    """Why a connection closed, in one line: a failed TLS handshake says so and why
    (OpenSSL's reasons; the names the certificate was not for), not the exception's
    repr."""
    if reason.check("service_identity.exceptions.VerificationError"):
        names = []
        for error in getattr(reason.value, "errors", ()):
            wanted = getattr(error, "mismatched_id", None)
            name = getattr(wanted, "ip", None) or getattr(wanted, "hostname", None)
            if isinstance(name, bytes):
                name = name.decode("ascii", "replace")
            names.append(str(name) if name is not None else type(error).__name__)
        if names:
            return f"TLS handshake failed: the certificate is not for {', '.join(names)}"
    if reason.check("OpenSSL.SSL.Error"):
        args = getattr(reason.value, "args", ())
        errors = args[0] if args and isinstance(args[0], list) else []
        reasons = [str(e[-1]) for e in errors if isinstance(e, tuple) and e and e[-1]]
        if reasons:
            return f"TLS handshake failed: {'; '.join(reasons)}"
    return reason.getErrorMessage()


def endpoint(reactor: Any, host: str, port: int, *, tls: bool, ca_file: str | None,
             timeout: float) -> IStreamClientEndpoint:
    """A TCP endpoint to C{host}:C{port}; over TLS the server's certificate must chain to
    C{ca_file}'s CAs (the system's without it) and name C{host}."""
    tcp = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    if not tls:
        return tcp
    from sipxcc.tls import client_options
    return endpoints.wrapClientTLS(client_options(host, ca_file), tcp)
