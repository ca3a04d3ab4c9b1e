"""
The call registry's contract, against both backends: the in-memory registry and the one
shared through a real redis-server. Same requests, same answers: calls found by id and
by key, listed newest first, the limits (cluster-wide for Redis), the one-call-in-
progress rule, release when a call ends, and a finished call forgotten after its result
cache time.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from sipxcc.calls.call import (
    EARLY,
    MAX_EVENTS,
    MAX_FINAL_EVENTS,
    TERMINATED,
    CallRequest,
    DialogInfo,
)
from sipxcc.calls.errors import (
    AgentLimit,
    CallInProgress,
    OwnerTimeout,
    OwnerUnavailable,
    RegistryUnavailable,
    TooManyCalls,
    TransferNotPossible,
)
from sipxcc.calls.redis_client import RedisConnection, RedisSubscription
from sipxcc.calls.redis_commands import CommandRouter
from sipxcc.calls.redis_store import RedisCallStore
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.store import MemoryCallStore
from sipxcc.users import User
from tests.integration.redisserver import RedisServer

USER1 = User("user1@sipx.test", "user1", ("201",), None, None, None)
USER3 = User("user3@sipx.test", "user3", ("203",), None, None, None)


class FakeFlow:
    """A flow that rings, records one status line, and ends when hung up."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        self.call.set_state("ringing")
        self.call.record(int(time.time() * 1000), "sip-call-id", "INVITE",
                         "SIP/2.0 180 Ringing")

    def transfer(self, target, timeout=None):
        self.transferred = (target, timeout)

    def hangup(self, why="hangup"):
        if not self.call.ended:
            self.call.record(int(time.time() * 1000), "sip-call-id", "BYE",
                             "SIP/2.0 200 OK")
            self.call.finish("ended")
            self.on_end(self.call)


class FailingFlow(FakeFlow):
    """A flow whose call fails while it starts (the proxy refused at once)."""

    def start(self):
        self.call.record(int(time.time() * 1000), "sip-call-id", "INVITE",
                         "SIP/2.0 403 Forbidden")
        self.call.finish("failed")
        self.on_end(self.call)


def req(agent=USER1, calling="user1@sipx.test", called="user2@sipx.test", **kw):
    return CallRequest(agent, calling, called, **kw)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def _blocking(d):
    return pytest_twisted.blockon(d)


class Node:
    """One node's store (and, for Redis, its connection and command subscription)."""

    def __init__(self, store, registry, connection=None, subscription=None):
        self.store, self.registry, self.connection = store, registry, connection
        self.subscription = subscription

    def close(self):
        if self.subscription is not None:
            self.subscription.stop()
        if self.connection is not None:
            self.store.close()
        self.registry.clear()
        if self.connection is not None:
            self.connection.stop()


@defer.inlineCallbacks
def _connect(url):
    connection = RedisConnection(reactor, url)
    connection.start()
    yield connection.when_up()
    return connection


@defer.inlineCallbacks
def make_node(backend, redis_server, name="a", max_calls=4, per_agent=2):
    registry = CallRegistry(reactor, {"REFER": FakeFlow, "INVITE": FakeFlow},
                            max_calls, per_agent)
    if backend == "memory":
        return Node(MemoryCallStore(registry), registry)
    connection = yield _connect(redis_server.url)
    store = RedisCallStore(reactor, registry, connection, name, max_calls=max_calls,
                           max_calls_per_agent=per_agent)
    router = store.router = CommandRouter(reactor, connection, registry, name, timeout=2.0)
    subscription = RedisSubscription(reactor, redis_server.url, router.channels,
                                     router.on_message)
    subscription.start()
    yield _subscribed(connection, router.channels)
    return Node(store, registry, connection, subscription)


@defer.inlineCallbacks
def _subscribed(connection, channels):
    """Wait until the node listens on its channels (PUBSUB NUMSUB)."""
    deadline = time.monotonic() + 10
    while True:
        counts = yield connection.execute("PUBSUB", "NUMSUB", *channels)
        if all(counts[1::2]):
            return
        assert time.monotonic() < deadline, "the node never subscribed"
        yield task.deferLater(reactor, 0.02, lambda: None)


