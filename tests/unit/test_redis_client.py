"""The Redis connection adapter around redis-py, without a server: commands of one reactor
turn sent as one pipeline in order, replies and error replies to their own command, the
bound on pending commands, refusals while Redis is unreachable, reconnecting with
back-off, noticing a dead idle connection, the subscriber's bound on messages waiting for
the reactor, stopping without blocking the reactor, and the settings read from the URL,
the password file and for TLS."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest
import redis
from twisted.internet import defer, task

from sipxcc.calls import redis_client
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import (
    RedisConnection,
    RedisError,
    RedisSubscription,
    Settings,
    client_options,
    parse_url,
)
from sipxcc.calls.redis_node import RedisNode, read_password_file
from sipxcc.calls.registry import CallRegistry
from sipxcc.privatefile import SecretError

URL = "redis://127.0.0.1:6379/0"


class FakeRedis:
    """Stands for redis-py's client: answers PING while C{reachable}, records each
    pipeline it is given and answers it with C{answer(commands)}."""

    def __init__(self):
        self.reachable = True
        self.pipelines: list[list[tuple]] = []
        self.answer = lambda commands: [b"OK"] * len(commands)
        self.connection_pool = self
        self.disconnected = False
        self.pings = 0

    def execute_command(self, *args):
        assert args == ("PING",)
        self.pings += 1
        if not self.reachable:
            raise redis.ConnectionError("Connection refused")
        return b"PONG"

    def pipeline(self, transaction=True):
        assert transaction is False  # a pipeline, not MULTI/EXEC
        return FakePipeline(self)

    def disconnect(self):
        self.disconnected = True


class FakePipeline:
    def __init__(self, client):
        self.client, self.commands = client, []

    def execute_command(self, *args):
        self.commands.append(args)

    def execute(self, raise_on_error=True):
        assert raise_on_error is False
        self.client.pipelines.append(self.commands)
        if not self.client.reachable:
            raise redis.ConnectionError("Connection reset by peer")
        return self.client.answer(self.commands)


def run_at_once(f, *args):
    """The blocking call, run on the spot (no thread): its result or failure."""
    return defer.maybeDeferred(f, *args)


def connection(clock, client, **kw):
    states = []
    conn = RedisConnection(clock, URL, client=client, run=kw.pop("run", run_at_once),
                           on_state=states.append, **kw)
    conn.states = states
    return conn


def outcomes(ds):
    out = []
    for d in ds:
        d.addBoth(out.append)
    return out


def test_the_commands_of_one_reactor_turn_go_out_as_one_pipeline_in_order():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [b"v-" + str(c[1]).encode() for c in commands]
    got = outcomes([conn.execute("GET", "a"), conn.pipeline([("GET", "b"), ("GET", "c")]),
                    conn.execute("GET", "d")])
    assert got == [] and client.pipelines == []  # sent at the end of the turn
    clock.advance(0)
    assert client.pipelines == [[("GET", "a"), ("GET", "b"), ("GET", "c"), ("GET", "d")]]
    assert got == [b"v-a", [b"v-b", b"v-c"], b"v-d"]  # one reply list per pipeline


def test_an_error_reply_fails_only_its_own_command_or_pipeline():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [
        redis.ResponseError("ERR unknown command") if c[0] == "BAD" else b"PONG"
        for c in commands]
    got = outcomes([conn.execute("BAD"), conn.execute("PING"),
                    conn.pipeline([("PING",), ("BAD",)]), conn.pipeline([("PING",)])])
    clock.advance(0)
    assert client.pipelines == [[("BAD",), ("PING",), ("PING",), ("BAD",), ("PING",)]]
    assert got[0].check(RedisError) and "unknown command" in str(got[0].value)
    assert got[1] == b"PONG"
    assert got[2].check(RedisError) and got[3] == [b"PONG"]


def test_commands_beyond_the_pending_bound_are_refused_at_once_and_not_sent():
    clock, client = task.Clock(), FakeRedis()
    jobs = []

    def held(f, *args):  # the Redis thread is busy: jobs wait
        d = defer.Deferred()
        jobs.append((f, args, d))
        return d
    conn = connection(clock, client, run=held, max_pending=2)
    conn.start()
    f, args, d = jobs.pop()
    d.callback(f(*args))  # connected
    first = outcomes([conn.pipeline([("PING",), ("PING",)])])
    refused = outcomes([conn.execute("PING")])
    assert refused[0].check(RegistryUnavailable)
    assert "too many" in str(refused[0].value)
    clock.advance(0)
    assert [len(job[1][0]) for job in jobs] == [2]  # only the two accepted were sent
    f, args, d = jobs.pop()
    d.callback(f(*args))
    assert first == [[b"OK", b"OK"]] and conn.pending == 0
    assert outcomes([conn.execute("PING")]) == []  # room again: waiting for its reply


def test_while_redis_is_unreachable_commands_fail_at_once_and_attempts_back_off():
    clock, client = task.Clock(), FakeRedis()
    client.reachable = False
    conn = connection(clock, client)
    waiting = outcomes([conn.when_up()])
    conn.start()
    refused = outcomes([conn.execute("GET", "k")])
    assert refused[0].check(RegistryUnavailable) and not conn.up
    assert client.pings == 1
    for delay in (0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0):  # doubling, at most 5 s
        clock.advance(delay - 0.01)
        before = client.pings
        clock.advance(0.02)
        assert client.pings == before + 1, delay
    assert client.pipelines == [] and waiting == []
    client.reachable = True
    clock.advance(5)
    assert conn.up and conn.states == [True] and waiting == [None]
    assert outcomes([conn.when_up()]) == [None]


def test_a_connection_lost_under_a_pipeline_fails_its_commands_and_reconnects_from_the_start():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.reachable = False
    got = outcomes([conn.pipeline([("SET", "a", 1), ("SET", "b", 2)])])
    clock.advance(0)
    assert len(got) == 1 and got[0].check(RegistryUnavailable)
    assert not conn.up and conn.states == [True, False] and conn.pending == 0
    client.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and conn.states == [True, False, True]


def test_a_dead_idle_connection_is_noticed_by_the_keepalive_ping():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.reachable = False  # Redis went away while nothing was sent
    clock.advance(redis_client.KEEPALIVE)
    clock.advance(0)
    assert client.pipelines == [[("PING",)]]
    assert not conn.up and conn.states == [True, False]


def test_a_busy_connection_needs_no_keepalive_ping():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    clock.advance(redis_client.KEEPALIVE / 2)
    conn.execute("GET", "k")
    clock.advance(redis_client.KEEPALIVE / 2)
    clock.advance(0)
    assert client.pipelines == [[("GET", "k")]]


def test_stop_fails_what_waits_stops_reconnecting_and_closes_the_socket():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    got = outcomes([conn.execute("GET", "k")])
    conn.stop()
    assert got[0].check(RegistryUnavailable) and client.disconnected
    assert conn.states == [True, False] and not conn.up
    clock.advance(60)
    assert client.pipelines == [] and client.pings == 1  # nothing sent, no reconnecting
    conn.stop()  # twice is harmless


# --- the subscriber ------------------------------------------------------------------


class FakeReactor(task.Clock):
    """A clock whose thread hand-overs wait until L{run_handed_over}."""

    def __init__(self):
        super().__init__()
        self.handed_over = []

    def callFromThread(self, f, *args, **kw):
        self.handed_over.append((f, args, kw))

    def run_handed_over(self):
        calls, self.handed_over = self.handed_over, []
        for f, args, kw in calls:
            f(*args, **kw)


class FakePubSub:
    def __init__(self, source):
        self.source = source

    def subscribe(self, *channels):
        self.source.subscriptions.append(channels)
        if self.source.broken:
            raise redis.ConnectionError("Connection refused")

    def get_message(self, timeout=0):
        if self.source.messages:
            return self.source.messages.pop(0)
        self.source.stop_when_drained.set()
        return None

    def close(self):
        pass


class FakeSource:
    def __init__(self):
        self.messages, self.subscriptions, self.broken = [], [], False
        self.stop_when_drained = None

    def pubsub(self, ignore_subscribe_messages=False):
        assert ignore_subscribe_messages
        return FakePubSub(self)


def subscription(reactor, source, **kw):
    got = []
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",),
                            lambda channel, data: got.append((channel, data)),
                            client=source, run=run_at_once, **kw)
    source.stop_when_drained = sub._stopping
    return sub, got


def test_messages_waiting_for_the_reactor_are_bounded_and_the_rest_dropped_and_counted():
    reactor, source = FakeReactor(), FakeSource()
    source.messages = [{"type": "message", "channel": b"sipxcc:cmd:a", "data": b"%d" % n}
                       for n in range(5)]
    sub, got = subscription(reactor, source, max_queued=2)
    sub.start()
    assert source.subscriptions == [("sipxcc:cmd:a",)]
    assert (sub.queued, sub.dropped) == (2, 3)
    reactor.run_handed_over()
    assert got == [(b"sipxcc:cmd:a", b"0"), (b"sipxcc:cmd:a", b"1")]
    assert sub.queued == 0


def test_a_broken_subscription_is_made_again_after_a_back_off_delay():
    reactor, source = FakeReactor(), FakeSource()
    source.broken = True
    sub, got = subscription(reactor, source)
    sub.start()
    assert len(source.subscriptions) == 1
    reactor.advance(redis_client.INITIAL_DELAY)
    assert len(source.subscriptions) == 2
    reactor.advance(redis_client.INITIAL_DELAY)
    assert len(source.subscriptions) == 2  # the delay doubled
    source.broken = False
    source.messages = [{"type": "message", "channel": b"sipxcc:cmd:a", "data": b"x"}]
    reactor.advance(redis_client.INITIAL_DELAY)
    assert len(source.subscriptions) == 3
    reactor.run_handed_over()
    assert got == [(b"sipxcc:cmd:a", b"x")]
    sub.stop()
    reactor.advance(60)
    assert len(source.subscriptions) == 3


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
    options = client_options(parse_url("redis://:from-the-url@h/1"), password)
    assert (options["password"], options["db"]) == ("from-the-file", 1)
    assert client_options(parse_url("redis://:from-the-url@h/1"))["password"] == "from-the-url"


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


def test_rediss_verifies_the_servers_certificate_and_name():
    client = redis_client._client(client_options(parse_url("rediss://redis.example:6380/0"),
                                                 ca_file="/etc/sipxcc/ca.pem"))
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"], kwargs["ssl_ca_certs"]) == (
        "required", True, "/etc/sipxcc/ca.pem")
    plain = redis_client._client(client_options(parse_url(URL))).connection_pool
    assert plain.connection_class is redis.Connection


def test_over_tls_the_options_require_a_certificate_chaining_to_the_ca_file_and_naming_the_host():
    options = client_options(parse_url("rediss://redis.example/0"), ca_file="/etc/ca.pem")
    assert {k: options[k] for k in options if k.startswith("ssl")} == {
        "ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True,
        "ssl_ca_certs": "/etc/ca.pem"}  # not left to the library's defaults
    assert not any(k.startswith("ssl") for k in client_options(parse_url(URL)))


def test_every_blocking_call_is_bounded_in_time_and_one_socket_is_used():
    options = client_options(parse_url(URL))
    assert options["socket_timeout"] == options["socket_connect_timeout"] == (
        redis_client.SOCKET_TIMEOUT)
    assert options["max_connections"] == 1


SCRIPT = "return 1"
SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # SHA-1 of SCRIPT, as Redis names it


def test_a_script_is_loaded_once_per_connection_then_run_by_its_sha():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [SHA.encode() if c[0] == "SCRIPT" else 7
                                      for c in commands]
    got = outcomes([conn.execute("EVAL", SCRIPT, 0), conn.execute("EVAL", SCRIPT, 0)])
    clock.advance(0)
    later = outcomes([conn.execute("EVAL", SCRIPT, 1, "k")])
    clock.advance(0)
    assert client.pipelines == [
        [("SCRIPT", "LOAD", SCRIPT), ("EVALSHA", SHA, 0), ("EVALSHA", SHA, 0)],
        [("EVALSHA", SHA, 1, "k")]]
    assert got == [7, 7] and later == [7]  # the SCRIPT LOAD's own reply is nobody's
    client.reachable = False  # Redis restarted: its scripts are gone
    outcomes([conn.execute("PING")])
    clock.advance(0)
    client.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up
    outcomes([conn.execute("EVAL", SCRIPT, 0)])
    clock.advance(0)
    assert client.pipelines[-1] == [("SCRIPT", "LOAD", SCRIPT), ("EVALSHA", SHA, 0)]


def test_a_script_redis_no_longer_knows_is_run_again_with_its_text():
    clock = task.Clock()

    class Flushed(FakeRedis):
        def execute_command(self, *args):
            if args[0] == "PING":
                return super().execute_command(*args)
            self.pipelines.append([args])
            return 8
    client = Flushed()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [SHA.encode() for _ in commands]
    conn.execute("EVAL", SCRIPT, 0)
    clock.advance(0)
    client.answer = lambda commands: [
        redis.exceptions.NoScriptError("NOSCRIPT No matching script."), b"v"]
    got = outcomes([conn.execute("EVAL", SCRIPT, 0), conn.execute("GET", "k")])
    clock.advance(0)
    assert got == [8, b"v"]
    assert client.pipelines[-2:] == [[("EVALSHA", SHA, 0), ("GET", "k")],
                                     [("EVAL", SCRIPT, 0)]]


# --- stopping without blocking the reactor ---------------------------------------------


class ThreadedReactor(task.Clock):
    """A clock that takes hand-overs from real threads (as the reactor's callFromThread)
    and runs them when the test asks, waiting for them with a deadline."""

    def __init__(self):
        super().__init__()
        self.handed_over = queue.Queue()

    def callFromThread(self, f, *args, **kw):
        self.handed_over.put((f, args, kw))

    def run_until(self, condition, timeout=10.0):
        """Run hand-overs as they come until C{condition()} holds (or fail at the
        deadline)."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, "the condition did not hold in time"
            try:
                f, args, kw = self.handed_over.get(timeout=left)
            except queue.Empty:
                continue
            f(*args, **kw)


class StuckRedis(FakeRedis):
    """Answers PING; a pipeline blocks its thread until C{release} is set."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def pipeline(self, transaction=True):
        client = self

        class Stuck(FakePipeline):
            def execute(self, raise_on_error=True):
                client.entered.set()
                assert client.release.wait(10)
                return super().execute(raise_on_error)
        return Stuck(self)


def stuck_connection():
    """A connection on its own Redis thread (no fake runner), connected, with a command
    that hangs on that thread."""
    reactor, client = ThreadedReactor(), StuckRedis()
    conn = RedisConnection(reactor, URL, client=client)
    conn.start()
    reactor.run_until(lambda: conn.up)
    answer = outcomes([conn.execute("GET", "k")])
    reactor.advance(0)  # the reactor turn ends: the command goes to the Redis thread
    assert client.entered.wait(10)
    return reactor, client, conn, answer


def test_stop_returns_at_once_while_a_command_hangs_and_fires_once_the_thread_ended():
    reactor, client, conn, answer = stuck_connection()
    stopped = outcomes([conn.stop()])  # the Redis thread is stuck: stop() returned anyway
    assert stopped == [] and not conn.up and not client.disconnected
    client.release.set()  # the command comes back: the thread ends, the socket is closed
    reactor.run_until(lambda: stopped)
    assert stopped == [None] and client.disconnected
    assert not any(t.is_alive() for t in conn._pool.threads)  # the thread ended
    reactor.run_until(lambda: answer)
    assert answer == [b"OK"]  # the command that was on its way got its answer


def test_stop_fires_after_its_bound_when_the_thread_does_not_end():
    reactor, client, conn, _ = stuck_connection()
    stopped = outcomes([conn.stop()])
    reactor.advance(redis_client.STOP_TIMEOUT - 0.1)
    assert stopped == []
    reactor.advance(0.1)
    assert stopped == [None] and not client.disconnected  # not waiting any longer
    client.release.set()  # (the thread ends by itself, later)
    reactor.run_until(lambda: client.disconnected)


def test_the_subscriber_stops_without_blocking_too():
    reactor, source = ThreadedReactor(), FakeSource()
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",), lambda *_: None, client=source)
    source.stop_when_drained = threading.Event()  # (the fake's get_message sets it)
    sub.start()
    reactor.run_until(lambda: source.subscriptions)  # subscribed, polling
    stopped = outcomes([sub.stop()])
    assert stopped == []
    reactor.run_until(lambda: stopped)
    assert stopped == [None] and not any(t.is_alive() for t in sub._pool.threads)


def test_the_nodes_service_stops_without_blocking_and_fires_once_its_threads_ended():
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    reactor = ThreadedReactor()
    node = RedisNode(reactor, CallRegistry(reactor, {}), url=f"redis://127.0.0.1:{port}/0",
                     password=None, node_id="a", max_calls=1, max_calls_per_agent=1)
    node.startService()
    reactor.run_until(lambda: node.connection.last_error is not None)  # tried, refused
    stopped = outcomes([node.stopService()])
    reactor.run_until(lambda: stopped)
    assert stopped == [None]
    for pool in (node.connection._pool, node.subscription._pool):
        assert not any(t.is_alive() for t in pool.threads)
