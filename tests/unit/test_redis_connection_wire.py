"""The Redis command connection as Redis sees it (a stand-in Redis that decodes every
write, tests/unit/redisfakes.py): one write logs in with the password file's password
(not the URL's) and the URL's user, selects the URL's database and PINGs; Redis' refusal
of the login leaves it unreachable with Redis' own reason; the replies reach the caller
as Redis sent them. Over TLS, its endpoint checks the server with the CA file under the
host's name, made at the first attempt. And the subscriber, still redis-py on a thread of
its own, seen from a stand-in Redis on loopback: it logs in, subscribes and hands each
message to the reactor; its options check the server over TLS and PING a silent
connection."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from twisted.internet import defer, error, task

from sipxcc.calls import redis_client
from sipxcc.calls.redis_client import RedisSubscription
from sipxcc.calls.redis_protocol import RedisError
from tests.unit.redisfakes import (
    FakeRedis,
    Simple,
    ThreadedReactor,
    connection,
    outcomes,
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


class Endpoints:
    """Stands for sipxcc.calls.redis_protocol.endpoint (as redis_client calls it): records
    what it is asked for and returns an endpoint that refuses."""

    def __init__(self, monkeypatch):
        self.made = []
        self.connects = 0
        monkeypatch.setattr(redis_client, "endpoint", self.endpoint)

    def endpoint(self, reactor, host, port, *, tls, ca_file, timeout):
        self.made.append((reactor, host, port, tls, ca_file, timeout))
        return self

    def connect(self, factory):
        self.connects += 1
        return defer.fail(error.ConnectionRefusedError("no Redis here"))


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


def test_a_connection_made_with_a_test_clock_needs_no_reactor_until_started():
    # (Twisted warns when its name resolution is asked of a clock: no endpoint yet)
    conn = redis_client.RedisConnection(task.Clock(), "rediss://redis.example/0",
                                        ca_file="/nonexistent/ca.pem")
    assert not conn.up and conn.ca_file == "/nonexistent/ca.pem"


# --- the subscriber (redis-py, on its own thread) -----------------------------------------

def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _array(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


class RespPeer:
    """A stand-in Redis on 127.0.0.1 speaking RESP 2: records each command it is sent (a
    tuple of bytes, in order, from every connection), answers the login, SELECT and PING
    as Redis does, any other command from C{replies} (command name -> raw reply), and to
    a SUBSCRIBE confirms it, then sends the messages in C{publish}."""

    def __init__(self):
        self.commands: list[tuple[bytes, ...]] = []
        self.replies: dict[bytes, bytes] = {}
        self.publish: list[tuple[bytes, bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        stream = conn.makefile("rb")
        subscribed = False
        try:
            while True:
                line = stream.readline()
                if not line:
                    return
                assert line.startswith(b"*"), line
                args = []
                for _ in range(int(line[1:])):
                    length = int(stream.readline()[1:])
                    args.append(stream.read(length + 2)[:-2])
                command = tuple(args)
                self.commands.append(command)
                name = command[0].upper()
                if name in (b"AUTH", b"SELECT"):
                    conn.sendall(b"+OK\r\n")
                elif name == b"PING" and subscribed:
                    conn.sendall(_array(_bulk(b"pong"), _bulk(b"".join(command[1:]))))
                elif name == b"PING":
                    conn.sendall(_bulk(command[1]) if len(command) > 1 else b"+PONG\r\n")
                elif name == b"SUBSCRIBE":
                    subscribed = True
                    for n, channel in enumerate(command[1:], 1):
                        conn.sendall(_array(_bulk(b"subscribe"), _bulk(channel), b":%d\r\n" % n))
                    for channel, data in self.publish:
                        conn.sendall(_array(_bulk(b"message"), _bulk(channel), _bulk(data)))
                else:
                    conn.sendall(self.replies.get(name, b"-ERR unknown command\r\n"))
        except OSError:
            return
        finally:
            stream.close()

    def close(self):
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def peer():
    made = RespPeer()
    yield made
    made.close()


def test_the_subscriber_logs_in_subscribes_and_hands_each_message_to_the_reactor(peer):
    peer.publish = [(b"sipxcc:cmd:a", b"hang-up 1"), (b"sipxcc:cmd:b", b"transfer 2")]
    reactor = ThreadedReactor()
    got = []
    sub = RedisSubscription(reactor, f"redis://:from-the-url@127.0.0.1:{peer.port}/2",
                            ("sipxcc:cmd:a", "sipxcc:cmd:b"),
                            lambda channel, data: got.append((channel, data)),
                            password="from-the-file")
    sub.start()
    reactor.run_until(lambda: len(got) == 2)
    assert got == [(b"sipxcc:cmd:a", b"hang-up 1"), (b"sipxcc:cmd:b", b"transfer 2")]
    assert [c for c in peer.commands if c[0] not in (b"CLIENT", b"PING")] == [
        (b"AUTH", b"from-the-file"), (b"SELECT", b"2"),
        (b"SUBSCRIBE", b"sipxcc:cmd:a", b"sipxcc:cmd:b")]
    assert sub.queued == 0 and sub.dropped == 0
    (thread,) = sub._pool.threads
    assert re.fullmatch(r"PoolThread-redis-subscriber-\d+", thread.name) and thread.daemon
    stopped = outcomes([sub.stop()])
    reactor.run_until(lambda: stopped)
    assert stopped == [None] and not any(t.is_alive() for t in sub._pool.threads)


def test_over_tls_the_subscriber_checks_the_server_with_the_ca_file_and_is_health_checked():
    reactor = ThreadedReactor()
    url = "rediss://redis.example:6380/1"
    sub = RedisSubscription(reactor, url, ("c",), lambda *_: None, password="pw",
                            ca_file="/etc/sipxcc/ca.pem")
    options = sub.client.connection_pool.connection_kwargs
    assert (options["ssl_ca_certs"], options["ssl_cert_reqs"], options["password"],
            options["db"]) == ("/etc/sipxcc/ca.pem", "required", "pw", 1)
    # the subscriber, otherwise silent, PINGs after 10 s without traffic: a dead
    # connection is noticed
    assert options["health_check_interval"] == 10
