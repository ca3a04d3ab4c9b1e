"""
Exactly-once POST: C{Idempotency-Key: <1..255 printable ASCII characters>}.

A POST that repeats a key its user (the authenticated identity; all trusted hosts count as
one user) sent within C{calls.idempotency_ttl} seconds, with the same path and parameters,
is answered with the first answer again, marked C{Idempotent-Replayed: true}, and does
nothing else: the phone does not ring twice. The same key with other parameters is 422;
the same key while its first request is still being processed is 409. Only successful
(2xx) answers are remembered: after an error the client may retry with the same key.

Keys live in an L{IdempotencyStore}; L{MemoryStore} keeps them in this process, bounded in
all and per user (the oldest are forgotten first). Another store (Redis, ...) only needs
the same C{get}/C{put}/C{delete}/C{expire}.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.server import Request

from sipxcc.timers import Clock
from sipxcc.web import intake
from sipxcc.web.errors import ApiError
from sipxcc.web.reply import Answer, Reply

if TYPE_CHECKING:
    from sipxcc.web.auth import Principal

HEADER = b"idempotency-key"
REPLAYED = b"idempotent-replayed"
MAX_KEY = 255
#: keys remembered in all, and per user, by default
MAX_KEYS = 100_000
MAX_KEYS_PER_USER = 1000
#: the user all trusted hosts share
TRUSTED_SCOPE = "\0trusted"


@dataclass(slots=True)
class Entry:
    """What a key stands for: the request's fingerprint and its answer (None: in progress)."""

    fingerprint: bytes
    reply: Reply | None
    expires: float


class IdempotencyStore(Protocol):
    """Where keys are remembered; C{scope} is the user, C{key} the header's value."""

    def get(self, scope: str, key: str) -> Entry | None: ...

    def put(self, scope: str, key: str, entry: Entry) -> None: ...

    def delete(self, scope: str, key: str) -> None: ...

    def expire(self) -> None: ...


class MemoryStore:
    """
    Keys in memory until they expire, at most C{max_keys} in all and C{max_per_user} per
    user: beyond either bound the oldest key (of that user, or of all) is forgotten.
    """

    def __init__(self, clock: Clock, max_keys: int = MAX_KEYS,
                 max_per_user: int = MAX_KEYS_PER_USER):
        self.clock = clock
        self.max_keys = max_keys
        self.max_per_user = max_per_user
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._users: dict[str, OrderedDict[str, None]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def count_of(self, scope: str) -> int:
        return len(self._users.get(scope, ()))

    def get(self, scope: str, key: str) -> Entry | None:
        entry = self._entries.get((scope, key))
        if entry is not None and entry.expires <= self.clock.seconds():
            self.delete(scope, key)
            return None
        return entry

    def put(self, scope: str, key: str, entry: Entry) -> None:
        self.expire()
        self.delete(scope, key)
        self._entries[(scope, key)] = entry
        keys = self._users.setdefault(scope, OrderedDict())
        keys[key] = None
        while len(keys) > self.max_per_user:
            self._forget(scope, next(iter(keys)))
        while len(self._entries) > self.max_keys:
            self._forget(*next(iter(self._entries)))

    def delete(self, scope: str, key: str) -> None:
        if self._entries.pop((scope, key), None) is None:
            return
        keys = self._users[scope]
        del keys[key]
        if not keys:
            del self._users[scope]

    def expire(self) -> None:
        """Forget the expired keys (all have the same lifetime: the oldest come first)."""
        now = self.clock.seconds()
        while self._entries:
            (scope, key), entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self.delete(scope, key)

    def _forget(self, scope: str, key: str) -> None:
        self.delete(scope, key)
        self.evicted += 1


def check_key(value: bytes | None) -> str | None:
    """The header's value as text, or L{ApiError} 400 naming the header."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or any(not 0x20 <= byte <= 0x7E for byte in value):
        raise ApiError(400, "Bad header Idempotency-Key: 1 to 255 printable ASCII characters")
    return value.decode("ascii")


def fingerprint(request: Request) -> bytes:
    """
    What makes two POSTs the same request: the users in the path (under either URL of the
    resource) and the parameters, in any order.
    """
    digest = hashlib.sha256(b"/".join(request.postpath or ()))
    for name, value in intake.query(request).pairs():  # the query string, as the handler
        digest.update(b"\0%d:%s\0%d:%s" % (len(name), name, len(value), value))
    return digest.digest()


class Idempotency:
    """Runs POSTs that carry an C{Idempotency-Key} at most once per key (module docstring)."""

    def __init__(self, store: IdempotencyStore, clock: Clock, ttl: float):
        self.store = store
        self.clock = clock
        self.ttl = ttl

    def run(self, request: Request, principal: Principal,
            handle: Callable[[], Answer]) -> Answer:
        """C{handle()} (a L{Reply} or a Deferred of one), or the remembered answer."""
        key = check_key(request.getHeader(HEADER))
        if key is None:
            return handle()
        scope = TRUSTED_SCOPE if principal.trusted else principal.identity
        assert scope is not None  # a principal that is not trusted is a user
        mark = fingerprint(request)
        entry = self.store.get(scope, key)
        if entry is not None:
            if entry.fingerprint != mark:
                raise ApiError(422, "Idempotency-Key already used with other parameters")
            if entry.reply is None:
                raise ApiError(409, "A request with this Idempotency-Key is still being "
                               "processed", ((b"retry-after", b"1"),))
            reply = entry.reply
            return Reply(reply.code, reply.body, reply.content_type,
                         [*reply.headers, (REPLAYED, b"true")])
        self.store.put(scope, key, Entry(mark, None, self.clock.seconds() + self.ttl))

        def done(reply: Reply) -> Reply:
            if isinstance(reply, Reply) and 200 <= reply.code < 300:
                self.store.put(scope, key, Entry(mark, reply, self.clock.seconds() + self.ttl))
            else:
                self.store.delete(scope, key)
            return reply

        def failed(failure: Failure) -> Failure:
            self.store.delete(scope, key)
            return failure
        try:
            result = handle()
        except BaseException:
            self.store.delete(scope, key)
            raise
        if isinstance(result, defer.Deferred):
            return result.addCallbacks(done, failed)
        return done(result)
