"""The webhook queue's bound counted exactly, given-up events counted each, the call id a
client gets, and the Retry-After a refusal carries."""

from __future__ import annotations

import pytest

from sipxcc.calls import callbacks as callbacks_module
from sipxcc.calls.call import MAX_EVENTS
from sipxcc.calls.callbacks import BACKOFF
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls
from sipxcc.web.errors import CALL_ERRORS, LIMIT_RETRY_AFTER
from tests.unit.test_callbacks import make

#: a queue bound one call can reach: a call keeps at most MAX_EVENTS provisional lines
MAX_QUEUED = MAX_EVENTS // 2


@pytest.fixture(autouse=True)
def reachable_bound(monkeypatch):
    monkeypatch.setattr(callbacks_module, "MAX_QUEUED", MAX_QUEUED)


def test_the_queue_keeps_the_newest_max_queued_events_and_counts_each_dropped():
    clock, post, callbacks, call = make()
    call.record(0, "cid", "INVITE", "SIP/2.0 100 Trying")  # in flight, not queued
    for n in range(MAX_QUEUED + 2):
        call.record(n + 1, "cid", "INVITE", f"SIP/2.0 180 Ringing {n}")
    assert callbacks.dropped == 2
    post.pending.pop(0)[2].callback(200)
    _, doc, _ = post.pending.pop(0)
    assert doc["status-line"] == "SIP/2.0 180 Ringing 2"  # the two oldest queued were dropped


def test_a_queue_at_its_bound_minus_one_drops_nothing():
    clock, post, callbacks, call = make()
    call.record(0, "cid", "INVITE", "SIP/2.0 100 Trying")
    for n in range(MAX_QUEUED):
        call.record(n + 1, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert callbacks.dropped == 0


def test_every_event_given_up_is_counted():
    clock, post, callbacks, call = make()
    call.record(0, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1, "cid", "INVITE", "SIP/2.0 200 OK")
    for _ in range(2):
        for delay in BACKOFF:
            post.pending.pop(0)[2].callback(503)
            clock.advance(delay)
        post.pending.pop(0)[2].callback(503)
    assert (callbacks.dropped, callbacks.delivered) == (2, 0)


def test_a_call_id_is_16_url_safe_characters():
    clock, post, callbacks, call = make()
    assert len(call.id) == 16
    assert set(call.id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_refusals_carry_their_retry_after():
    # the call layer's refusals are answered with their HTTP status and Retry-After in one
    # place, the web layer's table
    assert LIMIT_RETRY_AFTER == 5
    assert CALL_ERRORS[AgentLimit] == (429, 5)
    assert CALL_ERRORS[TooManyCalls] == (503, 5)
    assert CALL_ERRORS[CallInProgress] == (409, None)
