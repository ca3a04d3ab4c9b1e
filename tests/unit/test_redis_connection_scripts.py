"""Lua scripts on the Redis connection, without a server: scripts loaded in the middle of a
turn's pipeline leave every reply to its own command; a script Redis cannot compile fails
with Redis' own error and is loaded again the next time; a turn whose replies do not match
its commands fails every command rather than hand a reply to the wrong one."""

from __future__ import annotations

import hashlib

import redis
from twisted.internet import task

from sipxcc.calls.redis_client import RedisError
from tests.unit.test_redis_client import FakeRedis, connection, outcomes

FIRST, SECOND = "return 1", "return redis.call('GET', KEYS[1])"


def sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def redis_like(commands):
    """Replies as Redis gives them: a SCRIPT LOAD the script's SHA-1, an EVALSHA the name
    of what ran, a GET the key's value."""
    replies = []
    for command in commands:
        if command[0] == "SCRIPT":
            replies.append(sha(command[2]).encode())
        elif command[0] == "EVALSHA":
            replies.append(b"ran " + {sha(FIRST): b"first", sha(SECOND): b"second"}[command[1]])
        else:
            replies.append(b"v-" + command[1].encode())
    return replies


def test_scripts_loaded_within_a_pipeline_leave_every_reply_to_its_own_command():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = redis_like
    got = outcomes([conn.pipeline([("GET", "a"), ("EVAL", FIRST, 0), ("GET", "b"),
                                   ("EVAL", SECOND, 1, "k"), ("GET", "c")]),
                    conn.execute("EVAL", FIRST, 0), conn.execute("GET", "d")])
    clock.advance(0)
    assert client.pipelines == [[
        ("GET", "a"), ("SCRIPT", "LOAD", FIRST), ("EVALSHA", sha(FIRST), 0), ("GET", "b"),
        ("SCRIPT", "LOAD", SECOND), ("EVALSHA", sha(SECOND), 1, "k"), ("GET", "c"),
        ("EVALSHA", sha(FIRST), 0), ("GET", "d")]]
    assert got == [[b"v-a", b"ran first", b"v-b", b"ran second", b"v-c"], b"ran first", b"v-d"]
    assert conn.pending == 0


COMPILE_ERROR = ("ERR Error compiling script (new function): user_script:1: "
                 "unexpected symbol near 'retrun'")


def test_a_script_redis_cannot_compile_fails_with_redis_error_and_is_loaded_again_next_time():
    clock = task.Clock()

    class Compiler(FakeRedis):
        """SCRIPT LOAD and EVAL of the broken script fail as Redis' compiler does."""

        def execute_command(self, *args):
            if args[0] == "PING":
                return super().execute_command(*args)
            self.pipelines.append([args])  # the EVAL with its text, run on its own
            raise redis.ResponseError(COMPILE_ERROR)

    client = Compiler()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [
        redis.ResponseError(COMPILE_ERROR) if c[0] == "SCRIPT"
        else redis.exceptions.NoScriptError("NOSCRIPT No matching script.") if c[0] == "EVALSHA"
        else b"v" for c in commands]
    broken = "retrun 1"
    for _ in range(2):
        got = outcomes([conn.execute("EVAL", broken, 0), conn.execute("GET", "k")])
        clock.advance(0)
        assert got[0].check(RedisError) and str(got[0].value) == COMPILE_ERROR
        assert got[1] == b"v"
    assert client.pipelines == [
        [("SCRIPT", "LOAD", broken), ("EVALSHA", sha(broken), 0), ("GET", "k")],
        [("EVAL", broken, 0)],
        [("SCRIPT", "LOAD", broken), ("EVALSHA", sha(broken), 0), ("GET", "k")],  # again
        [("EVAL", broken, 0)]]


def test_replies_that_do_not_match_the_commands_fail_every_command_of_the_turn():
    clock, client = task.Clock(), FakeRedis()
    conn = connection(clock, client)
    conn.start()
    client.answer = lambda commands: [b"OK"] * (len(commands) - 1)  # one reply missing
    got = outcomes([conn.execute("SET", "a", 1), conn.pipeline([("SET", "b", 2)]),
                    conn.execute("SET", "c", 3)])
    clock.advance(0)
    assert len(got) == 3 and all(outcome.check(ValueError) for outcome in got)
    assert conn.pending == 0 and conn.up
