"""The Redis connection's life on a test clock, without a server: the keep-alive PING of an
idle connection (once a period, on time, again after reconnecting), what the operator can
read of why Redis is unreachable, stopping at any moment (while connecting, while Redis is
unreachable, with commands waiting and others on their way) without anything left
scheduled, the bound on commands waiting taken from both sides, the refusals' texts, and
never an error in the log for what is an expected outage."""

from __future__ import annotations

import pytest
import redis
from twisted.internet import task

from sipxcc.calls import redis_client
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import KEEPALIVE, RedisConnection
from tests.unit.redisfakes import Held, Log
from tests.unit.test_redis_client import (
    URL,
    FakeRedis,
    ThreadedReactor,
    connection,
    outcomes,
    run_at_once,
)


@pytest.fixture
def log():
    with Log.capture() as made:
        yield made


def pings(client):
    return sum(1 for pipeline in client.pipelines if pipeline == [("PING",)])


# --- keep-alive ---------------------------------------------------------------------------


def test_an_idle_connection_is_pinged_once_every_keepalive_period_and_not_before(log):
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    clock.advance(KEEPALIVE - 0.001)
    assert pings(client) == 0
    clock.advance(0.001)
    clock.advance(0)
    assert pings(client) == 1
    for period in (2, 3, 4):
        clock.advance(KEEPALIVE)
        clock.advance(0)
        assert pings(client) == period
    assert conn.up and conn.states == [True] and log.failures() == []


def test_a_dead_idle_connection_is_reported_without_a_traceback_and_pinged_again_once_back(log):
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.reachable = False
    clock.advance(KEEPALIVE)
    clock.advance(0)  # the PING fails: the connection is lost
    assert conn.up is False and conn.states == [True, False]
    assert conn.last_error == "Connection reset by peer"
    assert log.failures() == []  # an outage is logged as a warning, not a traceback
    client.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and conn.states == [True, False, True]
    before = pings(client)
    for _ in range(3):  # one keep-alive again, not the old one beside the new one
        clock.advance(KEEPALIVE)
        clock.advance(0)
    assert pings(client) == before + 3
    conn.stop()
    assert clock.getDelayedCalls() == []  # stopped: no PING and no attempt left scheduled


# --- what the operator reads --------------------------------------------------------------


def test_the_reason_redis_is_unreachable_is_kept_and_commands_are_refused_saying_why():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    assert conn.up is False and conn.last_error is None  # not started: nothing failed yet
    client.reachable = False
    conn.start()
    assert conn.up is False and conn.last_error == "Connection refused"
    refused = outcomes([conn.execute("GET", "k")])
    assert refused[0].check(RegistryUnavailable)
    assert str(refused[0].value) == "Redis is not connected"
    client.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up
    client.reachable = False  # lost under a command
    lost = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)
    assert lost[0].check(RegistryUnavailable)
    assert str(lost[0].value) == "Redis connection lost: Connection reset by peer"
    assert conn.up is False and conn.last_error == "Connection reset by peer"
    conn.stop()


def test_the_first_reply_error_of_a_pipeline_is_the_one_reported():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [redis.ResponseError(f"ERR {c[0]}") if c[0] != "GET"
                                      else b"v" for c in commands]
    got = outcomes([conn.pipeline([("GET", "a"), ("BAD1",), ("BAD2",)])])
    clock.advance(0)
    assert str(got[0].value) == "ERR BAD1" and conn.pending == 0


# --- the bound on commands waiting ---------------------------------------------------------


