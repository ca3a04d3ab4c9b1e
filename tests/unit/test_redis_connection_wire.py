"""The Redis connections as Redis sees them (a stand-in Redis that keeps and decodes
every write, tests/unit/redisfakes.py): the command connection's one write logs in with
the password file's password (not the URL's) and the URL's user, selects the URL's
database and PINGs; Redis' refusal of the login leaves it unreachable with Redis' own
reason; the replies reach the caller as Redis sent them. Over TLS, its endpoint checks the
server with the CA file under the host's name, made at the first attempt. The
subscription's first write, byte for byte: the same login and one SUBSCRIBE of its
channels; its keep-alive is a PING answered as a subscribed connection is."""

from __future__ import annotations

import pytest
from twisted.internet import defer, error, task
from twisted.python.failure import Failure

from sipxcc.calls import redis_client
from sipxcc.calls.redis_protocol import RedisError
from tests.unit.redisfakes import (
    Endpoints,
    FakeRedis,
    Log,
    Simple,
    Wire,
    answer_as_subscribed_redis,
    connection,
    outcomes,
    subscription,
)


def logged_in(url, **kw):
    """A connection to C{url} started on a stand-in Redis; the clock, Redis, the
    connection."""
    clock = task.Clock()
    server = FakeRedis(clock)
    conn = connection(clock, server, url, **kw)
    conn.start()
    return clock, server, conn


def test_one_write_logs_in_with_the_password_file_and_the_urls_user_and_selects_the_urls_database():  # noqa: E501
    clock, server, conn = logged_in("redis://sipxcc:from-the-url@127.0.0.1:6379/3",
                                    password="from-the-file")
    assert conn.up
    assert server.writes == [[("AUTH", "sipxcc", "from-the-file"), ("SELECT", "3"),
                              ("PING",)]]


@pytest.mark.parametrize("url, password, hello", [
    ("redis://:from-the-url@127.0.0.1", None, [("AUTH", "from-the-url"), ("PING",)]),
    ("redis://:from-the-url@127.0.0.1/0", "pw", [("AUTH", "pw"), ("PING",)]),
    ("redis://127.0.0.1/1", None, [("SELECT", "1"), ("PING",)]),
    ("redis://127.0.0.1", None, [("PING",)]),
    ("redis://127.0.0.1/0", "pw", [("AUTH", "pw"), ("PING",)]),
])
def test_without_a_password_file_the_urls_password_and_no_select_for_database_0(
        url, password, hello):
    _, server, conn = logged_in(url, password=password)
    assert conn.up and server.writes == [hello]


def test_replies_reach_the_caller_as_redis_sent_them():
    clock, server, conn = logged_in("redis://127.0.0.1:6379/0")
    replies = {"HGETALL": [b"state", b"ringing"], "SET": Simple("OK"), "INCR": 7, "GET": None}
    server.answer = lambda commands: [replies[c[0]] for c in commands]
    got = outcomes([conn.execute("HGETALL", "call:1"), conn.execute("SET", "k", "v"),
                    conn.execute("INCR", "n"), conn.execute("GET", "missing")])
    clock.advance(0)
    # Redis' own replies: a list (not a dict), b"OK" (not True), an int, None
    assert got == [[b"state", b"ringing"], b"OK", 7, None]
    assert server.sent() == [[("HGETALL", "call:1"), ("SET", "k", "v"), ("INCR", "n"),
                              ("GET", "missing")]]


WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


@pytest.mark.parametrize("refusal", [
    [RedisError(WRONGPASS), RedisError("NOAUTH Authentication required."),
     RedisError("NOAUTH Authentication required.")],
    [Simple("OK"), RedisError(WRONGPASS), Simple("PONG")],  # the first error wins
])
def test_a_refused_login_leaves_redis_unreachable_with_redis_reason_and_tries_again(refusal):
    clock = task.Clock()
    server = FakeRedis(clock)
    server.answer = lambda commands: refusal
    conn = connection(clock, server, "redis://:wrong@127.0.0.1:6379/2")
    conn.start()
    assert not conn.up and conn.states == []
    assert conn.last_error == WRONGPASS  # what the operator reads
    assert server.connections[0].transport.closing == "lose"
    refused = outcomes([conn.execute("GET", "k")])
    assert str(refused[0].value) == "Redis is not connected"
    server.close()  # its close changes nothing
    assert conn.last_error == WRONGPASS and conn.states == []
    server.answer = lambda commands: [Simple("OK"), Simple("OK"), Simple("PONG")]
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and server.attempts == 2


# --- over TLS -------------------------------------------------------------------------------


def test_over_tls_the_endpoint_checks_the_server_with_the_ca_file_under_the_hosts_name(
        monkeypatch):
    endpoints = Endpoints(monkeypatch)
    clock = task.Clock()
    conn = redis_client.RedisConnection(clock, "rediss://redis.example:6380/1", "pw",
                                        ca_file="/etc/sipxcc/ca.pem")
    assert endpoints.made == []  # made at the first attempt, not before
    conn.start()
    assert endpoints.made == [(clock, "redis.example", 6380, True, "/etc/sipxcc/ca.pem",
                               redis_client.SOCKET_TIMEOUT)]
    assert conn.last_error == "Connection was refused by other side: no Redis here."
    clock.advance(redis_client.INITIAL_DELAY)
    assert endpoints.connects == 2 and len(endpoints.made) == 1  # the same endpoint again
    conn.stop()


