"""
Exactly-once POST: C{Idempotency-Key: <1..255 printable ASCII characters>}.

A POST that repeats a key its user (the authenticated identity; all trusted hosts count as
one user) sent within C{calls.idempotency_ttl} seconds, with the same path and parameters,
is answered with the first answer again, marked C{Idempotent-Replayed: true}, and does
nothing else: the phone does not ring twice. The same key with other parameters is 422;
the same key while its first request is still being processed is 409. Only successful
(2xx) answers are remembered, and only up to L{MAX_ANSWER} bytes: after an error (or an
answer too large to keep) the client may retry with the same key.

Keys live in an L{IdempotencyStore}, whose every answer is a Deferred: L{MemoryStore}
keeps them in this process, bounded in all and per user (the oldest are forgotten first);
L{sipxcc.web.idempotency_redis.RedisIdempotencyStore} keeps them in Redis, shared by every
node of a cluster (C{registry.backend = redis}), with the same bounds. A key is claimed
in one atomic step before the request runs (so two nodes cannot both run it), its answer
stored once the request succeeded, and the claim dropped if it failed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.server import Request

from sipxcc.logs import logger
from sipxcc.timers import Clock
from sipxcc.web import intake
from sipxcc.web.errors import ApiError
from sipxcc.web.reply import Answer, Reply

if TYPE_CHECKING:
    from sipxcc.web.auth import Principal

log = logger(__name__)

HEADER = b"idempotency-key"
REPLAYED = b"idempotent-replayed"
MAX_KEY = 255
#: keys remembered in all, and per user, by default
MAX_KEYS = 100_000
MAX_KEYS_PER_USER = 1000
#: the user all trusted hosts share
TRUSTED_SCOPE = "\0trusted"
#: the largest answer remembered, in bytes (body, content type and headers); a larger
#: 2xx answer is not kept (as after an error, a retry runs again). A POST's answer is a
#: processing-status document and a Location header, about 300 bytes.
MAX_ANSWER = 4096
#: seconds a key stays "in progress" at most: a node that stops while running a request
#: leaves the key to another attempt after this long (placing a call takes seconds)
CLAIM_LIFETIME = 60.0


@dataclass(slots=True)
class Entry:
    """What a key stands for: the request's fingerprint and its answer (None: in
    progress), until C{expires} (on the store's clock); C{token} names the request that
    claimed the key (only it may store its answer or drop the claim)."""

    fingerprint: bytes
    reply: Reply | None
    expires: float
    token: str = ""


def answer_size(reply: Reply) -> int:
    """The bytes a remembered answer takes: its body, content type and headers."""
    return (len(reply.body) + len(reply.content_type)
            + sum(len(name) + len(value) for name, value in reply.headers))


class IdempotencyStore(Protocol):
    """
    Where keys are remembered; C{scope} is the user, C{key} the header's value. Every
    answer is a Deferred; a store shared by several nodes fails with
    L{sipxcc.calls.errors.RegistryUnavailable} while it cannot be reached.
    """

    def claim(self, scope: str, key: str, entry: Entry) -> defer.Deferred[Entry | None]:
        """In one atomic step: the key's entry if it has one (fires with it, changes
        nothing); else C{entry} (in progress, C{entry.token}'s) becomes the key's until
        C{entry.expires}, and fires with None."""
        ...

    def remember(self, scope: str, key: str, entry: Entry) -> defer.Deferred[None]:
        """Keep C{entry} (the answer) until C{entry.expires}, unless the key is claimed
        by another request meanwhile (another token)."""
        ...

    def release(self, scope: str, key: str, token: str) -> defer.Deferred[None]:
        """Forget the key if C{token}'s claim or answer still holds it."""
        ...


class MemoryStore:
    """
    Keys in memory until they expire, at most C{max_keys} in all and C{max_per_user} per
    user: beyond either bound the oldest key (of that user, or of all) is forgotten. The
    L{IdempotencyStore} methods answer with Deferreds that have already fired, on top of
    the synchronous C{get}/C{put}/C{delete}/C{expire}.
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

    # --- the IdempotencyStore interface -------------------------------------------------
    def claim(self, scope: str, key: str, entry: Entry) -> defer.Deferred[Entry | None]:
        found = self.get(scope, key)
        if found is None:
            self.put(scope, key, entry)
        return defer.succeed(found)

    def remember(self, scope: str, key: str, entry: Entry) -> defer.Deferred[None]:
        found = self.get(scope, key)
        if found is None or found.token == entry.token:
            self.put(scope, key, entry)
        return defer.succeed(None)

    def release(self, scope: str, key: str, token: str) -> defer.Deferred[None]:
        found = self.get(scope, key)
        if found is not None and found.token == token:
            self.delete(scope, key)
        return defer.succeed(None)


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
    """Runs POSTs that carry an C{Idempotency-Key} at most once per key (module docstring).
    C{too_large} counts the 2xx answers not remembered for their size (L{MAX_ANSWER})."""

    def __init__(self, store: IdempotencyStore, clock: Clock, ttl: float, *,
                 max_answer: int = MAX_ANSWER, claim_lifetime: float = CLAIM_LIFETIME):
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.max_answer = max_answer
        self.claim_lifetime = min(claim_lifetime, ttl)
        self.too_large = 0

    def run(self, request: Request, principal: Principal,
            handle: Callable[[], Answer]) -> Answer:
        """C{handle()} (a L{Reply} or a Deferred of one) once the key is claimed, or the
        remembered answer; without a key, C{handle()} at once."""
        key = check_key(request.getHeader(HEADER))
        if key is None:
            return handle()
        scope = TRUSTED_SCOPE if principal.trusted else principal.identity
        assert scope is not None  # a principal that is not trusted is a user
        mine = Entry(fingerprint(request), None, self.clock.seconds() + self.claim_lifetime,
                     secrets.token_hex(8))
        claimed = self.store.claim(scope, key, mine)
        return claimed.addCallback(self._claimed, scope, key, mine, handle)

    def _claimed(self, found: Entry | None, scope: str, key: str, mine: Entry,
                 handle: Callable[[], Answer]) -> Answer:
        if found is not None:
            return replay(found, mine.fingerprint)
        try:
            result = handle()
        except Exception:
            answered: defer.Deferred[Reply] = defer.fail()
        else:
            answered = result if isinstance(result, defer.Deferred) else defer.succeed(result)
        return answered.addCallbacks(self._done, self._failed,
                                     callbackArgs=(scope, key, mine),
                                     errbackArgs=(scope, key, mine.token))

    def _done(self, reply: Reply, scope: str, key: str, mine: Entry) -> defer.Deferred[Reply]:
        if not 200 <= reply.code < 300:
            kept = self.store.release(scope, key, mine.token)
        elif answer_size(reply) > self.max_answer:
            self.too_large += 1
            log.warn("an answer of {size} bytes is not remembered for its Idempotency-Key "
                     "(at most {bound}): a retry runs again", size=answer_size(reply),
                     bound=self.max_answer)
            kept = self.store.release(scope, key, mine.token)
        else:
            kept = self.store.remember(scope, key, Entry(
                mine.fingerprint, reply, self.clock.seconds() + self.ttl, mine.token))
        kept.addErrback(_not_kept)
        return kept.addCallback(lambda _: reply)

    def _failed(self, failure: Failure, scope: str, key: str, token: str
                ) -> defer.Deferred[Reply]:
        released = self.store.release(scope, key, token)
        released.addErrback(_not_kept)
        return released.addCallback(lambda _: failure)


def replay(found: Entry, mark: bytes) -> Reply:
    """The remembered answer to the request C{mark} stands for, or why there is none
    (L{ApiError} 422: other parameters, 409: still in progress)."""
    if found.fingerprint != mark:
        raise ApiError(422, "Idempotency-Key already used with other parameters")
    if found.reply is None:
        raise ApiError(409, "A request with this Idempotency-Key is still being processed",
                       ((b"retry-after", b"1"),))
    reply = found.reply
    return Reply(reply.code, reply.body, reply.content_type,
                 [*reply.headers, (REPLAYED, b"true")])


def _not_kept(failure: Failure) -> None:
    """The request ran (its answer goes out); only the key's store could not be told."""
    log.warn("could not update an Idempotency-Key's entry: {error} (it stays in progress "
             "for at most {lifetime:.0f} s)", error=failure.value, lifetime=CLAIM_LIFETIME)
