"""The webhook queue's bound counted exactly, given-up events counted each, the call id a
client gets, and the Retry-After a refusal carries."""

from __future__ import annotations

from sipxcc.calls.callbacks import BACKOFF, MAX_QUEUED
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls
from tests.unit.test_callbacks import make


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
    assert AgentLimit("busy", retry_after=7).retry_after == 7
    assert AgentLimit("busy").retry_after == 5
    assert TooManyCalls("full").retry_after == 5
    assert CallInProgress("again").retry_after is None
    assert (AgentLimit.code, TooManyCalls.code, CallInProgress.code) == (429, 503, 409)
