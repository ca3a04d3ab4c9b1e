"""Status webhooks: in order, retried with back-off, bounded, never blocking the call."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.callbacks import BACKOFF, StatusCallbacks
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", (), None, None, None)


class FakePoster:
    def __init__(self):
        self.pending: list[tuple[str, dict, defer.Deferred]] = []

    def __call__(self, url, body, headers=None):
        d = defer.Deferred()
        self.pending.append((url, json.loads(body), d))
        return d


def make(url="https://crm.example/hook"):
    clock, post = Clock(), FakePoster()
    callbacks = StatusCallbacks(clock, post)
    call = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test",
                            status_callback=url), 0)
    callbacks.attach(call)
    return clock, post, callbacks, call


def test_events_are_posted_one_at_a_time_in_order():
    clock, post, callbacks, call = make()
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1001, "cid", "INVITE", "SIP/2.0 200 OK")
    call.finish("ended")
    assert len(post.pending) == 1  # the next waits for the previous to be delivered
    url, doc, d = post.pending.pop(0)
    assert url == "https://crm.example/hook"
    assert (doc["id"], doc["status-line"], doc["timestamp"]) == (call.id, "SIP/2.0 180 Ringing",
                                                                 1000)
    d.callback(200)
    _, doc, d = post.pending.pop(0)
    assert doc["status-line"] == "SIP/2.0 200 OK"
    d.callback(204)
    _, doc, d = post.pending.pop(0)
    assert doc["ended"] is True and doc["state"] == "ended"
    d.callback(200)
    assert callbacks.delivered == 3 and not post.pending


def test_failures_are_retried_with_backoff_then_given_up():
    clock, post, callbacks, call = make()
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1001, "cid", "INVITE", "SIP/2.0 200 OK")
    for delay in BACKOFF:
        post.pending.pop(0)[2].callback(500)
        assert not post.pending
        clock.advance(delay)
        assert len(post.pending) == 1 and post.pending[0][1]["status-line"].endswith("Ringing")
    post.pending.pop(0)[2].errback(ConnectionError("refused"))
    assert callbacks.dropped == 1
    assert post.pending[0][1]["status-line"] == "SIP/2.0 200 OK"  # the next one goes on


def test_calls_without_a_callback_post_nothing():
    clock, post, callbacks, call = make(url=None)
    call.record(1000, "cid", "INVITE", "SIP/2.0 180 Ringing")
    assert not post.pending
