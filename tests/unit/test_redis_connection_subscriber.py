"""The Redis subscriber without a server: only published messages reach the handler (an
idle poll or a reply of another kind neither stops it nor is handed over); messages beyond
the bound are dropped and the operator is warned on the first drop and every 1000th, not on
each; stopping ends its thread within a poll, cancels a pending re-subscription, and a
connection breaking after the stop is not subscribed again."""

from __future__ import annotations

import re
import threading

import pytest
import redis

from sipxcc.calls import redis_client
from sipxcc.calls.redis_client import RedisSubscription
from tests.unit.redisfakes import (
    URL,
    FakeReactor,
    FakeSource,
    Held,
    Log,
    ThreadedReactor,
    outcomes,
    subscription,
)

CHANNEL = b"sipxcc:cmd:a"


@pytest.fixture
def log():
    with Log.capture() as made:
        yield made


def message(data: bytes) -> dict:
    return {"type": "message", "pattern": None, "channel": CHANNEL, "data": data}


def test_only_published_messages_reach_the_handler_and_an_idle_poll_keeps_the_subscription(log):  # noqa: E501
    reactor, source = FakeReactor(), FakeSource()
    source.messages = [None, {"type": "pong", "pattern": None, "channel": None, "data": b""},
                       message(b"one"), None, message(b"two")]
    sub, got = subscription(reactor, source)
    sub.start()
    reactor.run_handed_over()
    assert got == [(CHANNEL, b"one"), (CHANNEL, b"two")]
    assert len(source.subscriptions) == 1 and reactor.getDelayedCalls() == []
    sub.stop()
    assert log.failures() == [] and log.warnings() == []


def test_drops_beyond_the_bound_are_counted_and_warned_of_on_the_first_and_every_1000th(log):  # noqa: E501
    reactor, source = FakeReactor(), FakeSource()
    source.messages = [message(b"%d" % n) for n in range(2003)]
    sub, got = subscription(reactor, source, max_queued=3)
    sub.start()
    assert (sub.queued, sub.dropped) == (3, 2000)
    reactor.run_handed_over()
    assert got == [(CHANNEL, b"0"), (CHANNEL, b"1"), (CHANNEL, b"2")] and sub.queued == 0
    warnings = log.warnings()
    # each warning names the bound and the count dropped so far
    assert [re.findall(r"\d+", w) for w in warnings] == [["3", "1"], ["3", "1000"],
                                                         ["3", "2000"]]
    assert log.failures() == []


def test_stopped_while_waiting_to_subscribe_again_it_does_not(log):
    reactor, source = FakeReactor(), FakeSource()
    source.broken = True
    sub, _ = subscription(reactor, source)
    sub.start()
    assert len(source.subscriptions) == 1 and reactor.getDelayedCalls() != []
    assert outcomes([sub.stop()]) == [None]
    assert reactor.getDelayedCalls() == []
    reactor.advance(60)
    assert len(source.subscriptions) == 1


def test_a_subscription_breaking_after_the_stop_is_not_made_again():
    reactor, source, held = FakeReactor(), FakeSource(), Held()
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",), lambda *_: None, client=source,
                            run=held)
    sub.start()
    sub.stop()
    f, args, d = held.jobs.pop()
    d.errback(redis.ConnectionError("Connection reset by peer"))  # it was listening
    assert reactor.getDelayedCalls() == []
    reactor.advance(60)
    assert held.jobs == []  # not subscribed again


class Blocking(FakeSource):
    """Its get_message returns None after C{timeout} seconds (here at once) and, given no
    timeout, waits for a message as redis-py's does: until C{wake} is set."""

    def __init__(self):
        super().__init__()
        self.wake, self.polling = threading.Event(), threading.Event()

    def pubsub(self, ignore_subscribe_messages=False):
        source = self

        class PubSub:
            def subscribe(self, *channels):
                source.subscriptions.append(channels)

            def get_message(self, timeout=0.0):
                source.polling.set()
                source.wake.wait(None if timeout is None else min(timeout, 0.005))
                return None

            def close(self):
                pass
        return PubSub()


def test_the_subscribers_thread_ends_within_a_poll_once_stopped_without_closing_errors(log):  # noqa: E501
    reactor, source = ThreadedReactor(), Blocking()
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",), lambda *_: None, client=source)
    try:
        sub.start()
        assert source.polling.wait(10)  # subscribed and polling
        stopped = outcomes([sub.stop()])
        reactor.run_until(lambda: stopped, timeout=5)
        assert stopped == [None] and not any(t.is_alive() for t in sub._pool.threads)
        assert log.warnings() == [] and log.failures() == []
    finally:
        source.wake.set()


def test_on_its_own_thread_a_broken_subscription_is_made_again_after_the_back_off_delay():
    reactor, source = ThreadedReactor(), FakeSource()
    source.broken = True
    source.stop_when_drained = threading.Event()  # (the fake's get_message sets it)
    sub = RedisSubscription(reactor, URL, ("sipxcc:cmd:a",), lambda *_: None, client=source)
    sub.start()
    reactor.run_until(lambda: reactor.getDelayedCalls())  # refused: the next attempt waits
    assert len(source.subscriptions) == 1
    source.broken = False
    reactor.advance(redis_client.INITIAL_DELAY)
    reactor.run_until(lambda: len(source.subscriptions) == 2)
    stopped = outcomes([sub.stop()])
    reactor.run_until(lambda: stopped)
    assert stopped == [None] and not any(t.is_alive() for t in sub._pool.threads)
