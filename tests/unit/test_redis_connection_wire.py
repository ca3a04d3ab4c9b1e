"""The Redis connection and subscriber as they are built for the daemon (their own redis-py
client made from the URL, their own thread), seen from the peer's side: a stand-in Redis
on loopback that records every command it is sent. It sees the login with the password
file's password (not the URL's), the database of the URL, then the commands; the replies
reach the caller as Redis sent them; the subscriber gets the published messages on the
reactor. And the threads doing it: one per connection, named after its job, daemon
threads that cannot keep the process from exiting."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from sipxcc.calls.redis_client import RedisConnection, RedisSubscription
from tests.unit.test_redis_client import ThreadedReactor, outcomes, stuck_connection


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


def test_the_connection_logs_in_with_the_password_file_selects_the_urls_database_and_passes_replies_as_redis_sent_them(peer):  # noqa: E501
    peer.replies = {b"HGETALL": _array(_bulk(b"state"), _bulk(b"ringing")),
                    b"SET": b"+OK\r\n", b"INCR": b":7\r\n", b"GET": b"$-1\r\n"}
    reactor = ThreadedReactor()
    conn = RedisConnection(reactor, f"redis://sipxcc:from-the-url@127.0.0.1:{peer.port}/3",
                           password="from-the-file")
    conn.start()
    reactor.run_until(lambda: conn.up)
    got = outcomes([conn.execute("HGETALL", "call:1"), conn.execute("SET", "k", "v"),
                    conn.execute("INCR", "n"), conn.execute("GET", "missing")])
    reactor.advance(0)
    reactor.run_until(lambda: len(got) == 4)
    # Redis' own replies: a list (not a dict), b"OK" (not True), an int, None
    assert got == [[b"state", b"ringing"], b"OK", 7, None]
    assert [c for c in peer.commands if c[0] != b"CLIENT"] == [
        (b"AUTH", b"sipxcc", b"from-the-file"), (b"SELECT", b"3"), (b"PING",),
        (b"HGETALL", b"call:1"), (b"SET", b"k", b"v"), (b"INCR", b"n"), (b"GET", b"missing")]
    stopped = outcomes([conn.stop()])
    reactor.run_until(lambda: stopped)
    assert stopped == [None]


def test_without_a_password_file_the_urls_password_is_used(peer):
    reactor = ThreadedReactor()
    conn = RedisConnection(reactor, f"redis://:from-the-url@127.0.0.1:{peer.port}")
    conn.start()
    reactor.run_until(lambda: conn.up)
    assert peer.commands[0] == (b"AUTH", b"from-the-url")  # database 0: no SELECT
    assert peer.commands[1] == (b"PING",)
    stopped = outcomes([conn.stop()])
    reactor.run_until(lambda: stopped)


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


def test_over_tls_both_connections_check_the_server_with_the_ca_file_and_the_subscriber_is_health_checked():  # noqa: E501
    reactor = ThreadedReactor()
    url = "rediss://redis.example:6380/1"
    conn = RedisConnection(reactor, url, password="pw", ca_file="/etc/sipxcc/ca.pem")
    sub = RedisSubscription(reactor, url, ("c",), lambda *_: None, password="pw",
                            ca_file="/etc/sipxcc/ca.pem")
    for client in (conn.client, sub.client):
        options = client.connection_pool.connection_kwargs
        assert (options["ssl_ca_certs"], options["ssl_cert_reqs"], options["password"],
                options["db"]) == ("/etc/sipxcc/ca.pem", "required", "pw", 1)
    # the subscriber, otherwise silent, PINGs after 10 s without traffic: a dead
    # connection is noticed
    assert sub.client.connection_pool.connection_kwargs["health_check_interval"] == 10


# --- the threads ----------------------------------------------------------------------------


def test_one_named_daemon_thread_runs_a_connections_commands_in_order_and_another_stops_it():
    reactor, client, conn, first = stuck_connection()  # a command hangs on the Redis thread
    second = outcomes([conn.execute("GET", "k2")])
    reactor.advance(0)  # the next turn's command waits for the same thread
    (worker,) = conn._pool.threads  # (Twisted names a pool's threads PoolThread-NAME-N)
    assert re.fullmatch(r"PoolThread-redis-\d+", worker.name) and worker.daemon
    before = set(threading.enumerate())
    stopped = outcomes([conn.stop()])
    stopping = [t for t in set(threading.enumerate()) - before]
    assert [(t.name, t.daemon) for t in stopping] == [("redis-stop", True)]
    client.release.set()
    reactor.run_until(lambda: stopped and first and second)
    assert client.pipelines == [[("GET", "k")], [("GET", "k2")]]  # in the order given
    assert first == [b"OK"] and second == [b"OK"]
