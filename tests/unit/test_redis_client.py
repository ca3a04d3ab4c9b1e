"""The Redis command connection on the reactor, against a stand-in Redis
(tests/unit/redisfakes.py: real RespProtocols, bytes in memory): the commands of one
reactor turn written as one write in order, replies and error replies to their own
command, the bound on pending commands, refusals while Redis is unreachable, reconnecting
with back-off, noticing a dead idle connection and giving up on one that does not answer,
stopping (at once, at the close, or after its bound); the node's service stopping both
its connections; and the settings read from the URL, the password file and for TLS (both
connections)."""

from __future__ import annotations

import os

import pytest
from twisted.internet import task

from sipxcc.calls import redis_client
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import (
    SOCKET_TIMEOUT,
    RedisConnection,
    RedisError,
    RedisSubscription,
    Settings,
    parse_url,
)
from sipxcc.calls.redis_node import RedisNode, read_password_file
from sipxcc.calls.redis_protocol import ConnectionLost
from sipxcc.calls.registry import CallRegistry
from sipxcc.privatefile import SecretError
from tests.unit.redisfakes import (
    Endpoints,
    FakeRedis,
    Log,
    answer_as_subscribed_redis,
    connection,
    outcomes,
    started,
)

RESET = "Connection to the other side was lost in a non-clean fashion: Connection reset by peer."



def test_the_commands_of_one_reactor_turn_go_out_as_one_write_in_order():
    clock, server, conn = started()
    server.answer = lambda commands: [b"v-" + c[1].encode() for c in commands]
    got = outcomes([conn.execute("GET", "a"), conn.pipeline([("GET", "b"), ("GET", "c")]),
                    conn.execute("GET", "d")])
    assert got == [] and server.sent() == []  # written at the end of the turn
    clock.advance(0)
    assert server.sent() == [[("GET", "a"), ("GET", "b"), ("GET", "c"), ("GET", "d")]]
    assert got == [b"v-a", [b"v-b", b"v-c"], b"v-d"]  # one reply list per pipeline
    assert conn.pending == 0
    later = outcomes([conn.execute("GET", "e")])
    clock.advance(0)
    assert server.sent()[1:] == [[("GET", "e")]] and later == [b"v-e"]  # the next turn


def test_an_error_reply_fails_only_its_own_command_or_pipeline():
    clock, server, conn = started()
    server.answer = lambda commands: [
        RedisError("ERR unknown command 'BAD'") if c[0] == "BAD" else b"PONG"
        for c in commands]
    got = outcomes([conn.execute("BAD"), conn.execute("PING"),
                    conn.pipeline([("PING",), ("BAD",)]), conn.pipeline([("PING",)])])
    clock.advance(0)
    assert server.sent() == [[("BAD",), ("PING",), ("PING",), ("BAD",), ("PING",)]]
    assert got[0].check(RedisError) and str(got[0].value) == "ERR unknown command 'BAD'"
    assert got[1] == b"PONG"
    assert got[2].check(RedisError) and got[3] == [b"PONG"]
    assert conn.pending == 0 and conn.up


def test_commands_beyond_the_pending_bound_are_refused_at_once_and_not_sent():
    clock, server, conn = started(max_pending=2)
    server.answering = False
    first = outcomes([conn.pipeline([("PING",), ("PING",)])])
    refused = outcomes([conn.execute("PING")])
    assert refused[0].check(RegistryUnavailable)
    assert str(refused[0].value) == "too many Redis commands pending"
    clock.advance(0)
    assert server.sent() == [[("PING",), ("PING",)]]  # only the two accepted were sent
    server.release()
    assert first == [[b"PONG", b"PONG"]] and conn.pending == 0
    assert outcomes([conn.execute("PING")]) == []  # room again: waiting for its reply


def test_while_redis_is_unreachable_commands_fail_at_once_and_attempts_back_off():
    clock = task.Clock()
    server = FakeRedis(clock)
    server.reachable = False
    conn = connection(clock, server)
    waiting = outcomes([conn.when_up()])
    conn.start()
    refused = outcomes([conn.execute("GET", "k")])
    assert refused[0].check(RegistryUnavailable) and not conn.up
    assert server.attempts == 1
    for delay in (0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0):  # doubling, at most 5 s
        clock.advance(delay - 0.01)  # (the clock is where the last attempt was made)
        before = server.attempts
        clock.advance(0.01)
        assert server.attempts == before + 1, delay
    assert server.writes == [] and waiting == []
    server.reachable = True
    clock.advance(5)
    assert conn.up and conn.states == [True] and waiting == [None]
    assert outcomes([conn.when_up()]) == [None]


