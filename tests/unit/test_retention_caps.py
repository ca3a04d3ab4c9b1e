"""Retained calls are bounded: in all, per owner, and in time (calls.max_* keys)."""

from __future__ import annotations

import gc

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.registry import CallRegistry
from sipxcc.timers import SLACK
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", (), None, None, None)
USER3 = User("user3@sipx.test", "user3", (), None, None, None)


class EndsWhenTold:
    """A flow that ends when its test says so (or when hung up)."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        self.call.set_state("ringing")

    def hangup(self, why):
        self.end()

    def end(self, state="failed"):
        self.call.finish(state)
        self.on_end(self.call)


def make(**caps):
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": EndsWhenTold, "INVITE": EndsWhenTold},
                            max_calls=1000, max_calls_per_agent=1000, **caps)
    return clock, registry


def finished(registry, agent=USER1, n=0, **kw):
    call = registry.place(CallRequest(agent, "user1@sipx.test", f"t{n}@sipx.test", **kw))
    call.flow.end()
    return call


def visible(registry, call) -> bool:
    """What a user checks: the call is found by id, by key, and in the owner's listing."""
    by_id = registry.get(call.id) is call
    assert by_id == (registry.lookup(call.key) is call)
    assert by_id == (call in registry.calls_of(call.owner, 10_000))
    return by_id


@pytest.fixture
def warnings():
    seen: list[dict] = []

    def observe(event):
        if event.get("log_namespace") == "sipxcc.calls.registry":
            seen.append(event)
    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def test_exactly_at_the_per_owner_cap_every_call_is_kept_one_more_forgets_the_oldest(warnings):
    clock, registry = make(max_retained_per_owner=3)
    others = [finished(registry, USER3, n) for n in range(3)]
    mine = [finished(registry, USER1, n) for n in range(3)]
    assert all(visible(registry, call) for call in mine + others)
    assert registry.evicted == 0 and not warnings

    newest = finished(registry, USER1, 3)
    assert not visible(registry, mine[0])
    assert all(visible(registry, call) for call in mine[1:] + [newest] + others)
    assert registry.calls_of(USER1.identity, 10) == [newest, mine[2], mine[1]]
    assert registry.evicted == 1 and registry.retained_count == 6
    assert len(warnings) == 1
    assert "max_retained_per_owner = 3" in warnings[0]["log_format"].format(**warnings[0])
    registry.clear()


def test_calls_in_progress_neither_count_nor_are_forgotten():
    clock, registry = make(max_retained_per_owner=2)
    ringing = registry.place(CallRequest(USER1, "user1@sipx.test", "ringing@sipx.test"))
    done = [finished(registry, USER1, n) for n in range(3)]
    assert visible(registry, ringing) and not ringing.ended
    assert not visible(registry, done[0])
    assert visible(registry, done[1]) and visible(registry, done[2])
    ringing.flow.end()  # placed first, but it finished last: the others go first
    assert not visible(registry, done[1])
    assert visible(registry, done[2]) and visible(registry, ringing)
    assert registry.calls_of(USER1.identity, 10) == [done[2], ringing]  # newest placed first
    registry.clear()


def test_the_global_cap_forgets_the_call_that_finished_first():
    clock, registry = make(max_retained=3)
    a = registry.place(CallRequest(USER1, "user1@sipx.test", "a@sipx.test"))
    b = registry.place(CallRequest(USER3, "user1@sipx.test", "b@sipx.test"))
    b.flow.end()
    a.flow.end()  # placed first, finished second
    c = finished(registry, USER1, 1)
    assert all(visible(registry, call) for call in (a, b, c))
    d = finished(registry, USER3, 2)
    assert not visible(registry, b)
    assert all(visible(registry, call) for call in (a, c, d))
    assert registry.retained_count == 3 and registry.evicted == 1
    registry.clear()


def test_a_result_cache_time_above_the_configured_cap_is_lowered_to_it():
    clock, registry = make(max_result_cache_time=60)
    call = finished(registry, result_cache_time=86400)
    short = finished(registry, n=1, result_cache_time=30)
    clock.advance(30 + SLACK)
    assert not visible(registry, short)
    clock.advance(59 - 30 - SLACK)
    assert visible(registry, call)
    clock.advance(1 + SLACK)  # 60 s (+ the wake-up's slack), not a day
    assert not visible(registry, call)
    assert registry.retained_count == 0 and not registry.owners


def test_forgotten_calls_leave_nothing_behind_and_timers_end():
    clock, registry = make(max_retained=50, max_retained_per_owner=10)
    for n in range(200):
        finished(registry, (USER1, USER3)[n % 2], n, result_cache_time=10 + n % 7)
    assert registry.retained_count == 20 and registry.evicted == 180
    assert sum(r.chain.size for r in registry.retention.values()) == 20
    assert {owner: len(registry.calls_of(owner, 100)) for owner in registry.owners} == {
        USER1.identity: 10, USER3.identity: 10}
    clock.advance(20)
    assert registry.retained_count == 0 and not registry.by_id and not registry.owners
    assert sum(r.chain.size for r in registry.retention.values()) == 0
    for _ in range(5):  # watchdog wake-ups, the last eviction summaries, then nothing
        clock.advance(60)
    assert not clock.getDelayedCalls()


def test_evictions_are_summarised_once_per_interval_not_logged_per_call(warnings):
    clock, registry = make(max_retained_per_owner=1, eviction_log_interval=60)
    for n in range(100):
        finished(registry, USER1, n)
    assert len(warnings) == 1  # the first one, at once
    clock.advance(60)
    assert len(warnings) == 2
    summary = warnings[1]["log_format"].format(**warnings[1])
    assert "forgot 98 finished calls early" in summary and "user1@sipx.test 98" in summary
    clock.advance(60)  # nothing new: no line, and the summary timer stops
    assert len(warnings) == 2
    assert not any(c.func == registry._log_evictions for c in clock.getDelayedCalls())
    finished(registry, USER1, 100)
    assert len(warnings) == 3  # a new burst is reported at once again
    registry.clear()
    assert not any(c.func == registry._log_evictions for c in clock.getDelayedCalls())


def test_listing_one_owners_calls_does_not_walk_everyone_elses():
    clock, registry = make()
    for n in range(500):
        finished(registry, USER3, n)
    mine = finished(registry, USER1, 0)
    for n in range(500, 1000):
        finished(registry, USER3, n)

    class NotToBeWalked(dict):
        def values(self):
            raise AssertionError("listing one owner's calls walked every call")
    registry.by_id = NotToBeWalked(registry.by_id)
    assert registry.calls_of(USER1.identity, 50) == [mine]
    assert registry.calls_of("nobody@sipx.test", 50) == []
    registry.clear()


def test_memory_holds_only_the_retained_calls_whatever_the_flood():
    clock, registry = make(max_retained=15, max_retained_per_owner=10)
    flooders = [User(f"flood{n}@bounds.test", f"flood{n}", (), None, None, None)
                for n in range(2)]
    for n in range(1000):
        finished(registry, flooders[n % 3 > 0], n, result_cache_time=86400)
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is Call and o.owner.endswith("bounds.test")]
    assert len(alive) == registry.retained_count == 15
    registry.clear()
