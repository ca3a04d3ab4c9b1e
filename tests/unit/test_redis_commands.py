"""Forwarded commands (sipxcc.calls.redis_commands) on a test clock: the bound on
commands waiting, the timeout, and how the owner answers."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock

from sipxcc.calls.errors import TransferNotPossible
from sipxcc.calls.redis_commands import CommandRouter, OwnerTimeout, OwnerUnavailable


class FakeRedis:
    """Records PUBLISHes; each reaches C{receivers} subscribers."""

    def __init__(self, receivers=1):
        self.receivers = receivers
        self.published: list[tuple[str, dict]] = []

    def execute(self, command, channel, message):
        assert command == "PUBLISH"
        self.published.append((channel, json.loads(message)))
        return defer.succeed(self.receivers)


class FakeLocal:
    def __init__(self, calls=()):
        self.calls = {c: c for c in calls}
        self.hung_up: list[str] = []

    def get(self, call_id):
        return self.calls.get(call_id)

    def hangup(self, call):
        self.hung_up.append(call)

    def transfer(self, call, target, timeout):
        raise TransferNotPossible("Call not in progress in INVITE mode")


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_commands_beyond_the_pending_bound_are_refused_at_once():
    clock, redis = Clock(), FakeRedis()
    router = CommandRouter(clock, redis, FakeLocal(), "b", max_pending=2)
    first, second = router.send("a", "hangup", "c1"), router.send("a", "hangup", "c2")
    third = results(router.send("a", "hangup", "c3"))
    assert third[0].check(OwnerTimeout) and len(redis.published) == 2
    clock.advance(router.timeout)
    assert not router.pending and not clock.getDelayedCalls()
    for d in (first, second):
        assert results(d)[0].check(OwnerTimeout)


def test_an_answer_before_the_timeout_fires_and_cancels_the_timer():
    clock, redis = Clock(), FakeRedis()
    router = CommandRouter(clock, redis, FakeLocal(), "b")
    got = results(router.send("a", "hangup", "c1"))
    (channel, message), = redis.published
    assert channel == "sipxcc:cmd:a" and message["from"] == "b"
    router.on_message(b"sipxcc:reply:b", json.dumps({"id": message["id"]}).encode())
    assert got == [None] and not clock.getDelayedCalls()


def test_a_command_nobody_receives_fails_as_owner_unavailable():
    router = CommandRouter(Clock(), FakeRedis(receivers=0), FakeLocal(), "b")
    assert results(router.send("a", "hangup", "c1"))[0].check(OwnerUnavailable)
    assert not router.pending


def test_the_owner_runs_the_command_and_answers_refusals_by_name():
    redis, local = FakeRedis(), FakeLocal(calls=("c1",))
    owner = CommandRouter(Clock(), redis, local, "a")
    owner.on_message(b"sipxcc:cmd:a", json.dumps(
        {"id": "r1", "from": "b", "op": "hangup", "call": "c1"}).encode())
    owner.on_message(b"sipxcc:cmd:a", json.dumps(
        {"id": "r2", "from": "b", "op": "transfer", "call": "c1", "target": "x"}).encode())
    owner.on_message(b"sipxcc:cmd:a", json.dumps(
        {"id": "r3", "from": "b", "op": "hangup", "call": "gone"}).encode())
    assert local.hung_up == ["c1"]
    assert [(c, m) for c, m in redis.published] == [
        ("sipxcc:reply:b", {"id": "r1"}),
        ("sipxcc:reply:b", {"id": "r2", "error": [
            "TransferNotPossible", "Call not in progress in INVITE mode"]}),
        ("sipxcc:reply:b", {"id": "r3", "error": [
            "OwnerUnavailable", "The call is not on its owner any more"]})]
    asker = CommandRouter(Clock(), FakeRedis(), FakeLocal(), "b")
    got = results(asker.send("a", "transfer", "c1", "x"))
    request_id = asker.redis.published[0][1]["id"]
    asker.on_message(b"sipxcc:reply:b", json.dumps(
        {"id": request_id, "error": ["TransferNotPossible", "no"]}).encode())
    assert got[0].check(TransferNotPossible)