def test_a_connection_lost_under_a_pipeline_fails_its_commands_and_reconnects_from_the_start():
    clock, server, conn = started()
    server.reachable = False
    got = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)
    assert len(got) == 1 and got[0].check(ConnectionLost)
    assert isinstance(got[0].value, RegistryUnavailable)
    assert str(got[0].value) == f"Redis connection lost: {RESET}"
    assert not conn.up and conn.states == [True, False] and conn.pending == 0
    server.reachable = True
    clock.advance(redis_client.INITIAL_DELAY - 0.001)
    assert not conn.up and server.attempts == 1
    clock.advance(0.001)
    assert conn.up and conn.states == [True, False, True] and len(server.connections) == 2
    again = outcomes([conn.execute("GET", "a")])
    clock.advance(0)
    assert again == [b"OK"]  # on the new connection
    server.reachable = False  # lost again: the back-off starts from its first delay
    conn.execute("GET", "a").addErrback(lambda _: None)
    clock.advance(0)
    server.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and conn.states == [True, False, True, False, True]


def test_a_dead_idle_connection_is_noticed_by_the_keepalive_ping():
    clock, server, conn = started()
    server.reachable = False  # Redis went away while nothing was sent
    clock.advance(redis_client.KEEPALIVE)
    clock.advance(0)
    assert server.sent() == [[("PING",)]]
    assert not conn.up and conn.states == [True, False] and conn.last_error == RESET


def test_a_busy_connection_needs_no_keepalive_ping():
    clock, server, conn = started()
    clock.advance(redis_client.KEEPALIVE / 2)
    conn.execute("GET", "k")
    clock.advance(redis_client.KEEPALIVE / 2)
    clock.advance(0)
    assert server.sent() == [[("GET", "k")]]
    clock.advance(redis_client.KEEPALIVE)
    clock.advance(0)
    assert server.sent() == [[("GET", "k")], [("PING",)]]  # idle for a period: checked


def test_a_connection_whose_oldest_command_waited_the_reply_timeout_is_closed_and_made_again():
    with Log.capture() as log:
        clock, server, conn = started()
        server.answering = False  # Redis (or the network to it) went silent
        got = outcomes([conn.execute("GET", "k")])
        clock.advance(0)
        wire = server.connections[0].transport
        for _ in range(int(SOCKET_TIMEOUT) - 1):
            clock.advance(redis_client.KEEPALIVE)
        assert wire.closing is None and got == []  # waited 4 s of 5
        clock.advance(redis_client.KEEPALIVE)
        assert wire.closing == "abort"  # 5 s: given up
        server.close()
        assert got[0].check(ConnectionLost)
        assert str(got[0].value) == "Redis connection lost: no reply within 5.0 s"
        assert not conn.up and conn.last_error == "no reply within 5.0 s"
        assert log.warnings() == [
            "lost the connection to Redis (no reply within 5.0 s); reconnecting"]
        server.answering = True
        clock.advance(redis_client.INITIAL_DELAY)
        assert conn.up and len(server.connections) == 2 and conn.pending == 0
        assert log.failures() == []


def test_stop_fails_what_waits_stops_reconnecting_and_closes_the_connection():
    clock, server, conn = started()
    got = outcomes([conn.execute("GET", "k")])
    stopped = outcomes([conn.stop()])
    assert got[0].check(RegistryUnavailable)
    assert str(got[0].value) == "the Redis connection is closed"
    assert server.connections[0].transport.closing == "lose"
    assert conn.states == [True, False] and not conn.up and conn.pending == 0
    assert stopped == []  # until the connection is closed
    server.close()
    assert stopped == [None] and clock.getDelayedCalls() == []
    clock.advance(60)
    assert server.sent() == [] and server.attempts == 1  # nothing sent, no reconnecting
    assert outcomes([conn.stop()]) == [None]  # twice is harmless
    assert conn.states == [True, False]


@pytest.mark.parametrize("bound", [redis_client.STOP_TIMEOUT, 0.5])
def test_stop_fires_after_its_bound_when_the_connection_does_not_close_and_aborts_it(bound):
    with Log.capture() as log:
        kw = {} if bound == redis_client.STOP_TIMEOUT else {"stop_timeout": bound}
        clock, server, conn = started(**kw)
        stopped = outcomes([conn.stop()])
        wire = server.connections[0].transport
        clock.advance(bound - 0.001)
        assert stopped == [] and wire.closing == "lose"
        clock.advance(0.001)
        assert stopped == [None] and wire.closing == "abort"  # not waiting any longer
        assert log.warnings() == [
            f"the Redis connection did not close within {bound} s; aborted"]
        server.close()  # the abort's connectionLost: nothing more happens
        assert conn.states == [True, False] and clock.getDelayedCalls() == []
        assert log.failures() == []


# --- the node's service ----------------------------------------------------------------


