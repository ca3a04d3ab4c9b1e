"""
The Idempotency-Key contract against both stores: the memory store, and Redis (a real
redis-server) shared by two nodes. Same requests, same answers on either node: the first
answer replayed, other parameters 422, in progress 409, a failed request's key free for a
retry, exactly one of many concurrent claims runs, the answer's size bound, expiry after
the TTL, the bounds per user and in all; for Redis, what its keys are named and hold.
"""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import RedisConnection
from sipxcc.web.auth import TRUSTED
from sipxcc.web.errors import ApiError
from sipxcc.web.idempotency import Entry, Idempotency, MemoryStore
from sipxcc.web.idempotency_redis import RedisIdempotencyStore
from sipxcc.web.reply import Reply
from tests.integration.redisserver import RedisServer
from tests.unit.webfakes import WebRequest

URI = b"/callcontroller/user1/user2"


def user(identity):
    """An authenticated user, as the idempotency layer sees one."""
    return SimpleNamespace(trusted=False, identity=identity)


USER1 = user("user1@sipx.test")
DAY = 86400


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@defer.inlineCallbacks
def _connect(url):
    connection = RedisConnection(reactor, url)
    connection.start()
    yield connection.when_up()
    return connection


class Nodes:
    """Makes the stores of two nodes: one shared MemoryStore (what one process does), or
    one RedisIdempotencyStore per node, each on its own connection to one Redis."""

    def __init__(self, backend, server):
        self.backend, self.server = backend, server
        self.connections: list[RedisConnection] = []
        self.memory = None

    @defer.inlineCallbacks
    def store(self, **bounds):
        if self.backend == "memory":
            if self.memory is None:
                self.memory = MemoryStore(reactor, **bounds)
            return self.memory
        connection = yield _connect(self.server.url)
        self.connections.append(connection)
        return RedisIdempotencyStore(reactor, connection, DAY, **bounds)

    @defer.inlineCallbacks
    def two(self, ttl=DAY, **options):
        """Two nodes' L{Idempotency} over the same keys."""
        a = Idempotency((yield self.store()), reactor, ttl, **options)
        b = Idempotency((yield self.store()), reactor, ttl, **options)
        return a, b

    def close(self):
        for connection in self.connections:
            connection.stop()


@pytest.fixture(params=["memory", "redis"])
def nodes(request, redis_server):
    if request.param == "redis":
        flush = pytest_twisted.blockon(_connect(redis_server.url))
        pytest_twisted.blockon(flush.execute("FLUSHALL"))
        flush.stop()
    made = Nodes(request.param, redis_server)
    yield made
    made.close()


def post(key=b"k1", uri=URI):
    return WebRequest(b"POST", uri, headers={b"Idempotency-Key": key})


ANSWER = Reply(200, b"<status>placed</status>", b"application/xml",
               [(b"location", b"/calls/abc")])


class Handler:
    """Stands for the POST handler: counts its runs, answers C{answer}."""

    def __init__(self, answer=ANSWER):
        self.runs, self.answer = 0, answer

    def __call__(self):
        self.runs += 1
        return self.answer() if callable(self.answer) else self.answer


@defer.inlineCallbacks
def _refused(d):
    with pytest.raises(ApiError) as raised:
        yield d
    return raised.value


@pytest_twisted.inlineCallbacks
def test_a_repeated_key_on_the_other_node_replays_the_first_answer(nodes):
    a, b = yield nodes.two()
    handler = Handler()
    first = yield a.run(post(), USER1, handler)
    again = yield b.run(post(), USER1, handler)
    assert handler.runs == 1
    assert (first.code, first.body, first.content_type, first.headers) == (
        200, ANSWER.body, b"application/xml", [(b"location", b"/calls/abc")])
    assert (again.code, again.body, again.content_type, again.headers) == (
        200, ANSWER.body, b"application/xml",
        [(b"location", b"/calls/abc"), (b"idempotent-replayed", b"true")])


@pytest_twisted.inlineCallbacks
def test_other_parameters_are_422_and_a_key_in_progress_409_on_either_node(nodes):
    a, b = yield nodes.two()
    pending, started = defer.Deferred(), defer.Deferred()

    def slow():
        started.callback(None)
        return pending
    running = a.run(post(), USER1, slow)
    yield started  # A holds the key now (its claim went through Redis first)
    busy = yield _refused(b.run(post(), USER1, Handler()))
    assert (busy.code, busy.headers) == (409, [(b"retry-after", b"1")])
    other = yield _refused(b.run(post(uri=URI + b"?timeout=30"), USER1, Handler()))
    assert other.code == 422
    pending.callback(ANSWER)
    yield running
    other = yield _refused(b.run(post(uri=URI + b"?timeout=30"), USER1, Handler()))
    assert other.code == 422


@pytest_twisted.inlineCallbacks
def test_a_failed_request_frees_its_key_for_a_retry_on_the_other_node(nodes):
    a, b = yield nodes.two()
    for failing in (lambda: Reply(503, b"busy"), lambda: defer.fail(RuntimeError("no"))):
        answered = a.run(post(), USER1, failing)
        answered.addErrback(lambda _: None)
        yield answered
        handler = Handler()
        retried = yield b.run(post(), USER1, handler)
        assert handler.runs == 1 and retried.headers == ANSWER.headers
        yield nodes_forget(b, "k1")


def nodes_forget(idempotency, key):
    """Drop a key (its answer) so that the next round starts afresh."""
    store = idempotency.store
    if isinstance(store, MemoryStore):
        store.delete("user1@sipx.test", key)
        return defer.succeed(None)
    return store.redis.execute("DEL", store.name("user1@sipx.test", key))