@pytest.fixture(params=["memory", "redis"])
def backend(request, redis_server):
    if request.param == "redis":
        flush = _blocking(_connect(redis_server.url))
        _blocking(flush.execute("FLUSHALL"))
        flush.stop()
    return request.param


@pytest.fixture
def nodes(backend, redis_server):
    made = []

    def make(**kw):
        d = make_node(backend, redis_server, **kw)
        d.addCallback(lambda node: made.append(node) or node)
        return d
    yield make
    for node in made:
        node.close()


@defer.inlineCallbacks
def _raises(d, kind):
    with pytest.raises(kind):
        yield d


def _settle():
    """Let queued writes reach Redis: one reactor turn and a round trip."""
    return task.deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.inlineCallbacks
def test_a_placed_call_is_found_by_id_and_key_with_its_status_lines(nodes):
    node = yield nodes()
    call = (yield node.store.place(req()))
    found = (yield node.store.get(call.id))
    assert (found.id, found.owner, found.calling, found.called, found.mode) == (
        call.id, "user1@sipx.test", "user1@sipx.test", "user2@sipx.test", "REFER")
    yield _settle()
    found = (yield node.store.get(call.id))
    assert found.state == "ringing" and not found.ended
    assert [e.status_line for e in found.events] == ["SIP/2.0 180 Ringing"]
    by_key = (yield node.store.lookup(call.key))
    assert by_key.id == call.id
    assert (yield node.store.get("no-such-call")) is None


@pytest_twisted.inlineCallbacks
def test_calls_are_listed_newest_first_per_owner(nodes):
    node = yield nodes(max_calls=10, per_agent=5)
    first = (yield node.store.place(req(called="user2@sipx.test")))
    second = (yield node.store.place(req(called="user4@sipx.test")))
    other = (yield node.store.place(req(agent=USER3, calling="user3@sipx.test")))
    assert [c.id for c in (yield node.store.calls_of("user1@sipx.test", 10))] == [
        second.id, first.id]
    assert [c.id for c in (yield node.store.calls_of(None, 2))] == [other.id, second.id]
    assert (yield node.store.calls_of(None, 0)) == []


@pytest_twisted.inlineCallbacks
def test_the_agent_limit_and_the_total_limit_refuse_and_are_released(nodes):
    node = yield nodes(max_calls=3, per_agent=2)
    a = (yield node.store.place(req(called="u2@sipx.test")))
    (yield node.store.place(req(called="u4@sipx.test")))
    yield _raises(node.store.place(req(called="u5@sipx.test")), AgentLimit)
    (yield node.store.place(req(agent=USER3, calling="user3@sipx.test")))
    yield _raises(node.store.place(req(agent=USER3, calling="user3@sipx.test",
                                 called="u6@sipx.test")), TooManyCalls)
    yield node.store.hangup(a.id)
    yield _settle()
    again = (yield node.store.place(req(called="u5@sipx.test")))
    yield _settle()  # (its state after the start goes with the next writes)
    assert (yield node.store.get(again.id)).state == "ringing"


@pytest_twisted.inlineCallbacks
def test_one_invite_call_in_progress_per_key(nodes):
    node = yield nodes()
    first = (yield node.store.place(req(method="INVITE")))
    yield _raises(node.store.place(req(method="INVITE")), CallInProgress)
    yield _raises(node.store.place(req()), CallInProgress)
    yield node.store.hangup(first.id)
    yield _settle()
    second = (yield node.store.place(req(method="INVITE")))
    assert (yield node.store.lookup(second.key)).id == second.id


@pytest_twisted.inlineCallbacks
def test_a_refer_call_replaces_the_one_in_progress_for_its_key(nodes):
    node = yield nodes(per_agent=1)
    first = (yield node.store.place(req()))
    second = (yield node.store.place(req()))  # within the agent limit of 1: replaced
    yield _settle()
    assert (yield node.store.get(first.id)).ended
    assert (yield node.store.lookup(req().key)).id == second.id


