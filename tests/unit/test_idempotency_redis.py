"""
The Idempotency-Key contract on the Redis store, without the reactor: the real
RedisConnection on a real redis-server (tests/unit/redislive.py), each write answered
before it returns, time on a test clock. What a client sees (the first answer replayed
byte for byte, 422, 409, a retry after an error or a too large answer, 503 while Redis is
away), and what an operator sees in Redis (the key names, the value, the TTLs, the bounds
per user and in all, the oldest dropped first). The same contract runs on the memory
store.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import RedisConnection
from sipxcc.web.errors import ApiError
from sipxcc.web.idempotency import Entry, Idempotency, MemoryStore
from sipxcc.web.idempotency_redis import RedisIdempotencyStore
from sipxcc.web.reply import Reply
from tests.unit.redislive import URL, Cable, disconnect
from tests.unit.webfakes import WebRequest

URI = b"/callcontroller/user1/user2"
USER1 = SimpleNamespace(trusted=False, identity="user1@sipx.test")
DAY = 86400
#: an answer with every part a client reads, some of it not ASCII
ANSWER = Reply(201, b"<status>plac\xe9</status>\x00\xff", b"application/xml; x=\xe9",
               [(b"location", b"/calls/abc"), (b"x-note", b"caf\xe9")])


class Redis:
    """Stores on one emptied Redis and one clock; C{cli} is what redis-cli shows."""

    def __init__(self, server):
        self.server = server
        self.clock = Clock()
        self.clock.advance(1_700_000_000.25)
        CLOCKS[:] = [self.clock]
        self.cli = server.client()
        self.cli.execute_command("FLUSHALL")
        self.connections: list[RedisConnection] = []

    def __call__(self, ttl=DAY, **options):
        return self.store(ttl, **options)

    def store(self, ttl=DAY, **options):
        cable = Cable(self.server.socket, self.clock)
        connection = RedisConnection(self.clock, URL, connect=cable.connect)
        connection.start()
        self.connections.append(connection)
        store = RedisIdempotencyStore(self.clock, connection, ttl, **options)
        store.cable = cable
        return store

    def close(self):
        for connection in self.connections:
            connection.stop()
        disconnect(self.cli)


@pytest.fixture
def redis(redis_process):
    made = Redis(redis_process)
    yield made
    made.close()


@pytest.fixture(params=["memory", "redis"])
def stores(request, redis):
    """Makes the stores two nodes use: one MemoryStore, or one Redis store per node."""
    if request.param == "memory":
        shared = {}

        def memory(**options):
            options.pop("ttl", None)
            if "store" not in shared:
                shared["store"] = MemoryStore(redis.clock, **options)
            return shared["store"]
        memory.clock = redis.clock
        return memory
    return redis


def post(key=b"k1", uri=URI):
    return WebRequest(b"POST", uri, headers={b"Idempotency-Key": key})


CLOCKS: list[Clock] = []


def result(d):
    """What a Deferred gave once the clock ran what is due now (its exception raised)."""
    out = []
    d.addBoth(out.append)
    for clock in CLOCKS:
        clock.advance(0)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


class Handler:
    """Stands for the POST handler: counts its runs, answers C{answer}."""

    def __init__(self, answer=ANSWER):
        self.runs, self.answer = 0, answer

    def __call__(self):
        self.runs += 1
        return self.answer() if callable(self.answer) else self.answer


def two(stores, ttl=DAY, **options):
    a = Idempotency(stores(ttl=ttl), stores.clock, ttl, **options)
    b = Idempotency(stores(ttl=ttl), stores.clock, ttl, **options)
    return a, b


def refused(d):
    with pytest.raises(ApiError) as raised:
        result(d)
    return raised.value


def claim(store, scope, key, clock):
    return result(store.claim(scope, key, Entry(b"f", None, clock.seconds() + 60, "t")))


# --- the contract, on either store ------------------------------------------------------


def test_a_repeated_key_on_the_other_node_replays_the_first_answer_byte_for_byte(stores):
    a, b = two(stores)
    handler = Handler()
    first = result(a.run(post(), USER1, handler))
    again = result(b.run(post(), USER1, handler))
    assert handler.runs == 1
    assert (first.code, first.body, first.content_type, first.headers) == (
        ANSWER.code, ANSWER.body, ANSWER.content_type, ANSWER.headers)
    assert (again.code, again.body, again.content_type, again.headers) == (
        201, ANSWER.body, ANSWER.content_type,
        [*ANSWER.headers, (b"idempotent-replayed", b"true")])


def test_other_parameters_are_422_and_a_key_in_progress_409(stores):
    a, b = two(stores)
    pending = defer.Deferred()
    running = a.run(post(), USER1, lambda: pending)
    stores.clock.advance(0)
    busy = refused(b.run(post(), USER1, Handler()))
    assert (busy.code, busy.headers) == (409, [(b"retry-after", b"1")])
    assert refused(b.run(post(uri=URI + b"?timeout=30"), USER1, Handler())).code == 422
    pending.callback(ANSWER)
    assert result(running).body == ANSWER.body
    assert refused(b.run(post(uri=URI + b"?timeout=30"), USER1, Handler())).code == 422


def test_a_failed_request_frees_its_key_for_a_retry_on_the_other_node(stores):
    a, b = two(stores)
    for n, failing in enumerate((lambda: Reply(503, b"busy"),
                                 lambda: defer.fail(RuntimeError("no")))):
        answered = a.run(post(b"k%d" % n), USER1, failing)
        answered.addErrback(lambda _: None)
        result(answered)
        handler = Handler()
        retried = result(b.run(post(b"k%d" % n), USER1, handler))
        assert handler.runs == 1 and retried.headers == ANSWER.headers


def test_an_answer_above_the_bound_is_not_kept_and_a_retry_runs_again(stores):
    a, b = two(stores, max_answer=200)
    handler = Handler(Reply(200, b"x" * 300))
    result(a.run(post(), USER1, handler))
    result(b.run(post(), USER1, handler))
    assert handler.runs == 2 and a.too_large == 1 and b.too_large == 1


def test_beyond_the_bound_per_user_the_users_oldest_keys_are_forgotten(stores):
    a = stores(max_keys=100, max_per_user=3)
    b = stores(max_keys=100, max_per_user=3)
    for n in range(5):
        stores.clock.advance(1)
        claim(a if n % 2 else b, "alice", f"k{n}", stores.clock)
    claim(b, "bob", "k0", stores.clock)
    found = [claim(a, "alice", f"k{n}", stores.clock) is not None for n in (4, 3, 2, 1, 0)]
    assert found == [True, True, True, False, False]
    assert claim(a, "bob", "k0", stores.clock) is not None


def test_beyond_the_bound_in_all_the_oldest_keys_are_forgotten(stores):
    a = stores(max_keys=3, max_per_user=10)
    b = stores(max_keys=3, max_per_user=10)
    for n, scope in enumerate(("u1", "u2", "u3", "u4", "u5")):
        stores.clock.advance(1)
        claim(a if n % 2 else b, scope, "k", stores.clock)
    found = [claim(a, scope, "k", stores.clock) is not None
             for scope in ("u5", "u4", "u3", "u2", "u1")]
    assert found == [True, True, True, False, False]


# --- Redis only: what an operator sees ----------------------------------------------------


def name(key, user="user1@sipx.test", prefix="sipxcc:"):
    return f"{prefix}idem:{user}:{hashlib.sha256(key).hexdigest()}".encode()


def test_the_key_names_the_user_hashes_the_key_and_holds_the_compact_value(redis):
    a = Idempotency(redis.store(), redis.clock, DAY)
    odd = b"order 4711 ~!@#$%^&*()_+{}|:<>?"
    pending = defer.Deferred()
    running = a.run(post(odd), USER1, lambda: pending)
    redis.clock.advance(0)  # the claim is written
    assert redis.cli.execute_command("KEYS", "sipxcc:idem:*") == [name(odd)]
    claimed = json.loads(redis.cli.execute_command("GET", name(odd)))
    assert sorted(claimed) == ["f", "t"] and len(claimed["t"]) == 16
    assert 59_000 < redis.cli.execute_command("PTTL", name(odd)) <= 60_000
    pending.callback(ANSWER)
    result(running)
    assert DAY * 1000 - 1000 < redis.cli.execute_command("PTTL", name(odd)) <= DAY * 1000
    value = redis.cli.execute_command("GET", name(odd))
    assert value == json.dumps(
        {"f": claimed["f"], "t": claimed["t"],
         "r": {"c": 201, "y": "application/xml; x=\u00e9",
               "h": [["location", "/calls/abc"], ["x-note", "caf\u00e9"]],
               "b": "PHN0YXR1cz5wbGFj6Twvc3RhdHVzPgD/"}},
        separators=(",", ":")).encode()
    assert sorted(redis.cli.execute_command("KEYS", "sipxcc:idem-keys*")) == [
        b"sipxcc:idem-keys", b"sipxcc:idem-keys:user1@sipx.test"]
    for index in (b"sipxcc:idem-keys", b"sipxcc:idem-keys:user1@sipx.test"):
        assert redis.cli.execute_command("ZRANGE", index, 0, -1, "WITHSCORES") == [
            name(odd), b"1700000000.25"]
        assert DAY * 1000 - 1000 < redis.cli.execute_command("PTTL", index) <= DAY * 1000


def test_the_indexes_live_as_long_as_the_ttl_and_the_answer_extends_them(redis):
    store = redis.store(ttl=100)
    idempotency = Idempotency(store, redis.clock, 100)
    pending = defer.Deferred()
    running = idempotency.run(post(), USER1, lambda: pending)
    redis.clock.advance(0)
    assert 59_000 < redis.cli.execute_command("PTTL", name(b"k1")) <= 60_000
    for index in (b"sipxcc:idem-keys", b"sipxcc:idem-keys:user1@sipx.test"):
        assert 99_000 < redis.cli.execute_command("PTTL", index) <= 100_000
        redis.cli.execute_command("PEXPIRE", index, 5000)
    redis.clock.advance(30)
    pending.callback(ANSWER)
    result(running)
    assert 99_000 < redis.cli.execute_command("PTTL", name(b"k1")) <= 100_000
    for index in (b"sipxcc:idem-keys", b"sipxcc:idem-keys:user1@sipx.test"):
        assert 99_000 < redis.cli.execute_command("PTTL", index) <= 100_000
        assert redis.cli.execute_command("ZRANGE", index, 0, -1, "WITHSCORES") == [
            name(b"k1"), b"1700000030.25"]


def test_a_prefix_names_every_key_and_keys_older_than_the_ttl_leave_the_indexes(redis):
    store = redis.store(ttl=10, prefix="p1:", max_keys=5, max_per_user=5)
    assert claim(store, "alice", "old", redis.clock) is None
    redis.clock.advance(10.5)
    assert claim(store, "alice", "new", redis.clock) is None
    for index in (b"p1:idem-keys", b"p1:idem-keys:alice"):
        assert redis.cli.execute_command("ZRANGE", index, 0, -1) == [
            name(b"new", "alice", "p1:")]
    assert sorted(redis.cli.execute_command("KEYS", "*")) == sorted([
        b"p1:idem-keys", b"p1:idem-keys:alice", name(b"new", "alice", "p1:"),
        name(b"old", "alice", "p1:")])
    assert store.forgotten == 0


def test_the_keys_forgotten_for_the_bounds_are_counted_and_gone_from_both_indexes(redis):
    store = redis.store(max_keys=10, max_per_user=2)
    assert store.forgotten == 0
    for n in range(4):
        redis.clock.advance(1)
        claim(store, "alice", f"k{n}", redis.clock)
    assert store.forgotten == 2
    kept = [name(b"k2", "alice"), name(b"k3", "alice")]
    assert redis.cli.execute_command("ZRANGE", "sipxcc:idem-keys", 0, -1) == kept
    assert redis.cli.execute_command("ZRANGE", "sipxcc:idem-keys:alice", 0, -1) == kept
    assert sorted(redis.cli.execute_command("KEYS", "sipxcc:idem:*")) == kept


def test_the_default_bounds_are_those_of_the_memory_store(redis):
    store = redis.store()
    assert (store.prefix, store.max_keys, store.max_per_user) == ("sipxcc:", 100_000, 1000)


def test_only_the_claiming_request_stores_its_answer_or_drops_the_key(redis):
    store = redis.store()
    mine = Entry(b"f", None, redis.clock.seconds() + 60, "mine")
    assert result(store.claim("u", "k", mine)) is None
    answer = Entry(b"f", ANSWER, redis.clock.seconds() + DAY, "other")
    assert result(store.remember("u", "k", answer)) is None
    assert result(store.release("u", "k", "other")) is None
    found = result(store.claim("u", "k", mine))
    assert (found.fingerprint, found.reply, found.token) == (b"f", None, "mine")
    result(store.remember("u", "k", Entry(b"f", ANSWER, redis.clock.seconds() + DAY, "mine")))
    found = result(store.claim("u", "k", mine))
    assert (found.reply.code, found.reply.body, found.reply.content_type,
            found.reply.headers, found.token) == (
        201, ANSWER.body, ANSWER.content_type, ANSWER.headers, "mine")
    result(store.release("u", "k", "mine"))
    assert redis.cli.execute_command("KEYS", "*") == []


def test_an_entry_already_expired_gets_the_shortest_lifetime(redis):
    store = redis.store()
    result(store.claim("u", "k", Entry(b"f", None, redis.clock.seconds() - 5, "t")))
    assert redis.cli.execute_command("PTTL", name(b"k", "u")) in (-2, 0, 1)


def test_without_redis_a_post_with_a_key_fails_unavailable_and_nothing_runs(redis):
    store = redis.store()
    store.cable.plugged = False
    idempotency = Idempotency(store, redis.clock, DAY)
    handler = Handler()
    with pytest.raises(RegistryUnavailable):
        result(idempotency.run(post(), USER1, handler))
    assert handler.runs == 0
