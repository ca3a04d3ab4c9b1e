"""The Redis command connection's life on a test clock, against a stand-in Redis
(tests/unit/redisfakes.py): the keep-alive PING of an idle connection (once a period, on
time, again after reconnecting), what the operator can read of why Redis is unreachable,
a login Redis never answers given up on, stopping at any moment (while connecting, while
Redis is unreachable, with commands waiting and others on their way) without anything
left scheduled, starting again after a stop, the bound on commands waiting taken from
both sides, the refusals' texts, and never an error in the log for what is an expected
outage."""

from __future__ import annotations

import pytest
from twisted.internet import error, task
from twisted.python.failure import Failure

from sipxcc.calls import redis_client
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import KEEPALIVE, SOCKET_TIMEOUT, RedisConnection
from sipxcc.calls.redis_protocol import ConnectionLost, RedisError
from tests.unit.redisfakes import URL, FakeRedis, Log, connection, outcomes, started

RESET = "Connection to the other side was lost in a non-clean fashion: Connection reset by peer."
REFUSED = "Connection was refused by other side: Connection refused."


@pytest.fixture
def log():
    with Log.capture() as made:
        yield made



# --- keep-alive ---------------------------------------------------------------------------


def test_an_idle_connection_is_pinged_once_every_keepalive_period_and_not_before(log):
    clock, server, conn = started()
    clock.advance(KEEPALIVE - 0.001)
    clock.advance(0)
    assert server.pings() == 0
    clock.advance(0.001)
    clock.advance(0)
    assert server.pings() == 1
    for period in (2, 3, 4):
        clock.advance(KEEPALIVE)
        clock.advance(0)
        assert server.pings() == period
    assert conn.up and conn.states == [True] and log.failures() == []


def test_a_dead_idle_connection_is_reported_without_a_traceback_and_pinged_again_once_back(log):
    clock, server, conn = started()
    server.reachable = False
    clock.advance(KEEPALIVE)
    clock.advance(0)  # the PING's write finds the connection reset
    assert conn.up is False and conn.states == [True, False]
    assert conn.last_error == RESET
    assert log.warnings() == [f"lost the connection to Redis ({RESET}); reconnecting"]
    assert log.failures() == []  # an outage is logged as a warning, not a traceback
    server.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and conn.states == [True, False, True]
    before = server.pings()
    for _ in range(3):  # one keep-alive again, not the old one beside the new one
        clock.advance(KEEPALIVE)
        clock.advance(0)
    assert server.pings() == before + 3
    conn.stop()
    server.close()
    assert clock.getDelayedCalls() == []  # stopped: no PING and no attempt left scheduled


# --- what the operator reads --------------------------------------------------------------


def test_the_reason_redis_is_unreachable_is_kept_and_commands_are_refused_saying_why(log):
    clock = task.Clock()
    server = FakeRedis(clock)
    conn = connection(clock, server)
    assert conn.up is False and conn.last_error is None  # not started: nothing failed yet
    server.reachable = False
    conn.start()
    assert conn.up is False and conn.last_error == REFUSED
    assert log.warnings() == [
        f"cannot reach Redis at 127.0.0.1:6379 ({REFUSED}); retrying in 0.2 s"]
    refused = outcomes([conn.execute("GET", "k")])
    assert refused[0].check(RegistryUnavailable)
    assert str(refused[0].value) == "Redis is not connected"
    server.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up
    server.reachable = False  # lost under a command
    lost = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)
    assert lost[0].check(RegistryUnavailable)
    assert str(lost[0].value) == f"Redis connection lost: {RESET}"
    # the reason itself, as when the connection is lost while idle
    assert conn.up is False and conn.last_error == RESET
    conn.stop()


def test_what_a_command_given_as_its_group_fails_is_refused_on_a_connection_known_lost():
    clock, server, conn = started()
    server.reachable = False
    after = []

    def again(failure):  # a caller that tries again at once, from the failure
        after.extend(outcomes([conn.execute("GET", "k")]))
    conn.execute("SET", "k", 1).addErrback(again)
    clock.advance(0)
    assert after[0].check(RegistryUnavailable)
    assert str(after[0].value) == "Redis is not connected"  # known lost already
    assert conn.pending == 0