@pytest_twisted.inlineCallbacks
def test_a_call_that_fails_while_starting_frees_its_limits(nodes):
    node = yield nodes(per_agent=1)
    node.registry.flows["REFER"] = FailingFlow
    failed = yield node.store.place(req())
    yield _settle()
    found = yield node.store.get(failed.id)
    assert (found.state, found.ended) == ("failed", True)
    assert [e.status_line for e in found.events] == ["SIP/2.0 403 Forbidden"]
    node.registry.flows["REFER"] = FakeFlow
    placed = yield node.store.place(req(called="u7@sipx.test"))  # the agent's slot is free
    assert not placed.ended


@pytest_twisted.inlineCallbacks
def test_a_finished_call_is_forgotten_after_its_result_cache_time(nodes):
    node = yield nodes()
    call = (yield node.store.place(req(result_cache_time=1)))
    yield node.store.hangup(call.id)
    yield _settle()
    found = (yield node.store.get(call.id))
    assert found.ended and found.state == "ended"
    assert [e.status_line for e in found.events][-1] == "SIP/2.0 200 OK"
    deadline = time.monotonic() + 10
    while (yield node.store.get(call.id)) is not None:
        assert time.monotonic() < deadline, "the finished call was never forgotten"
        (yield task.deferLater(reactor, 0.1, lambda: None))
    assert (yield node.store.lookup(call.key)) is None
    assert call.id not in [c.id for c in (yield node.store.calls_of(None, 10))]


class InviteLikeFlow(FakeFlow):
    """As the INVITE flow does: records the 180 first, then moves to "ringing" and shows
    an early dialog (its state and dialogs change after the line is recorded)."""

    def start(self):
        self.dialogs = []
        self.call.set_dialog_source(lambda: list(self.dialogs))
        self.call.record(int(time.time() * 1000), "sip-call-id", "INVITE",
                         "SIP/2.0 180 Ringing")
        self.call.set_state("ringing")
        self.dialogs.append(DialogInfo("sip-call-id:ft:tt", "sip:callcontroller@sipx.test",
                                       "sip:user1@sipx.test", EARLY))


@pytest_twisted.inlineCallbacks
def test_the_state_and_dialogs_are_those_after_the_line_that_changed_them(nodes):
    node = yield nodes()
    node.registry.flows["INVITE"] = InviteLikeFlow
    call = yield node.store.place(req(method="INVITE"))
    yield _settle()
    found = yield node.store.get(call.id)
    assert found.state == "ringing"
    assert found.dialogs() == call.dialogs() == [DialogInfo(
        "sip-call-id:ft:tt", "sip:callcontroller@sipx.test", "sip:user1@sipx.test", EARLY)]
    call.set_state("connected")  # as after a re-INVITE's answer: no status line
    yield _settle()
    assert (yield node.store.get(call.id)).state == "connected"
    call.flow.dialogs[0] = call.flow.dialogs[0]._replace(state=TERMINATED)
    yield node.store.hangup(call.id)
    yield _settle()
    found = yield node.store.get(call.id)
    assert (found.state, found.ended, found.seq) == ("ended", True, call.seq)
    assert [d.state for d in found.dialogs()] == [TERMINATED]


@pytest_twisted.inlineCallbacks
def test_status_lines_beyond_the_bound_replace_the_last_one_as_in_memory(nodes):
    node = yield nodes()
    call = yield node.store.place(req())
    for n in range(MAX_EVENTS + MAX_FINAL_EVENTS + 20):
        call.record(n, "sip-call-id", "INVITE", f"SIP/2.0 486 Busy {n}")
    yield _settle()
    found = yield node.store.get(call.id)
    assert len(found.events) == MAX_EVENTS + MAX_FINAL_EVENTS
    assert found.events == call.events
    assert found.events[-1].status_line == f"SIP/2.0 486 Busy {MAX_EVENTS + MAX_FINAL_EVENTS + 19}"


