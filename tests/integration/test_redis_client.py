"""The Redis connection adapter against a real redis-server: over TLS only to a server
whose certificate chains to the configured CA and names the host (rediss://), and logging
in with the password from the password file; commands and pub/sub work on both, and a
subscription's keep-alive PING is answered as a subscribed connection's."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_client import RedisConnection, RedisSubscription
from sipxcc.calls.redis_node import read_password_file
from tests.integration.redisserver import RedisServer
from tests.integration.sipfake import make_certificate


@pytest.fixture
def pki(tmp_path):
    """ca.pem, and cert/key files: good (CA-signed for 127.0.0.1), rogue (self-signed for
    127.0.0.1), other_name (CA-signed for 127.0.0.2 only)."""
    ca_pem, _, ca = make_certificate("sipxcc test CA", ca=True)
    files = {"ca": str(tmp_path / "ca.pem")}
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    for name, issuer, address in (("good", ca, "127.0.0.1"), ("rogue", None, "127.0.0.1"),
                                  ("other_name", ca, "127.0.0.2")):
        cert, key, _ = make_certificate(f"redis {name}", issuer, addresses=(address,))
        (tmp_path / f"{name}.pem").write_bytes(cert)
        (tmp_path / f"{name}.key").write_bytes(key)
        files[name] = (str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
    return files


@defer.inlineCallbacks
def _eventually(check, what, timeout=10.0):
    """Wait for C{check()}; at the deadline fail with C{what()}."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        yield task.deferLater(reactor, 0.05, lambda: None)


@defer.inlineCallbacks
def _commands_and_messages_work(server, **kw):
    """SET/GET on a connection, and a PUBLISH reaching a subscription, with C{kw}."""
    connection = RedisConnection(reactor, server.url, **kw)
    got = []
    subscription = RedisSubscription(reactor, server.url, ("ch",),
                                     lambda channel, data: got.append((channel, data)), **kw)
    connection.start()
    subscription.start()
    try:
        yield connection.when_up()
        yield connection.execute("SET", "k", "v")
        assert (yield connection.execute("GET", "k")) == b"v"
        deadline = time.monotonic() + 10
        while not got:  # published until the subscription is in place and hears it
            assert time.monotonic() < deadline, "the subscription never got a message"
            yield connection.execute("PUBLISH", "ch", "hello")
            yield task.deferLater(reactor, 0.05, lambda: None)
        assert got[0] == (b"ch", b"hello")
    finally:
        subscription.stop()
        connection.stop()


@defer.inlineCallbacks
def _refused(server, problem, **kw):
    """Neither connection comes up; the last error of each is C{problem}."""
    connection = RedisConnection(reactor, server.url, **kw)
    subscription = RedisSubscription(reactor, server.url, ("ch",), print, **kw)
    connection.start()
    subscription.start()
    try:
        for link in (connection, subscription):
            yield _eventually(lambda link=link: link.last_error == problem,
                              lambda link=link: f"not {problem!r} but {link.last_error!r}")
        assert not connection.up and not subscription.up
        with pytest.raises(RegistryUnavailable):
            yield connection.execute("GET", "k")
    finally:
        subscription.stop()
        connection.stop()


@pytest_twisted.inlineCallbacks
def test_rediss_talks_only_to_a_server_the_ca_vouches_for_under_the_hosts_name(tmp_path,
                                                                               pki):
    lost = "Redis connection lost: TLS handshake failed: "
    for name, problem in (("rogue", lost + "certificate verify failed"),
                          ("other_name", lost + "the certificate is not for 127.0.0.1"),
                          ("good", None)):
        server = RedisServer(tmp_path, tls=pki[name])
        server.start()
        try:
            if problem is None:
                yield _commands_and_messages_work(server, ca_file=pki["ca"])
            else:
                yield _refused(server, problem, ca_file=pki["ca"])
        finally:
            server.stop()


@pytest_twisted.inlineCallbacks
def test_the_password_file_logs_in_and_a_wrong_password_is_refused(tmp_path):
    server = RedisServer(tmp_path, password="s3cret pass")
    server.start()
    try:
        path = tmp_path / "redis.password"
        path.write_text("s3cret pass\n")
        os.chmod(path, 0o600)
        yield _commands_and_messages_work(server, password=read_password_file(str(path)))
        yield _refused(server, "WRONGPASS invalid username-password pair or user is "
                       "disabled.", password="wrong")
    finally:
        server.stop()


@pytest_twisted.inlineCallbacks
def test_a_lua_script_runs_by_its_sha_and_still_runs_after_redis_forgot_it(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    connection = RedisConnection(reactor, server.url)
    connection.start()
    script = "return redis.call('INCR', KEYS[1])"
    try:
        yield connection.when_up()
        assert (yield connection.execute("EVAL", script, 1, "n")) == 1
        assert (yield connection.execute("SCRIPT", "EXISTS", _sha1(script))) == [1]
        assert (yield connection.execute("EVAL", script, 1, "n")) == 2
        yield connection.execute("SCRIPT", "FLUSH")  # as after a failover
        assert (yield connection.execute("EVAL", script, 1, "n")) == 3
        assert (yield connection.execute("GET", "n")) == b"3"
    finally:
        connection.stop()
        server.stop()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest_twisted.inlineCallbacks
def test_a_subscriptions_keepalive_ping_is_answered_and_it_stays_subscribed(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    connection = RedisConnection(reactor, server.url)
    got = []
    subscription = RedisSubscription(reactor, server.url, ("ch",),
                                     lambda channel, data: got.append(data))
    connection.start()
    subscription.start()

    def subscriber():
        """The subscription's entry in CLIENT LIST (C{sub=1}), as a dict, or None."""
        d = connection.execute("CLIENT", "LIST")
        return d.addCallback(lambda text: next(
            (dict(field.split("=", 1) for field in line.split() if "=" in field)
             for line in text.decode().splitlines() if " sub=1 " in f" {line} "), None))
    try:
        yield connection.when_up()
        yield subscription.when_up()
        first = yield subscriber()
        assert first["cmd"] == "subscribe"
        deadline = time.monotonic() + 10
        while (now := (yield subscriber()))["cmd"] != "ping":  # idle: PINGed within 1 s
            assert time.monotonic() < deadline, f"no keep-alive PING: {now}"
            yield task.deferLater(reactor, 0.05, lambda: None)
        # the pong answered the PING (a PING left waiting would stay the oldest until the
        # reply timeout closed the connection)
        protocol = subscription._protocol
        yield _eventually(lambda: protocol.oldest is None, lambda: "the PING waits")
        assert subscription.up and now["id"] == first["id"]  # the same connection
        assert subscription.last_error is None
        assert (yield connection.execute("PUBLISH", "ch", "still here")) == 1
        yield _eventually(lambda: got == [b"still here"], lambda: f"got {got}")
    finally:
        subscription.stop()
        connection.stop()
        server.stop()