def test_the_first_reply_error_of_a_pipeline_is_the_one_reported():
    clock, server, conn = started()
    server.answer = lambda commands: [RedisError(f"ERR {c[0]}") if c[0] != "GET"
                                      else b"v" for c in commands]
    got = outcomes([conn.pipeline([("GET", "a"), ("BAD1",), ("BAD2",)])])
    clock.advance(0)
    assert str(got[0].value) == "ERR BAD1" and conn.pending == 0


# --- the login ----------------------------------------------------------------------------


def test_a_login_redis_never_answers_is_given_up_on_after_the_reply_timeout(log):
    clock = task.Clock()
    server = FakeRedis(clock)
    server.answering = False  # takes the connection, never answers
    conn = connection(clock, server)
    conn.start()
    wire = server.connections[0].transport
    clock.advance(SOCKET_TIMEOUT - 0.001)
    assert wire.closing is None and not conn.up
    clock.advance(0.001)
    assert wire.closing == "abort"
    server.close()
    assert conn.last_error == "Redis connection lost: no reply within 5.0 s"
    assert conn.states == [] and log.failures() == []
    server.answering = True
    clock.advance(redis_client.INITIAL_DELAY)  # tried again, as any unreachable Redis
    assert conn.up and server.attempts == 2
    assert [call.func for call in clock.getDelayedCalls()] == [conn._check]  # no timer left


# --- the bound on commands waiting ---------------------------------------------------------


def test_the_pending_bound_counts_every_command_and_is_reached_from_both_sides():
    clock, server, conn = started(max_pending=3)
    server.answering = False
    accepted = outcomes([conn.execute("GET", "a"), conn.execute("GET", "b"),
                         conn.execute("GET", "c")])  # three calls of one command: the bound
    refused = outcomes([conn.execute("GET", "d")])
    assert refused[0].check(RegistryUnavailable)
    assert str(refused[0].value) == "too many Redis commands pending"
    assert conn.pending == 3
    clock.advance(0)
    server.release()
    assert accepted == [b"OK"] * 3 and conn.pending == 0
    too_many = outcomes([conn.pipeline([("GET", "k")] * 4)])
    assert too_many[0].check(RegistryUnavailable) and conn.pending == 0
    just_so = outcomes([conn.pipeline([("GET", "k")] * 3)])
    assert just_so == [] and conn.pending == 3
    clock.advance(0)
    server.release()
    assert just_so == [[b"OK"] * 3] and conn.pending == 0
    assert server.sent() == [[("GET", "a"), ("GET", "b"), ("GET", "c")], [("GET", "k")] * 3]


# --- stopping at any moment ---------------------------------------------------------------


def test_stopped_while_connecting_it_stays_down_whether_the_attempt_succeeds_or_fails():
    clock = task.Clock()
    server = FakeRedis(clock)
    server.hold_connects = True
    conn = connection(clock, server)
    conn.start()
    assert outcomes([conn.stop()]) == [None]  # no connection yet: nothing to wait for
    server.connecting.pop().callback(server.connections[0])  # it connects after all
    assert conn.up is False and conn.states == []
    assert server.connections[0].transport.closing == "lose"  # and is closed at once
    assert clock.getDelayedCalls() == []
    conn2 = connection(clock, server)
    conn2.start()
    conn2.stop()
    server.connecting.pop().errback(error.ConnectionRefusedError())  # this one fails
    assert conn2.up is False and clock.getDelayedCalls() == []  # no new attempt
    assert server.attempts == 2


def test_stopped_while_redis_is_unreachable_it_makes_no_further_attempt(log):
    clock = task.Clock()
    server = FakeRedis(clock)
    server.reachable = False
    conn = connection(clock, server)
    conn.start()
    clock.advance(redis_client.INITIAL_DELAY)  # a second attempt, refused too
    assert server.attempts == 2 and clock.getDelayedCalls() != []
    stopped = outcomes([conn.stop()])
    assert stopped == [None] and clock.getDelayedCalls() == []
    clock.advance(60)
    assert server.attempts == 2 and log.failures() == []