# --- Redis only: what two nodes share ---------------------------------------------------


@pytest.fixture
def redis_nodes(redis_server):
    flush = _blocking(_connect(redis_server.url))
    _blocking(flush.execute("FLUSHALL"))
    flush.stop()
    made = []

    def make(name, **kw):
        d = make_node("redis", redis_server, name=name, **kw)
        d.addCallback(lambda node: made.append(node) or node)
        return d
    yield make
    for node in made:
        node.close()


@pytest_twisted.inlineCallbacks
def test_a_call_placed_on_one_node_is_found_on_the_other_at_once(redis_nodes):
    a = yield redis_nodes("a")
    b = yield redis_nodes("b")
    call = (yield a.store.place(req()))
    found = (yield b.store.get(call.id))
    assert found is not None and found.node == "a" and found.owner == "user1@sipx.test"
    assert (yield b.store.lookup(call.key)).id == call.id
    assert b.registry.get(call.id) is None and a.registry.get(call.id) is call


@pytest_twisted.inlineCallbacks
def test_the_limits_hold_across_nodes_and_are_released_by_either(redis_nodes):
    a = yield redis_nodes("a", max_calls=3, per_agent=2)
    b = yield redis_nodes("b", max_calls=3, per_agent=2)
    first = (yield a.store.place(req(called="u2@sipx.test")))
    (yield b.store.place(req(called="u4@sipx.test")))
    yield _raises(b.store.place(req(called="u5@sipx.test")), AgentLimit)
    yield _raises(a.store.place(req(called="u5@sipx.test")), AgentLimit)
    (yield b.store.place(req(agent=USER3, calling="user3@sipx.test")))
    yield _raises(a.store.place(req(agent=USER3, calling="user3@sipx.test",
                              called="u6@sipx.test")), TooManyCalls)
    yield a.store.hangup(first.id)
    yield _settle()
    (yield b.store.place(req(called="u5@sipx.test")))


@pytest_twisted.inlineCallbacks
def test_limits_are_atomic_under_concurrent_places_on_two_nodes(redis_nodes):
    a = yield redis_nodes("a", max_calls=100, per_agent=5)
    b = yield redis_nodes("b", max_calls=100, per_agent=5)
    ds = [node.store.place(req(called=f"u{n}{node.store.node_id}@sipx.test"))
          for n in range(20) for node in (a, b)]
    results = (yield defer.DeferredList(ds, consumeErrors=True))
    placed = [r for ok, r in results if ok]
    refused = [r for ok, r in results if not ok]
    assert len(placed) == 5
    assert all(f.check(AgentLimit) for f in refused)