def test_a_plain_url_makes_a_plain_endpoint(monkeypatch):
    endpoints = Endpoints(monkeypatch)
    conn = redis_client.RedisConnection(task.Clock(), "redis://10.1.2.3:6390/0")
    conn.start()
    assert [made[1:] for made in endpoints.made] == [
        ("10.1.2.3", 6390, False, None, redis_client.SOCKET_TIMEOUT)]
    conn.stop()


class Accepting:
    """Stands for sipxcc.calls.redis_protocol.endpoint: an endpoint whose connection
    attempts reach C{server} (what the default C{connect} builds talks to it)."""

    def __init__(self, monkeypatch, server):
        self.server = server
        monkeypatch.setattr("sipxcc.calls.redis_client.endpoint", lambda *a, **kw: self)

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(Wire(self.server, protocol))
        self.server.connections.append(protocol)
        return defer.succeed(protocol)


def test_the_default_connect_logs_in_runs_commands_and_notices_the_connection_lost(
        monkeypatch):
    clock = task.Clock()
    server = FakeRedis(clock)
    Accepting(monkeypatch, server)
    states = []
    conn = redis_client.RedisConnection(clock, "redis://127.0.0.1:6379/2", "pw",
                                        on_state=states.append)
    conn.start()
    assert conn.up and server.writes == [[("AUTH", "pw"), ("SELECT", "2"), ("PING",)]]
    got = outcomes([conn.execute("GET", "k")])
    clock.advance(0)
    assert got == [b"OK"]
    server.connections[0].connectionLost(
        Failure(error.ConnectionLost("Connection reset by peer")))
    assert not conn.up and states == [True, False]
    assert conn.last_error == ("Connection to the other side was lost in a non-clean "
                               "fashion: Connection reset by peer.")
    conn.stop()


def test_a_connection_made_with_a_test_clock_needs_no_reactor_until_started():
    # (Twisted warns when its name resolution is asked of a clock: no endpoint yet)
    conn = redis_client.RedisConnection(task.Clock(), "rediss://redis.example/0",
                                        ca_file="/nonexistent/ca.pem")
    assert not conn.up and conn.ca_file == "/nonexistent/ca.pem"


# --- the subscription ---------------------------------------------------------------------


def test_the_subscriptions_first_write_logs_in_and_subscribes_and_its_keepalive_is_a_ping():
    with Log.capture() as log:
        clock = task.Clock()
        server = FakeRedis(clock, answer_as_subscribed_redis)
        sub, _ = subscription(clock, server, "redis://sipxcc:from-the-url@127.0.0.1:6390/2",
                              ("sipxcc:cmd:a", "sipxcc:reply:a"), password="from-the-file")
        sub.start()
        assert server.raw == [
            b"*3\r\n$4\r\nAUTH\r\n$6\r\nsipxcc\r\n$13\r\nfrom-the-file\r\n"
            b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$12\r\nsipxcc:cmd:a\r\n$14\r\nsipxcc:reply:a\r\n"]
        assert sub.up and log.infos() == [
            "subscribed to sipxcc:cmd:a, sipxcc:reply:a on Redis at 127.0.0.1:6390"]
        clock.advance(redis_client.KEEPALIVE - 0.001)
        assert len(server.raw) == 1
        clock.advance(0.001)
        assert server.raw[1:] == [b"*1\r\n$4\r\nPING\r\n"]
        assert server.connections[0].oldest is None  # [b"pong", b""] answered it
        assert sub.up and server.connections[0].transport.closing is None
        sub.stop()
        assert log.warnings() == [] and log.failures() == []


@pytest.mark.parametrize("url, password, hello", [
    ("redis://:from-the-url@127.0.0.1", None, [("AUTH", "from-the-url"), ("SUBSCRIBE", "c")]),
    ("redis://127.0.0.1/0", None, [("SUBSCRIBE", "c")]),
    ("redis://127.0.0.1/3", "pw", [("AUTH", "pw"), ("SELECT", "3"), ("SUBSCRIBE", "c")]),
])
def test_the_subscription_logs_in_as_the_command_connection_does(url, password, hello):
    clock = task.Clock()
    server = FakeRedis(clock, answer_as_subscribed_redis)
    sub, _ = subscription(clock, server, url, ("c",), password=password)
    sub.start()
    assert sub.up and server.writes == [hello]


def test_over_tls_the_subscription_checks_the_server_with_the_ca_file_under_the_hosts_name(
        monkeypatch):
    endpoints = Endpoints(monkeypatch)
    clock = task.Clock()
    sub = redis_client.RedisSubscription(clock, "rediss://redis.example:6380/1", ("c",),
                                         print, "pw", ca_file="/etc/sipxcc/ca.pem")
    assert endpoints.made == []  # made at the first attempt, not before
    sub.start()
    assert endpoints.made == [(clock, "redis.example", 6380, True, "/etc/sipxcc/ca.pem",
                               redis_client.SOCKET_TIMEOUT)]
    assert sub.last_error == "Connection was refused by other side: no Redis here."
    clock.advance(redis_client.INITIAL_DELAY)
    assert endpoints.connects == 2 and len(endpoints.made) == 1  # the same endpoint again
    sub.stop()