def test_the_pending_bound_counts_every_command_and_is_reached_from_both_sides():
    clock, client, held = task.Clock(), FakeRedis(), Held()
    conn = connection(clock, client, run=held, max_pending=3)
    conn.start()
    held.finish()  # connected
    accepted = outcomes([conn.execute("GET", "a"), conn.execute("GET", "b"),
                         conn.execute("GET", "c")])  # three calls of one command: the bound
    refused = outcomes([conn.execute("GET", "d")])
    assert refused[0].check(RegistryUnavailable)
    assert str(refused[0].value) == "too many Redis commands pending"
    assert conn.pending == 3
    clock.advance(0)
    held.finish()
    assert accepted == [b"OK"] * 3 and conn.pending == 0
    too_many = outcomes([conn.pipeline([("GET", "k")] * 4)])
    assert too_many[0].check(RegistryUnavailable) and conn.pending == 0
    just_so = outcomes([conn.pipeline([("GET", "k")] * 3)])
    assert just_so == [] and conn.pending == 3
    clock.advance(0)
    held.finish()
    assert just_so == [[b"OK"] * 3] and conn.pending == 0


# --- stopping at any moment ---------------------------------------------------------------


def test_stopped_while_connecting_it_stays_down_whether_the_attempt_succeeds_or_fails():
    clock, client, held = task.Clock(), FakeRedis(), Held()
    conn = connection(clock, client, run=held)
    conn.start()
    conn.stop()
    held.finish()  # the attempt that was on its way succeeds after all
    assert conn.up is False and conn.states == [] and clock.getDelayedCalls() == []
    client.reachable = False
    conn2 = connection(clock, client, run=held)
    conn2.start()
    conn2.stop()
    held.finish()  # this one fails: no new attempt is scheduled
    assert conn2.up is False and clock.getDelayedCalls() == []


def test_stopped_while_redis_is_unreachable_it_makes_no_further_attempt(log):
    clock, client = task.Clock(), FakeRedis()
    client.reachable = False
    conn = connection(clock, client)
    conn.start()
    clock.advance(redis_client.INITIAL_DELAY)  # a second attempt, refused too
    assert client.pings == 2 and clock.getDelayedCalls() != []
    stopped = outcomes([conn.stop()])
    assert stopped == [None] and clock.getDelayedCalls() == []
    clock.advance(60)
    assert client.pings == 2 and client.disconnected and log.failures() == []


def test_stop_fails_the_commands_waiting_and_counts_out_those_on_their_way_when_answered():
    clock, client, held = task.Clock(), FakeRedis(), Held()
    conn = connection(clock, client, run=held)
    conn.start()
    held.finish()  # connected
    on_their_way = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)  # sent: the Redis thread has them
    waiting = outcomes([conn.execute("GET", "a")])  # not sent yet
    assert conn.pending == 3
    conn.stop()
    assert waiting[0].check(RegistryUnavailable)
    assert str(waiting[0].value) == "the Redis connection is closed"
    assert conn.pending == 2 and conn.up is False and conn.states == [True, False]
    held.finish()  # the pipeline that was on its way comes back
    assert on_their_way == [[b"OK", b"OK"]] and conn.pending == 0


def test_a_socket_that_fails_to_close_is_logged_and_stop_fires_all_the_same(log):
    class FailsToClose(FakeRedis):
        def disconnect(self):
            raise OSError("Bad file descriptor")

    reactor, client = ThreadedReactor(), FailsToClose()
    conn = RedisConnection(reactor, URL, client=client)
    conn.start()
    reactor.run_until(lambda: conn.up)
    stopped = outcomes([conn.stop()])
    reactor.run_until(lambda: stopped)
    assert stopped == [None]
    warnings = [w for w in log.warnings() if "Bad file descriptor" in w]
    assert len(warnings) == 1 and not warnings[0].startswith("Unable to format")
    assert log.failures() == []


def test_stopping_twice_or_before_starting_does_nothing():
    clock, client = task.Clock(), FakeRedis()
    conn = RedisConnection(clock, URL, client=client, run=run_at_once)
    assert outcomes([conn.stop()]) == [None] and not client.disconnected
    conn.start()
    conn.stop()
    client.disconnected = False
    assert outcomes([conn.stop()]) == [None] and not client.disconnected