@pytest_twisted.inlineCallbacks
def test_without_redis_placing_fails_as_unavailable_and_no_call_is_placed(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    node = yield make_node("redis", server)
    try:
        server.stop()
        deadline = time.monotonic() + 10
        while node.connection.up:
            assert time.monotonic() < deadline, "the lost connection went unnoticed"
            (yield task.deferLater(reactor, 0.05, lambda: None))
        yield _raises(node.store.place(req()), RegistryUnavailable)
        yield _raises(node.store.get("x"), RegistryUnavailable)
        assert node.registry.active_count == 0
    finally:
        node.close()
        server.stop()


# --- node liveness -----------------------------------------------------------------------


@defer.inlineCallbacks
def _eventually(check, what, timeout=10.0):
    """Poll C{check()} (a Deferred of a truth value) until true, within C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        if (yield check()):
            return
        assert time.monotonic() < deadline, what
        yield task.deferLater(reactor, 0.05, lambda: None)


def _killed(node):
    """What kill -9 leaves: no hang-up, no more writes or heartbeats from the node."""
    node.store.close()
    node.connection.stop()
    node.registry.clear()


@pytest_twisted.inlineCallbacks
def test_a_lost_nodes_calls_end_as_node_lost_and_free_their_limits(redis_nodes):
    a = yield redis_nodes("a", per_agent=1)
    b = yield redis_nodes("b", per_agent=1)
    yield a.store.start(interval=0.1, ttl=0.4)
    yield b.store.start(interval=0.1, ttl=0.4)
    call = yield a.store.place(req())
    yield _settle()
    yield _raises(b.store.place(req(called="u9@sipx.test")), AgentLimit)
    assert not (yield b.store.get(call.id)).ended
    _killed(a)

    def ended():
        return b.store.get(call.id).addCallback(lambda c: c.ended)
    yield _eventually(ended, "the lost node's call was never marked ended")
    found = yield b.store.get(call.id)
    assert (found.state, found.reason) == ("ended", "node lost")
    placed = yield b.store.place(req(called="u9@sipx.test"))
    assert b.registry.get(placed.id) is placed


@pytest_twisted.inlineCallbacks
def test_a_node_restarted_with_its_id_ends_its_earlier_calls_first(redis_nodes):
    a = yield redis_nodes("a", per_agent=1)
    call = yield a.store.place(req(method="INVITE"))
    yield _settle()
    _killed(a)
    again = yield redis_nodes("a", per_agent=1)
    yield again.store.start(interval=0.1, ttl=0.4)
    found = yield again.store.get(call.id)
    assert (found.state, found.ended, found.reason) == ("ended", True, "restart")
    yield again.store.place(req(method="INVITE"))  # the key and the agent slot are free


@pytest_twisted.inlineCallbacks
def test_an_invite_call_ended_without_its_node_shows_its_dialogs_terminated(redis_nodes):
    a = yield redis_nodes("a")
    a.registry.flows["INVITE"] = InviteLikeFlow
    call = yield a.store.place(req(method="INVITE"))
    yield _settle()
    assert [d.state for d in (yield a.store.get(call.id)).dialogs()] == [EARLY]
    _killed(a)
    again = yield redis_nodes("a")
    yield again.store.start(interval=0.1, ttl=0.4)
    found = yield again.store.get(call.id)
    assert (found.state, found.reason) == ("ended", "restart")
    assert found.dialogs() == [DialogInfo("sip-call-id:ft:tt", "sip:callcontroller@sipx.test",
                                          "sip:user1@sipx.test", TERMINATED)]


@pytest_twisted.inlineCallbacks
def test_a_live_node_is_not_taken_for_lost(redis_nodes):
    a = yield redis_nodes("a")
    b = yield redis_nodes("b")
    yield a.store.start(interval=0.1, ttl=0.4)
    yield b.store.start(interval=0.1, ttl=0.4)
    call = yield a.store.place(req())
    yield task.deferLater(reactor, 1.0, lambda: None)  # several heartbeat lifetimes
    assert (yield b.store.sweep_lost()) == 0
    assert not (yield b.store.get(call.id)).ended


# --- Redis going away and coming back --------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_status_lines_wait_for_redis_within_the_bound_and_are_written_in_order(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    node = yield make_node("redis", server)
    node.store.max_buffered = 4
    try:
        call = yield node.store.place(req())
        yield _settle()
        server.stop()
        yield _eventually(lambda: defer.succeed(not node.connection.up),
                          "the lost connection went unnoticed")
        assert node.store.health()["state"] == "down"
        for n in range(6):  # each line is one buffered write
            call.record(n, "sip-call-id", "INVITE", f"SIP/2.0 18{n} Line {n}")
        # and the call's state, queued at the end of the write window
        yield _eventually(lambda: defer.succeed(node.store.dropped == 3),
                          "the call's state was never queued")
        assert (node.store.buffered, node.store.dropped) == (4, 3)
        server.start()
        yield _eventually(lambda: defer.succeed(node.connection.up and not node.store.buffered),
                          "the buffered writes never reached Redis")
        lines = yield node.connection.execute("LRANGE", f"sipxcc:lines:{call.id}", 0, -1)
        assert [line.decode() for line in lines] == [
            '[3, "sip-call-id", "INVITE", "SIP/2.0 183 Line 3"]',
            '[4, "sip-call-id", "INVITE", "SIP/2.0 184 Line 4"]',
            '[5, "sip-call-id", "INVITE", "SIP/2.0 185 Line 5"]']
        assert node.store.health() == {"backend": "redis", "node": "a", "state": "up",
                                       "buffered_writes": 0, "dropped_writes": 3}
    finally:
        node.close()
        server.stop()


# --- commands for a call owned by another node -----------------------------------------


@pytest_twisted.inlineCallbacks
def test_delete_on_the_other_node_is_run_by_the_owner(redis_nodes):
    a = yield redis_nodes("a")
    b = yield redis_nodes("b")
    call = yield a.store.place(req())
    assert (yield b.store.hangup(call.id)) is True
    assert call.ended and call.state == "ended"  # the owner's SIP side hung up
    yield _settle()
    assert (yield b.store.get(call.id)).ended
    assert (yield b.store.hangup("no-such-call")) is False


@pytest_twisted.inlineCallbacks
def test_transfer_on_the_other_node_reaches_the_owners_flow_and_its_refusal_comes_back(
        redis_nodes):
    a = yield redis_nodes("a")
    b = yield redis_nodes("b")
    invite = yield a.store.place(req(method="INVITE"))
    assert (yield b.store.transfer(invite.id, "user4@sipx.test", 30)) is True
    assert invite.flow.transferred == ("user4@sipx.test", 30)
    refer = yield a.store.place(req(called="user9@sipx.test"))
    yield _raises(b.store.transfer(refer.id, "user4@sipx.test"), TransferNotPossible)


@pytest_twisted.inlineCallbacks
def test_a_command_for_a_dead_owner_fails_at_once_or_after_the_timeout(redis_nodes):
    a = yield redis_nodes("a")
    b = yield redis_nodes("b")
    call = yield a.store.place(req())
    yield _settle()
    a.subscription.stop()  # the owner no longer listens: nobody receives the command
    yield _eventually(lambda: a.connection.execute("PUBSUB", "NUMSUB", "sipxcc:cmd:a")
                      .addCallback(lambda counts: counts[1] == 0), "still subscribed")
    yield _raises(b.store.hangup(call.id), OwnerUnavailable)
    b.store.router.timeout = 0.2
    # a subscriber that never answers (a stalled owner): the asker gives up in time
    stalled = RedisSubscription(reactor, f"redis://127.0.0.1:{b.connection.port}/0",
                                ("sipxcc:cmd:a",), lambda channel, data: None)
    stalled.start()
    try:
        yield _subscribed(b.connection, ("sipxcc:cmd:a",))
        yield _raises(b.store.hangup(call.id), OwnerTimeout)
        assert not b.store.router.pending
    finally:
        stalled.stop()


@pytest_twisted.inlineCallbacks
def test_a_refer_call_on_one_node_replaces_the_one_in_progress_on_the_other(redis_nodes):
    a = yield redis_nodes("a", per_agent=1)
    b = yield redis_nodes("b", per_agent=1)
    first = yield a.store.place(req())
    second = yield b.store.place(req())  # within the agent limit of 1: the first is replaced
    yield _eventually(lambda: defer.succeed(first.ended), "the replaced call was not ended")
    yield _settle()
    assert (yield b.store.get(first.id)).ended
    assert (yield a.store.lookup(req().key)).id == second.id
    assert not (yield a.store.get(second.id)).ended


@pytest_twisted.inlineCallbacks
def test_a_node_started_while_redis_is_down_beats_once_it_is_back(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    node = yield make_node("redis", server)
    try:
        server.stop()
        yield _eventually(lambda: defer.succeed(not node.connection.up),
                          "the lost connection went unnoticed")
        node.store.start(interval=0.1, ttl=0.4)  # fails now, retried
        server.start()
        yield _eventually(lambda: defer.succeed(node.connection.up), "never reconnected")
        yield _eventually(lambda: node.connection.execute("EXISTS", "sipxcc:node:a"),
                          "no heartbeat after Redis came back")
    finally:
        node.close()
        server.stop()
