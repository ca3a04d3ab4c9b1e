"""
Node liveness after a Redis outage: every heartbeat expired while Redis was away, so the
first node back must not take the others for lost at once (it would end the calls in
progress of nodes that are only slower to reconnect). It beats at once, waits until
every live node had the time to reconnect and beat, and only then ends the calls of a
node that stayed silent.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from sipxcc.calls.redis_store import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    RECONNECT_MAX_DELAY,
    RedisCallStore,
)
from sipxcc.calls.registry import CallRegistry


class FakeRedis:
    """Answers at once, keeps heartbeats with their expiry on C{clock}, and records the
    sweeps of lost or restarted nodes (C{swept}: (node, reason))."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.up = True
        self.on_state = None
        self.beats: dict[str, float] = {}  # node -> when its heartbeat expires
        self.beat_times: dict[str, list[float]] = {}
        self.swept: list[tuple[str, str]] = []

    def beat(self, node: str) -> None:
        self.beats[node] = self.clock.seconds() + HEARTBEAT_TTL
        self.beat_times.setdefault(node, []).append(self.clock.seconds())

    def execute(self, command, *args):
        assert self.up, "a command while Redis is down"
        if command == "SET" and args[0].startswith("sipxcc:node:"):
            self.beat(args[0][len("sipxcc:node:"):])
        elif command == "SMEMBERS":
            return defer.succeed([node.encode() for node in sorted(self.beats)])
        elif command == "EXISTS":
            node = args[0][len("sipxcc:node:"):]
            return defer.succeed(int(self.beats.get(node, 0) > self.clock.seconds()))
        elif command == "EVAL":
            node, reason = args[-2:]
            self.swept.append((node, reason))
            if reason != "restart":  # as the script does: no longer one of the nodes
                self.beats.pop(node, None)
            return defer.succeed(0)
        return defer.succeed(1)

    def pipeline(self, commands):
        return defer.gatherResults([self.execute(*command) for command in commands])

    def set_up(self, up: bool) -> None:
        self.up = up
        self.on_state(up)


def run(clock: Clock, seconds: float, *, b_beats: bool, redis: FakeRedis) -> None:
    """Let C{seconds} pass a second at a time; node b beats every interval if alive."""
    for _ in range(int(seconds)):
        clock.advance(1.0)
        if b_beats and redis.up and clock.seconds() % HEARTBEAT_INTERVAL == 0:
            redis.beat("b")


def test_a_node_back_on_redis_beats_at_once_and_gives_the_others_time_to_beat():
    clock = Clock()
    redis = FakeRedis(clock)
    store = RedisCallStore(clock, CallRegistry(clock, {}), redis, "a", max_calls=10,
                           max_calls_per_agent=5)
    redis.set_up(True)
    redis.beat("b")
    store.start()
    assert redis.swept == [("a", "restart")] and store.ready
    run(clock, 30, b_beats=True, redis=redis)
    assert redis.swept == [("a", "restart")]  # b beats: alive

    redis.set_up(False)  # an outage longer than the heartbeats' lifetime
    run(clock, 20, b_beats=False, redis=redis)
    back = clock.seconds()
    redis.set_up(True)
    assert redis.beat_times["a"][-1] == back  # at once, not at its next beat
    # b is slower to reconnect: its heartbeat expired long ago, yet it is not taken for
    # lost while it may still be reconnecting ...
    run(clock, RECONNECT_MAX_DELAY, b_beats=False, redis=redis)
    assert redis.swept == [("a", "restart")]
    # ... and once back it beats again: alive
    run(clock, HEARTBEAT_TTL + 10, b_beats=True, redis=redis)
    assert redis.swept == [("a", "restart")]

    # b stops for good: lost within its heartbeat's lifetime and a beat
    run(clock, HEARTBEAT_TTL + HEARTBEAT_INTERVAL, b_beats=False, redis=redis)
    assert redis.swept == [("a", "restart"), ("b", "node lost")]
    store.close()


def test_a_node_that_does_not_come_back_after_the_outage_is_lost():
    clock = Clock()
    redis = FakeRedis(clock)
    store = RedisCallStore(clock, CallRegistry(clock, {}), redis, "a", max_calls=10,
                           max_calls_per_agent=5)
    redis.set_up(True)
    store.start()
    redis.beat("b")
    redis.set_up(False)
    run(clock, 20, b_beats=False, redis=redis)
    redis.set_up(True)
    run(clock, HEARTBEAT_TTL + RECONNECT_MAX_DELAY + HEARTBEAT_INTERVAL, b_beats=False,
        redis=redis)
    assert redis.swept == [("a", "restart"), ("b", "node lost")]
    store.close()