def test_the_nodes_service_stops_both_connections_and_fires_once_both_are_closed():
    clock = task.Clock()
    node = RedisNode(clock, CallRegistry(clock, {}), url="redis://127.0.0.1:6379/0",
                     password=None, node_id="a", max_calls=1, max_calls_per_agent=1)
    commands, pubsub = FakeRedis(clock), FakeRedis(clock, answer_as_subscribed_redis)
    commands.reachable = False
    node.connection._connect_to = commands.connect
    node.subscription._connect_to = pubsub.connect
    node.startService()
    assert node.connection.last_error == "Connection was refused by other side: Connection refused."
    assert node.subscription.up and pubsub.writes == [
        [("SUBSCRIBE", "sipxcc:cmd:a", "sipxcc:reply:a")]]
    stopped = outcomes([node.stopService()])
    assert stopped == [] and pubsub.connections[0].transport.closing == "lose"
    pubsub.close()  # the subscription's connection closed: both are
    assert stopped == [None] and clock.getDelayedCalls() == []  # no attempt left
    clock.advance(60)
    assert (commands.attempts, pubsub.attempts) == (1, 1)


# --- settings ------------------------------------------------------------------------


@pytest.mark.parametrize("url, settings", [
    ("redis://127.0.0.1:6380/2", Settings("127.0.0.1", 6380, False, None, None, 2)),
    ("rediss://:s%40cret@redis.example/0", Settings("redis.example", 6379, True, None,
                                                    "s@cret", 0)),
    ("redis://sipxcc:pw@localhost", Settings("localhost", 6379, False, "sipxcc", "pw", 0)),
    ("redis:///1", Settings("127.0.0.1", 6379, False, None, None, 1)),  # no host: this one
])
def test_urls(url, settings):
    assert parse_url(url) == settings


@pytest.mark.parametrize("url, problem", [
    ("http://x", "must start with redis:// or rediss://"),
    ("x", "must start with redis:// or rediss://"),
    ("redis://x/db", "the path must be a database number"),
    ("redis://x:port/0", "the port must be a number"),
    ("redis://x:99999/0", "the port must be a number"),
])
def test_bad_urls_are_refused_saying_what_is_wrong(url, problem):
    with pytest.raises(ValueError) as refused:
        parse_url(url)
    assert str(refused.value) == problem


def test_the_password_file_is_read_and_wins_over_the_urls_password(tmp_path):
    path = tmp_path / "redis.password"
    path.write_text("from-the-file\nignored\n")
    os.chmod(path, 0o600)
    password = read_password_file(str(path))
    assert password == "from-the-file"
    url = "redis://:from-the-url@h/1"
    assert RedisConnection(task.Clock(), url, password).password == "from-the-file"
    assert RedisConnection(task.Clock(), url).password == "from-the-url"
    assert RedisConnection(task.Clock(), "redis://h/1").password is None
    subscription = RedisSubscription(task.Clock(), url, ("c",), print, password)
    assert subscription.password == "from-the-file"
    assert RedisSubscription(task.Clock(), url, ("c",), print).password == "from-the-url"


@pytest.mark.parametrize("mode, content, problem", [
    (0o644, "pw\n", "readable by group or others (mode 0644); chmod 600 it"),
    (0o600, "\n", "is empty"),
    (0o600, b"\xffpw\n", "is not UTF-8"),
    (None, None, "cannot read"),
])
def test_an_unusable_password_file_is_refused_with_one_line(tmp_path, mode, content, problem):
    path = tmp_path / "redis.password"
    if content is not None:
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        os.chmod(path, mode)
    with pytest.raises(SecretError, match="registry.redis_password_file") as raised:
        read_password_file(str(path))
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_rediss_verifies_the_servers_certificate_and_name(monkeypatch):
    """Both connections: the endpoint is TLS, checked with the CA file under the URL's
    host name (how the endpoint does it: test_redis_protocol.py)."""
    endpoints, clock = Endpoints(monkeypatch), task.Clock()
    url = "rediss://redis.example:6380/1"
    links = [RedisConnection(clock, url, ca_file="/etc/sipxcc/ca.pem"),
             RedisSubscription(clock, url, ("c",), print, ca_file="/etc/sipxcc/ca.pem")]
    links += [RedisConnection(clock, "redis://redis.example:6380/1"),
              RedisSubscription(clock, "redis://redis.example/1", ("c",), print)]
    for link in links:
        link.start()
        link.stop()
    assert endpoints.made == [(clock, "redis.example", 6380, True, "/etc/sipxcc/ca.pem",
                               SOCKET_TIMEOUT)] * 2 + [
        (clock, "redis.example", 6380, False, None, SOCKET_TIMEOUT),
        (clock, "redis.example", 6379, False, None, SOCKET_TIMEOUT)]
