"""
Event streams: the exact answers a client or proxy acts on (the refusals at each cap with
their text and Retry-After, the headers that keep a proxy from buffering, the heartbeat
comment, the 404s).
"""

from __future__ import annotations

import pytest

from tests.unit.test_live_events import LINES, Harness, play
from tests.unit.test_web_auth import error_code
from tests.unit.webfakes import basic


def test_the_caps_are_refused_with_their_text_and_a_retry_after():
    web = Harness()
    web.streams.max_per_user = 1
    web.streams.max_streams = 2
    assert web.stream("/events", basic("user1")).responseCode == 200
    per_user = web.stream("/events", basic("user1"))
    assert error_code(per_user) == (429, 429, "Too many event streams for this user")
    assert per_user.header(b"retry-after") == b"5"
    assert web.stream("/events", basic("user2")).responseCode == 200
    total = web.stream("/events", basic("user3"))
    assert error_code(total) == (503, 503, "Too many event streams")
    assert total.header(b"retry-after") == b"5"


def test_a_stream_is_never_cached_nor_buffered_and_idles_with_a_comment():
    web = Harness()
    request = web.stream("/events", basic("user1"))
    assert request.header(b"content-type") == b"text/event-stream; charset=utf-8"
    assert request.header(b"cache-control") == b"no-store"
    assert request.header(b"x-accel-buffering") == b"no"
    before = request.body
    web.clock.advance(15)
    assert request.body == before + b": keep-alive\n\n"


def test_paths_that_are_no_stream_are_404():
    web = Harness()
    assert web.stream("/events/", basic("user1")).responseCode == 200  # "/events" + ""
    assert error_code(web.stream("/events/extra", basic("user1"))) == (404, 404, "Not found")
    assert error_code(web.stream("/calls/no-such-call/events", basic("user1"))) == (
        404, 404, "Call not found.")


def test_a_call_id_that_is_not_utf8_is_named():
    web = Harness()
    assert error_code(web.stream("/calls/%ff/events", basic("user1"))) == (
        400, 400, "Bad parameter id: not UTF-8")


@pytest.mark.parametrize(("last", "replayed"), [
    (b"-5", ["1", "2"]),                # below the first event: everything
    (b"1a", ["1", "2"]),                # not a decimal number: unreadable, start over
    (b"garbage", ["1", "2"]),
    ("\u00e9".encode("utf-8"), ["1", "2"]),  # not ASCII: unreadable
    (b"0" * 199 + b"1", ["2"]),         # 200 bytes, the bound itself: read
])
def test_what_a_last_event_id_resumes_after(last, replayed):
    web = Harness()
    web.request(b"POST", "/callcontroller/user1/user2", headers=basic("user1"))
    call = web.registry.calls[0]
    play(call, LINES[:2])
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": last})
    assert [i for i, _, _ in request.events()] == replayed


def lose(request) -> None:
    """The client went away."""
    request.processingFailed = None
    for d in request._finishedDeferreds:
        d.errback(Exception("connection lost"))
    request._finishedDeferreds = []


def test_a_user_closing_one_of_its_streams_frees_exactly_one_place():
    web = Harness()
    web.streams.max_per_user = 2
    first, _ = (web.stream("/events", basic("user1")) for _ in range(2))
    lose(first)
    assert web.stream("/events", basic("user1")).responseCode == 200
    assert web.stream("/events", basic("user1")).responseCode == 429
    for request in list(web.streams.streams):
        lose(request.request)
    assert web.streams.per_user == {}  # nothing left of the user once all are closed
