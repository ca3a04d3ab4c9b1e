"""The RESP client's wire handling: pipelined replies in order, replies split across
reads, error replies, and the bounds on pending commands and on reply sizes."""

from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport

from sipxcc.calls import resp
from sipxcc.calls.resp import (
    RedisError,
    RedisProtocol,
    RegistryUnavailable,
    encode,
    parse_url,
)


def connected(max_pending=resp.MAX_PENDING):
    proto = RedisProtocol(max_pending)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def results(ds):
    out = []
    for d in ds:
        d.addBoth(out.append)
    return out


def test_commands_are_encoded_as_arrays_of_bulk_strings():
    assert encode(("SET", "k", 3, b"\r\n")) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n3\r\n$2\r\n\r\n\r\n")


def test_pipelined_replies_come_back_in_order_even_split_across_reads():
    proto, transport = connected()
    got = results(proto.pipeline([("PING",), ("GET", "a"), ("LRANGE", "l", 0, -1),
                                  ("INCR", "n"), ("GET", "missing")]))
    assert transport.value().count(b"*") == 5  # one write holds every command
    wire = b"+PONG\r\n$5\r\nhello\r\n*2\r\n$1\r\nx\r\n$2\r\nyz\r\n:42\r\n$-1\r\n"
    for i in range(len(wire)):
        proto.dataReceived(wire[i:i + 1])
    assert got == ["PONG", b"hello", [b"x", b"yz"], 42, None]


def test_an_error_reply_fails_only_its_command():
    proto, _ = connected()
    got = results(proto.pipeline([("BAD",), ("PING",)]))
    proto.dataReceived(b"-ERR unknown command\r\n+PONG\r\n")
    assert isinstance(got[0].value, RedisError) and got[1] == "PONG"


def test_commands_beyond_the_pending_bound_are_refused_at_once():
    proto, transport = connected(max_pending=2)
    first = results(proto.pipeline([("PING",), ("PING",)]))
    sent = transport.value()
    refused = results([proto.execute("PING")])
    assert refused[0].check(RegistryUnavailable) and transport.value() == sent
    proto.dataReceived(b"+PONG\r\n+PONG\r\n")
    assert first == ["PONG", "PONG"]
    assert results([proto.execute("PING")]) == []  # room again: sent, waiting


def test_a_bulk_reply_beyond_the_bound_closes_the_connection(monkeypatch):
    monkeypatch.setattr(resp, "MAX_REPLY", 10)
    proto, transport = connected()
    got = results([proto.execute("GET", "k")])
    proto.dataReceived(b"$11\r\n")
    assert transport.disconnecting
    proto.connectionLost()
    assert got[0].check(RegistryUnavailable)


def test_a_reply_line_without_end_beyond_the_bound_closes_the_connection(monkeypatch):
    monkeypatch.setattr(resp, "MAX_REPLY", 10)
    proto, transport = connected()
    proto.execute("GET", "k")
    proto.dataReceived(b"+" + b"x" * 20)
    assert transport.disconnecting


def test_an_array_beyond_the_bound_closes_the_connection(monkeypatch):
    monkeypatch.setattr(resp, "MAX_ARRAY", 3)
    proto, transport = connected()
    proto.execute("LRANGE", "l", 0, -1)
    proto.dataReceived(b"*4\r\n")
    assert transport.disconnecting


def test_a_reply_nobody_asked_for_closes_the_connection():
    proto, transport = connected()
    proto.dataReceived(b"+PONG\r\n")
    assert transport.disconnecting


def test_pending_commands_fail_as_unavailable_when_the_connection_is_lost():
    proto, _ = connected()
    got = results(proto.pipeline([("PING",), ("PING",)]))
    proto.connectionLost()
    assert all(f.check(RegistryUnavailable) for f in got)


@pytest.mark.parametrize("url, parsed", [
    ("redis://127.0.0.1:6380/2", ("127.0.0.1", 6380, False, None, 2)),
    ("rediss://:s%40cret@redis.example/0", ("redis.example", 6379, True, "s@cret", 0)),
    ("redis://localhost", ("localhost", 6379, False, None, 0)),
])
def test_urls(url, parsed):
    assert parse_url(url) == parsed


@pytest.mark.parametrize("url", ["http://x", "redis://x/db", "x"])
def test_bad_urls_are_refused(url):
    with pytest.raises(ValueError):
        parse_url(url)
