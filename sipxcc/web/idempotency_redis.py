"""
Idempotency keys in Redis (C{registry.backend = redis}): every node of a cluster sees the
same keys, so a client's retry that lands on another node is answered with the first
answer, not placed again.

One Redis string per key, C{<prefix>idem:<user>:<sha256 of the key, hex>} (the user in the
name, the key hashed: any header value makes a safe, fixed-length name), holding JSON: the
request's fingerprint, the token of the request that claimed it and, once it succeeded,
its answer (status, content type, headers, body in base64; at most
L{sipxcc.web.idempotency.MAX_ANSWER} bytes, checked before it is stored). It expires with
Redis' own TTL: the claim after L{sipxcc.web.idempotency.CLAIM_LIFETIME} seconds, the
answer after C{calls.idempotency_ttl}. Two sorted sets by time, C{<prefix>idem-keys:<user>}
and C{<prefix>idem-keys}, bound the keys per user and in all as the memory store does
(the oldest forgotten first). Each step is one Lua script, so claiming is atomic across
nodes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Protocol

from twisted.internet import defer

from sipxcc.timers import Clock
from sipxcc.web.idempotency import MAX_KEYS, MAX_KEYS_PER_USER, Entry
from sipxcc.web.reply import Reply

Argument = bytes | str | int | float

# The key's value if it has one; else claim it, and forget the oldest keys beyond the
# bounds (of this user, of all). Fires with the value found, or the number forgotten.
# KEYS: the key, the user's index, the index of all
# ARGV: the claim, its lifetime (ms), now (s), the oldest time still kept (s),
#       keys per user, keys in all, the prefix, the indexes' lifetime (ms)
CLAIM = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local limits = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local forgotten = 0
for i = 2, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[4])
  redis.call('ZADD', KEYS[i], ARGV[3], KEYS[1])
  local over = redis.call('ZCARD', KEYS[i]) - limits[i - 1]
  if over > 0 then
    -- the oldest (the new key itself never: others may share its time)
    for _, name in ipairs(redis.call('ZRANGE', KEYS[i], 0, over)) do
      if over > 0 and name ~= KEYS[1] then
        -- <prefix>idem:<user>:<64 hex digits> -> <prefix>idem-keys:<user>
        local user = string.sub(name, string.len(ARGV[7]) + 6, -66)
        redis.call('DEL', name)
        redis.call('ZREM', KEYS[3], name)
        redis.call('ZREM', ARGV[7] .. 'idem-keys:' .. user, name)
        forgotten = forgotten + 1
        over = over - 1
      end
    end
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[8])
end
return forgotten
"""

# Store the answer, unless another request claimed the key meanwhile.
# KEYS: the key, the user's index, the index of all; ARGV: token, value, ttl (ms), now (s)
REMEMBER = """
local found = redis.call('GET', KEYS[1])
if found and cjson.decode(found)['t'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ARGV[4], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return 1
"""

# Forget the key if the token's claim still holds it. KEYS: as above; ARGV: token
RELEASE = """
local found = redis.call('GET', KEYS[1])
if not found or cjson.decode(found)['t'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return 1
"""


class RedisCommands(Protocol):
    """What the store needs of the Redis connection
    (L{sipxcc.calls.redis_client.RedisConnection}): one command, answered by a Deferred
    (failing with L{sipxcc.calls.errors.RegistryUnavailable} while Redis is away)."""

    def execute(self, *args: Argument) -> defer.Deferred[Any]: ...


def encode(entry: Entry) -> str:
    """An entry as the key's value holds it (JSON, ASCII)."""
    value: dict[str, Any] = {"f": entry.fingerprint.hex(), "t": entry.token}
    reply = entry.reply
    if reply is not None:
        value["r"] = {"c": reply.code, "y": reply.content_type.decode("latin-1"),
                      "h": [[name.decode("latin-1"), v.decode("latin-1")]
                            for name, v in reply.headers],
                      "b": base64.b64encode(reply.body).decode("ascii")}
    return json.dumps(value, separators=(",", ":"))


def decode(data: bytes) -> Entry:
    """The L{Entry} a key's value stands for (its C{expires} is Redis' business: 0)."""
    value = json.loads(data)
    answer = value.get("r")
    reply = None
    if answer is not None:
        reply = Reply(int(answer["c"]), base64.b64decode(answer["b"]),
                      answer["y"].encode("latin-1"),
                      [(n.encode("latin-1"), v.encode("latin-1")) for n, v in answer["h"]])
    return Entry(bytes.fromhex(value["f"]), reply, 0.0, value["t"])


class RedisIdempotencyStore:
    """
    An L{sipxcc.web.idempotency.IdempotencyStore} in Redis, shared by every node that
    talks to the same Redis with the same C{prefix} (module docstring). C{redis} is the
    node's command connection; C{ttl} is C{calls.idempotency_ttl} (how long the indexes
    keep a key). C{forgotten} counts the keys forgotten for the bounds by this node.
    """

    def __init__(self, clock: Clock, redis: RedisCommands, ttl: float, *,
                 prefix: str = "sipxcc:", max_keys: int = MAX_KEYS,
                 max_per_user: int = MAX_KEYS_PER_USER):
        self.clock = clock
        self.redis = redis
        self.ttl = ttl
        self.prefix = prefix
        self.max_keys = max_keys
        self.max_per_user = max_per_user
        self.forgotten = 0

    def name(self, scope: str, key: str) -> str:
        """The Redis key of (user, Idempotency-Key)."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self.prefix}idem:{scope}:{digest}"

    def _keys(self, scope: str, key: str) -> tuple[str, str, str]:
        return (self.name(scope, key), f"{self.prefix}idem-keys:{scope}",
                f"{self.prefix}idem-keys")

    def _ms(self, expires: float) -> int:
        return max(1, round((expires - self.clock.seconds()) * 1000))

    def claim(self, scope: str, key: str, entry: Entry) -> defer.Deferred[Entry | None]:
        now = self.clock.seconds()
        d = self.redis.execute(
            "EVAL", CLAIM, 3, *self._keys(scope, key), encode(entry), self._ms(entry.expires),
            repr(now), repr(now - self.ttl), self.max_per_user, self.max_keys, self.prefix,
            max(1, round(self.ttl * 1000)))
        return d.addCallback(self._claimed)

    def _claimed(self, reply: Any) -> Entry | None:
        if isinstance(reply, bytes):
            return decode(reply)
        self.forgotten += int(reply)
        return None

    def remember(self, scope: str, key: str, entry: Entry) -> defer.Deferred[None]:
        d = self.redis.execute("EVAL", REMEMBER, 3, *self._keys(scope, key), entry.token,
                               encode(entry), self._ms(entry.expires),
                               repr(self.clock.seconds()))
        return d.addCallback(lambda _: None)

    def release(self, scope: str, key: str, token: str) -> defer.Deferred[None]:
        d = self.redis.execute("EVAL", RELEASE, 3, *self._keys(scope, key), token)
        return d.addCallback(lambda _: None)
