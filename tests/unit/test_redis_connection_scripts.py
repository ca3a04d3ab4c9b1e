"""Lua scripts on the Redis command connection, against a stand-in Redis
(tests/unit/redisfakes.py): a script is loaded once per connection (in the write of its
first use) and then run by its SHA-1; loads in the middle of a write leave every reply to
its own command; a script Redis no longer knows (NOSCRIPT) is sent again with its text
and every script is loaded again; a script Redis cannot compile fails with Redis' own
error and is loaded again the next time."""

from __future__ import annotations

import hashlib

from twisted.internet import task

from sipxcc.calls import redis_client
from sipxcc.calls.redis_client import RedisError
from tests.unit.redisfakes import FakeRedis, Simple, connection, outcomes

FIRST, SECOND = "return 1", "return redis.call('GET', KEYS[1])"
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."


def sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


NAMES = {sha(FIRST): b"first", sha(SECOND): b"second"}


class Scripted:
    """Replies as Redis gives them: a SCRIPT LOAD the script's SHA-1 (the script then
    known), an EVALSHA of a known script (an EVAL) the name of what ran, of an unknown one
    NOSCRIPT; a GET the key's value. C{forget()} is SCRIPT FLUSH."""

    def __init__(self):
        self.known = set()

    def __call__(self, commands):
        replies = []
        for command in commands:
            if command[0] == "PING":
                replies.append(Simple("PONG"))
            elif command[0] == "SCRIPT":
                self.known.add(sha(command[2]))
                replies.append(sha(command[2]).encode())
            elif command[0] == "EVALSHA":
                replies.append(b"ran " + NAMES[command[1]] if command[1] in self.known
                               else RedisError(NOSCRIPT))
            elif command[0] == "EVAL":
                replies.append(b"ran " + NAMES[sha(command[1])] + b" from its text")
            else:
                replies.append(b"v-" + command[1].encode())
        return replies

    def forget(self):
        self.known.clear()


def started():
    clock = task.Clock()
    server = FakeRedis(clock)
    server.answer = redis = Scripted()
    conn = connection(clock, server)
    conn.start()
    return clock, server, conn, redis


def test_scripts_loaded_within_a_write_leave_every_reply_to_its_own_command():
    clock, server, conn, _ = started()
    got = outcomes([conn.pipeline([("GET", "a"), ("EVAL", FIRST, 0), ("GET", "b"),
                                   ("EVAL", SECOND, 1, "k"), ("GET", "c")]),
                    conn.execute("EVAL", FIRST, 0), conn.execute("GET", "d")])
    clock.advance(0)
    assert server.sent() == [[
        ("GET", "a"), ("SCRIPT", "LOAD", FIRST), ("EVALSHA", sha(FIRST), "0"), ("GET", "b"),
        ("SCRIPT", "LOAD", SECOND), ("EVALSHA", sha(SECOND), "1", "k"), ("GET", "c"),
        ("EVALSHA", sha(FIRST), "0"), ("GET", "d")]]
    assert got == [[b"v-a", b"ran first", b"v-b", b"ran second", b"v-c"], b"ran first", b"v-d"]
    assert conn.pending == 0


def test_a_script_is_loaded_once_per_connection_then_run_by_its_sha():
    clock, server, conn, redis = started()
    got = outcomes([conn.execute("EVAL", FIRST, 0), conn.execute("EVAL", FIRST, 0)])
    clock.advance(0)
    later = outcomes([conn.execute("EVAL", FIRST, 1, "k")])
    clock.advance(0)
    assert server.sent() == [
        [("SCRIPT", "LOAD", FIRST), ("EVALSHA", sha(FIRST), "0"), ("EVALSHA", sha(FIRST), "0")],
        [("EVALSHA", sha(FIRST), "1", "k")]]
    assert got == [b"ran first", b"ran first"] and later == [b"ran first"]
    server.reachable = False  # Redis restarted: its scripts are gone
    redis.forget()
    conn.execute("PING").addErrback(lambda _: None)
    clock.advance(0)
    server.reachable = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert conn.up and len(server.connections) == 2
    again = outcomes([conn.execute("EVAL", FIRST, 0)])
    clock.advance(0)
    assert server.sent()[-1] == [("SCRIPT", "LOAD", FIRST), ("EVALSHA", sha(FIRST), "0")]
    assert again == [b"ran first"]


def test_a_script_redis_no_longer_knows_is_sent_again_with_its_text_and_all_are_loaded_again():
    clock, server, conn, redis = started()
    conn.execute("EVAL", FIRST, 0)
    conn.execute("EVAL", SECOND, 1, "k")
    clock.advance(0)
    redis.forget()  # SCRIPT FLUSH, by someone else
    got = outcomes([conn.execute("EVAL", FIRST, 0), conn.execute("GET", "k")])
    clock.advance(0)
    assert got == [b"ran first from its text", b"v-k"]  # each reply to its own command
    assert server.sent()[-2:] == [[("EVALSHA", sha(FIRST), "0"), ("GET", "k")],
                                  [("EVAL", FIRST, "0")]]
    assert conn.pending == 0
    later = outcomes([conn.execute("EVAL", SECOND, 1, "k")])
    clock.advance(0)
    assert server.sent()[-1] == [("SCRIPT", "LOAD", SECOND), ("EVALSHA", sha(SECOND), "1", "k")]
    assert later == [b"ran second"]


def test_a_noscript_answered_after_the_stop_is_not_sent_again():
    clock, server, conn, redis = started()
    conn.execute("EVAL", FIRST, 0)
    clock.advance(0)
    redis.forget()
    server.answering = False
    got = outcomes([conn.execute("EVAL", FIRST, 0)])
    clock.advance(0)
    conn.stop()
    server.release()  # the reply was on its way: NOSCRIPT, and no connection to retry on
    assert got[0].check(RedisError) and str(got[0].value) == NOSCRIPT
    assert server.sent()[-1] == [("EVALSHA", sha(FIRST), "0")] and conn.pending == 0


COMPILE_ERROR = ("ERR Error compiling script (new function): user_script:1: "
                 "unexpected symbol near 'retrun'")


def test_a_script_redis_cannot_compile_fails_with_redis_error_and_is_loaded_again_next_time():
    clock = task.Clock()
    server = FakeRedis(clock)
    conn = connection(clock, server)
    conn.start()
    server.answer = lambda commands: [
        RedisError(COMPILE_ERROR) if c[0] in ("SCRIPT", "EVAL")
        else RedisError(NOSCRIPT) if c[0] == "EVALSHA" else b"v" for c in commands]
    broken = "retrun 1"
    for _ in range(2):
        got = outcomes([conn.execute("EVAL", broken, 0), conn.execute("GET", "k")])
        clock.advance(0)
        assert got[0].check(RedisError) and str(got[0].value) == COMPILE_ERROR
        assert got[1] == b"v" and conn.pending == 0
    assert server.sent() == [
        [("SCRIPT", "LOAD", broken), ("EVALSHA", sha(broken), "0"), ("GET", "k")],
        [("EVAL", broken, "0")],
        [("SCRIPT", "LOAD", broken), ("EVALSHA", sha(broken), "0"), ("GET", "k")],  # again
        [("EVAL", broken, "0")]]