@pytest_twisted.inlineCallbacks
def test_of_many_concurrent_posts_with_one_key_on_two_nodes_exactly_one_runs(nodes):
    a, b = yield nodes.two()
    handler = Handler(lambda: task.deferLater(reactor, 0.05, lambda: ANSWER))
    results = yield defer.DeferredList(
        [(a if n % 2 else b).run(post(), USER1, handler) for n in range(20)],
        consumeErrors=True)
    assert handler.runs == 1
    answered = [r for ok, r in results if ok]
    refused = [r.value.code for ok, r in results if not ok]
    assert len(answered) == 1 and refused == [409] * 19


@pytest_twisted.inlineCallbacks
def test_an_answer_above_the_bound_is_not_kept_and_a_retry_runs_again(nodes):
    a, b = yield nodes.two(max_answer=200)
    handler = Handler(Reply(200, b"x" * 300))
    yield a.run(post(), USER1, handler)
    yield b.run(post(), USER1, handler)
    assert handler.runs == 2 and a.too_large == 1 and b.too_large == 1


@pytest_twisted.inlineCallbacks
def test_a_key_is_forgotten_after_its_ttl(nodes):
    a, b = yield nodes.two(ttl=1)
    handler = Handler()
    yield a.run(post(), USER1, handler)
    replayed = yield b.run(post(), USER1, handler)
    assert handler.runs == 1 and (b"idempotent-replayed", b"true") in replayed.headers
    deadline = time.monotonic() + 10
    while handler.runs == 1:
        assert time.monotonic() < deadline, "the key was never forgotten"
        yield task.deferLater(reactor, 0.1, lambda: None)
        yield b.run(post(), USER1, handler)
    assert handler.runs == 2


def _claim(store, scope, key):
    """Claim (scope, key): fires with the entry it had (None: it had none, claimed now)."""
    return store.claim(scope, key, Entry(b"f", None, reactor.seconds() + 60, "t"))


@pytest_twisted.inlineCallbacks
def test_beyond_the_bound_per_user_the_users_oldest_keys_are_forgotten(nodes):
    a = yield nodes.store(max_keys=100, max_per_user=3)
    b = yield nodes.store(max_keys=100, max_per_user=3)  # the other node
    for n in range(5):
        yield _claim(a if n % 2 else b, "alice", f"k{n}")
    yield _claim(b, "bob", "k0")
    # newest first: looking at a key that is there changes nothing
    found = []
    for n in (4, 3, 2, 1):
        found.append((yield _claim(a, "alice", f"k{n}")) is not None)
    assert found == [True, True, True, False]
    assert (yield _claim(a, "bob", "k0")) is not None


@pytest_twisted.inlineCallbacks
def test_beyond_the_bound_in_all_the_oldest_keys_are_forgotten(nodes):
    a = yield nodes.store(max_keys=3, max_per_user=10)
    b = yield nodes.store(max_keys=3, max_per_user=10)
    for n, scope in enumerate(("u1", "u2", "u3", "u4")):
        yield _claim(a if n % 2 else b, scope, "k")
    found = []
    for scope in ("u4", "u3", "u2", "u1"):
        found.append((yield _claim(a, scope, "k")) is not None)
    assert found == [True, True, True, False]


# --- Redis only ---------------------------------------------------------------------------

@pytest.fixture
def redis_nodes(redis_server):
    made = Nodes("redis", redis_server)
    flush = pytest_twisted.blockon(_connect(redis_server.url))
    pytest_twisted.blockon(flush.execute("FLUSHALL"))
    flush.stop()
    yield made
    made.close()


@pytest_twisted.inlineCallbacks
def test_the_redis_key_names_the_user_hashes_the_key_and_expires(redis_nodes):
    a, _ = yield redis_nodes.two()
    odd = b"order 4711 ~!@#$%^&*()_+{}|:<>?"
    pending = defer.Deferred()
    running = a.run(post(odd), USER1, lambda: pending)
    redis = a.store.redis
    name = "sipxcc:idem:user1@sipx.test:" + hashlib.sha256(odd).hexdigest()
    names = yield redis.execute("KEYS", "sipxcc:idem:*")
    assert names == [name.encode()]
    claim_ms = yield redis.execute("PTTL", name)
    assert 0 < claim_ms <= 60_000  # in progress: the claim's lifetime, not a day
    pending.callback(ANSWER)
    yield running
    answer_ms = yield redis.execute("PTTL", name)
    assert 60_000 < answer_ms <= DAY * 1000
    value = yield redis.execute("GET", name)
    assert odd not in value and b"Idempotency" not in value  # no request header kept
    indexes = yield redis.execute("KEYS", "sipxcc:idem-keys*")
    assert sorted(indexes) == [b"sipxcc:idem-keys", b"sipxcc:idem-keys:user1@sipx.test"]


@pytest_twisted.inlineCallbacks
def test_trusted_hosts_and_users_have_keys_of_their_own(redis_nodes):
    a, b = yield redis_nodes.two()
    handler = Handler()
    yield a.run(post(), USER1, handler)
    yield b.run(post(), TRUSTED, handler)
    yield b.run(post(), user("user2@sipx.test"), handler)
    assert handler.runs == 3


@pytest_twisted.inlineCallbacks
def test_without_redis_a_post_with_a_key_fails_unavailable_and_nothing_runs():
    connection = RedisConnection(reactor, "redis://127.0.0.1:1/0")  # never connected
    idempotency = Idempotency(RedisIdempotencyStore(reactor, connection, DAY), reactor, DAY)
    handler = Handler()
    with pytest.raises(RegistryUnavailable):
        yield idempotency.run(post(), USER1, handler)
    assert handler.runs == 0
