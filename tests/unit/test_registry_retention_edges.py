"""How long a finished call stays queryable, at the edges: one wake-up forgets every call due
by then (one due at that very instant too), the retention timer comes back for calls that
finish after the others expired, and clear() (shutdown) leaves no timer whatever state the
calls are in."""

from __future__ import annotations

from sipxcc.timers import SLACK
from tests.unit.test_registry import make, req

CACHE = 180  # a request's result_cache_time by default


def finished(registry, **kw):
    call = registry.place(req(**kw))
    call.flow.end()
    return call


def test_one_wake_up_forgets_a_call_due_at_that_very_instant():
    clock, registry = make()
    first = finished(registry, called="user2@sipx.test")
    clock.advance(SLACK)
    second = finished(registry, called="user4@sipx.test")  # due when first's wake-up runs
    clock.advance(CACHE - 0.01)
    assert registry.get(first.id) is first and registry.get(second.id) is second
    clock.advance(0.01)
    assert registry.get(first.id) is None and registry.get(second.id) is None


def test_a_call_finished_after_the_others_expired_expires_too():
    clock, registry = make()
    first = finished(registry)
    clock.advance(CACHE + SLACK)
    assert registry.get(first.id) is None
    second = finished(registry, called="user4@sipx.test")
    clock.advance(CACHE + SLACK)
    assert registry.get(second.id) is None


def test_clear_stops_the_pending_retention_wake_up():
    clock, registry = make()
    call = registry.place(req())
    watchdogs = set(clock.getDelayedCalls())  # the watchdogs' queue keeps its own timer
    call.flow.end()
    registry.clear()
    assert set(clock.getDelayedCalls()) <= watchdogs


def test_clear_after_every_retained_call_expired_is_quiet():
    clock, registry = make()
    call = finished(registry)
    clock.advance(CACHE + SLACK)
    watchdogs = set(clock.getDelayedCalls())
    registry.clear()
    assert set(clock.getDelayedCalls()) <= watchdogs and registry.get(call.id) is None


def test_clear_with_a_connected_invite_call_past_its_watchdog():
    clock, registry = make()
    call = registry.place(req(method="INVITE"))
    call.set_state("connected")
    clock.advance(2 * 180 + 62 + 1)  # the watchdog lets a connected INVITE-mode call go on
    assert not call.ended and call.expiry is None
    registry.clear()
    assert not call.ended