def test_stop_fails_the_commands_waiting_at_once_and_those_on_their_way_at_the_close():
    clock, server, conn = started()
    server.answering = False
    on_their_way = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)  # written: Redis has them
    waiting = outcomes([conn.execute("GET", "a")])  # not written yet
    assert conn.pending == 3
    stopped = outcomes([conn.stop()])
    assert waiting[0].check(RegistryUnavailable)
    assert str(waiting[0].value) == "the Redis connection is closed"
    assert conn.pending == 2 and conn.up is False and conn.states == [True, False]
    assert on_their_way == [] and stopped == []
    server.close()  # the connection closes: what was on its way has no answer
    assert on_their_way[0].check(ConnectionLost)
    assert str(on_their_way[0].value) == "Redis connection lost: Connection was closed cleanly."
    assert stopped == [None] and conn.pending == 0 and conn.states == [True, False]
    clock.advance(60)
    assert server.attempts == 1 and server.sent() == [[("SET", "a", "1"), ("SET", "b", "2")]]


def test_a_command_on_its_way_when_the_stop_gives_up_on_the_close_fails_saying_so():
    clock, server, conn = started()
    server.answering = False
    on_its_way = outcomes([conn.execute("GET", "a")])
    clock.advance(0)  # written: Redis has it
    conn.stop()
    clock.advance(redis_client.STOP_TIMEOUT)  # not closed in time: aborted
    server.close()
    assert on_its_way[0].check(ConnectionLost)
    assert str(on_its_way[0].value) == (
        f"Redis connection lost: not closed within {redis_client.STOP_TIMEOUT} s of the stop")


def test_stopping_twice_or_before_starting_does_nothing():
    clock = task.Clock()
    server = FakeRedis(clock)
    conn = RedisConnection(clock, URL, connect=server.connect)
    assert outcomes([conn.stop()]) == [None] and server.attempts == 0
    conn.start()
    conn.stop()
    server.close()
    assert outcomes([conn.stop()]) == [None]
    assert server.attempts == 1 and clock.getDelayedCalls() == []


def test_started_again_after_a_stop_the_old_connections_close_leaves_the_new_one_up(log):
    clock, server, conn = started()
    conn.stop()  # the first connection is closing
    conn.start()
    assert conn.up and len(server.connections) == 2 and conn.states == [True, False, True]
    server.close()  # the first connection's close comes now
    assert conn.up and conn.states == [True, False, True] and log.warnings() == []
    got = outcomes([conn.execute("GET", "k")])
    clock.advance(0)
    assert got == [b"OK"] and server.sent() == [[("GET", "k")]]
    assert server.connections[1].transport.closing is None


def test_started_twice_it_connects_once():
    clock, server, conn = started()
    conn.start()
    assert server.attempts == 1 and len(server.connections) == 1 and conn.states == [True]
    clock.advance(KEEPALIVE)
    clock.advance(0)
    assert server.pings() == 1  # one keep-alive, not two


def test_a_command_given_again_from_the_failure_of_one_the_stop_failed_is_refused_at_once():
    clock, server, conn = started()
    again = []
    conn.execute("GET", "k").addErrback(
        lambda _: again.extend(outcomes([conn.execute("GET", "k")])))
    conn.stop()
    assert again[0].check(RegistryUnavailable)
    assert str(again[0].value) == "Redis is not connected"
    server.close()
    assert conn.pending == 0 and clock.getDelayedCalls() == [] and server.sent() == []


def test_commands_given_before_the_connection_broke_and_written_after_fail_as_not_connected():
    clock, server, conn = started()
    got = outcomes([conn.pipeline([("SET", "a", 1)]), conn.execute("GET", "a")])
    server.connections[0].connectionLost(Failure(error.ConnectionLost("Connection reset by peer")))
    assert got == [] and conn.states == [True, False]  # (their write is this turn's end)
    clock.advance(0)
    assert [failure.check(ConnectionLost) for failure in got] == [ConnectionLost] * 2
    assert [str(failure.value) for failure in got] == ["Redis is not connected"] * 2
    assert conn.pending == 0 and server.sent() == []
    assert outcomes([conn.stop()]) == [None]  # the connection lost: nothing to close
