"""
Event streams at their edges: the exact bytes of an event, the kinds a stream opened in
the middle of a call names, a resume across calls and at its bound, the slow-reader budget
from both sides, how a cut or lost connection is closed, and the caps taken from the
configuration.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.web.resource import getChildForRequest

from sipxcc.calls.call import MAX_EVENTS, MAX_FINAL_EVENTS, CallRequest
from sipxcc.web.stream import MAX_RESUME_CALLS, install_streams
from tests.unit.test_live_events import (
    CALL_ID,
    LINES,
    Harness,
    HubRegistry,
    StreamRequest,
    play,
)
from tests.unit.webfakes import basic, stored_form

TRUSTED = "127.0.0.1"
USER1 = "user1@sipx.test"


def harness_with_call() -> tuple[Harness, object]:
    web = Harness()
    web.request(b"POST", "/callcontroller/user1/user2", headers=basic("user1"))
    return web, web.registry.calls[0]


def kinds(request) -> list[tuple[str, str]]:
    return [(event_id, kind) for event_id, kind, _ in request.events()]


class Transport:
    """A connection's transport that records how it was closed."""

    def __init__(self):
        self.closed: list[str] = []

    def loseConnection(self):
        self.closed.append("lose")


class AbortableTransport(Transport):
    def abortConnection(self):
        self.closed.append("abort")


class FillingRequest(StreamRequest):
    """A request whose transport buffer fills after C{room} bytes: like a TCP transport,
    it then asks its producer to pause, at once, from inside write()."""

    room = 2000

    def write(self, data):
        super().write(data)
        if len(self.body) > self.room and self.producer is not None:
            self.producer.pauseProducing()


def open_stream(web, uri, headers=None, client="192.0.2.10", cls=StreamRequest,
                transport=None):
    request = cls(b"GET", uri.encode(), client=client, headers=headers)
    if transport is not None:
        request.channel.transport = transport
    request.prepath = []
    request.render(getChildForRequest(web.root, request))
    return request


# --- what goes on the wire -------------------------------------------------------------------

def test_an_event_is_exact_bytes_with_its_text_in_utf8():
    web, call = harness_with_call()
    request = web.stream(f"/calls/{call.id}/events", basic("user1"))
    before = request.body
    line = "SIP/2.0 180 Sonnerie \u00e0 l'\u00e9coute"
    call.record(1_700_000_000_000, "c1@192.0.2.4", "INVITE", line)
    assert request.body[len(before):] == (
        f'id: 1\nevent: ringing\ndata: {{"call": "{call.id}", "seq": 1, "event": "ringing", '
        f'"timestamp": 1700000000000, "call-id": "c1@192.0.2.4", "method": "INVITE", '
        f'"status-line": "{line}"}}\n\n').encode()


def test_a_replayed_event_carries_the_same_data_as_the_live_one():
    web, call = harness_with_call()
    play(call, LINES[:1])
    request = web.stream(f"/calls/{call.id}/events", basic("user1"))
    assert request.events() == [("1", "initiated", {
        "call": call.id, "seq": 1, "event": "initiated", "timestamp": 1_700_000_000_000,
        "call-id": "a84b4c76e66710@192.0.2.4", "method": "INVITE",
        "status-line": "SIP/2.0 100 Trying"})]


def test_a_failed_calls_live_end_is_named_failed():
    web, call = harness_with_call()
    request = web.stream(f"/calls/{call.id}/events", basic("user1"))
    play(call, LINES[:2])
    call.finish("failed")
    last = request.events()[-1]
    assert last == ("3", "failed", {"call": call.id, "seq": 3, "event": "failed",
                                    "state": "failed"})
    assert request.finished


# --- kinds on a stream opened in the middle of a call ---------------------------------------

def test_a_stream_opened_mid_call_names_the_next_steps_as_one_open_from_the_start():
    web, call = harness_with_call()
    steps = [("INVITE", "SIP/2.0 100 Trying"), ("INVITE", "SIP/2.0 180 Ringing"),
             ("INVITE", "SIP/2.0 183 Session Progress"), ("INVITE", "SIP/2.0 200 OK")]
    play(call, steps[:1])
    after_trying = web.stream("/events", basic("user1"))
    call.record(1_700_000_000_001, CALL_ID, *steps[1])
    after_ringing = web.stream("/events", basic("user1"))
    call.record(1_700_000_000_002, CALL_ID, *steps[2])
    call.record(1_700_000_000_003, CALL_ID, *steps[3])
    assert kinds(after_trying) == [(f"{call.id}:2", "ringing"), (f"{call.id}:3", "sip"),
                                   (f"{call.id}:4", "answered")]
    assert kinds(after_ringing) == [(f"{call.id}:3", "sip"), (f"{call.id}:4", "answered")]


def test_a_final_line_past_the_bound_that_replaces_the_last_is_named_as_it_comes():
    web, call = harness_with_call()
    request = web.stream(f"/calls/{call.id}/events", basic("user1"))
    play(call, [("INVITE", "SIP/2.0 180 Ringing")] * MAX_EVENTS
         + [("INVITE", "SIP/2.0 200 OK")] * MAX_FINAL_EVENTS)
    # beyond, each final line replaces the last retained one
    call.record(1_700_000_001_000, CALL_ID, "INVITE", "SIP/2.0 486 Busy Here")
    assert kinds(request)[-1] == (str(MAX_EVENTS + MAX_FINAL_EVENTS + 1), "failed")


# --- resume ------------------------------------------------------------------------------------

def test_a_resume_on_all_events_sends_every_event_of_the_calls_placed_after():
    web, first = harness_with_call()
    web.request(b"POST", "/callcontroller/user1/user4", headers=basic("user1"))
    second = web.registry.calls[1]
    play(first, LINES[:2])
    play(second, LINES[:2])
    request = web.stream("/events", {**basic("user1"),
                                     b"Last-Event-ID": f"{first.id}:1".encode()})
    assert [i for i, _ in kinds(request)] == [f"{first.id}:2", f"{second.id}:1",
                                              f"{second.id}:2"]


@pytest.mark.parametrize(("last", "replayed"), [(b"6", ["7"]), (b"7", [])])
def test_a_finished_calls_end_is_replayed_only_after_an_earlier_event(last, replayed):
    web, call = harness_with_call()
    play(call)
    call.finish("completed")
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": last})
    assert [i for i, _ in kinds(request)] == replayed
    assert request.finished and len(web.streams) == 0


def test_a_stored_call_whose_count_lags_its_lines_ends_after_its_last_line():
    # the record's seq is written once per reactor turn and may be dropped while Redis is
    # down; the status lines are the truth
    web = Harness()
    other = HubRegistry()
    other.place(CallRequest(web.directory.lookup("user1"), USER1, "user4@sipx.test"))
    call = other.calls[0]
    play(call)
    call.finish("completed")
    stored = stored_form(call)._replace(seq=3)
    web.call_store.get = lambda call_id: defer.succeed(stored if call_id == call.id else None)
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"6"})
    assert kinds(request) == [("7", "completed")]


def test_a_resume_looks_through_the_newest_max_resume_calls_only():
    web = Harness()
    # calls as the registry lists them: placed oldest first, each with one status line
    trying = SimpleNamespace(timestamp=1, call_id="x@192.0.2.4", method="INVITE",
                             status_line="SIP/2.0 100 Trying")
    for n in range(MAX_RESUME_CALLS + 1):
        web.registry.calls.append(SimpleNamespace(
            id=f"call{n}", owner=USER1, ended=False, state="initiated",
            events=[trying] if n < 2 else []))
    too_old = web.stream("/events", {**basic("user1"), b"Last-Event-ID": b"call0:0"})
    oldest_seen = web.stream("/events", {**basic("user1"), b"Last-Event-ID": b"call1:0"})
    assert too_old.events() == []  # not found: the stream starts over, with live events
    assert [i for i, _ in kinds(oldest_seen)] == ["call1:1"]


# --- a slow reader: the budget from both sides -------------------------------------------------

@pytest.mark.parametrize("caught_up_before", [False, True])
def test_a_paused_reader_is_kept_at_exactly_its_budget_and_dropped_one_event_beyond(
        caught_up_before):
    web, call = harness_with_call()
    slow = web.stream("/events", basic("user1"))
    fast = web.stream("/events", client=TRUSTED)
    line = [("INVITE", "SIP/2.0 180 Ringing")]
    play(call, line * 2)
    size = len(fast.body.split(b"\n\n")[-2]) + 2  # one event of this call (ids 1-9)
    if caught_up_before:  # it fell behind once and caught up: its whole budget is back
        slow.producer.pauseProducing()
        slow.producer.resumeProducing()
    web.streams.max_backlog = 3 * size
    slow.producer.pauseProducing()
    play(call, line * 3)
    assert slow.channel.transport.aborted is False
    play(call, line)
    assert slow.channel.transport.aborted is True
    assert len(fast.events()) == 6


def test_a_reader_that_resumed_is_not_counted_any_more():
    web, call = harness_with_call()
    slow = web.stream("/events", basic("user1"))
    slow.producer.pauseProducing()
    play(call, LINES[:1])  # queued against the default budget
    slow.producer.resumeProducing()
    web.streams.max_backlog = 1000
    play(call, [("INVITE", "SIP/2.0 180 Ringing " + "x" * 400)] * 5)
    assert not slow.channel.transport.aborted and len(slow.events()) == 6


@pytest.mark.parametrize(("transport", "closed"), [
    (AbortableTransport, ["abort"]),   # TCP and TLS: cut at once, nothing more flushed
    (Transport, ["lose"]),             # a transport that cannot abort: closed
])
def test_a_dropped_reader_is_cut_not_ended_as_if_complete(transport, closed):
    web, call = harness_with_call()
    web.streams.max_backlog = 100
    slow = web.stream("/events", basic("user1"))
    slow.channel.transport = transport()
    slow.producer.pauseProducing()
    play(call, LINES[:2])
    assert slow.channel.transport.closed == closed
    assert slow.finished == 0  # no last chunk: the client sees a broken stream
    assert len(web.streams) == 0 and web.streams.per_user == {}


def test_a_dropped_reader_without_a_connection_any_more_is_only_forgotten():
    web, call = harness_with_call()
    web.streams.max_backlog = 100
    slow = web.stream("/events", basic("user1"))
    slow.channel = None
    slow.producer.pauseProducing()
    play(call, LINES[:2])
    assert len(web.streams) == 0 and slow.finished == 0


def test_a_reader_whose_buffer_fills_during_a_resume_is_cut_once_and_sent_nothing_more():
    web = Harness()
    for _ in range(3):
        web.request(b"POST", "/callcontroller/user1/user2", headers=basic("user1"))
    first, *later = web.registry.calls
    for call in web.registry.calls:
        play(call, [("INVITE", "SIP/2.0 180 Ringing " + "x" * 400)] * 20)
    web.streams.max_backlog = 1000
    request = open_stream(web, "/events", {**basic("user1"),
                                           b"Last-Event-ID": f"{first.id}:0".encode()},
                          cls=FillingRequest, transport=AbortableTransport())
    assert request.channel.transport.closed == ["abort"]
    assert later[-1].id not in request.body.decode()
    assert len(web.streams) == 0


# --- a connection that goes away --------------------------------------------------------------

def lose(request) -> None:
    """The client went away: Twisted fails the request's notifyFinish Deferreds."""
    request.processingFailed = None
    for d in request._finishedDeferreds:
        d.errback(Exception("connection lost"))
    request._finishedDeferreds = []


def test_a_lost_connection_frees_its_place_and_its_request_is_not_finished():
    # (twisted.web refuses finish() on a request whose connection was lost)
    web, _ = harness_with_call()
    web.streams.max_per_user = 1
    request = web.stream("/events", basic("user1"))
    lose(request)
    assert request.finished == 0
    assert web.stream("/events", basic("user1")).responseCode == 200


def test_a_transport_stopping_its_producer_closes_the_stream_without_finishing_it():
    web, call = harness_with_call()
    request = web.stream("/events", basic("user1"))
    request.producer.stopProducing()  # the connection is gone
    play(call, LINES[:1])
    assert request.finished == 0 and request.events() == []
    assert len(web.streams) == 0 and web.streams.per_user == {}


# --- stop, and streams opened after it ---------------------------------------------------------

def test_stop_ends_the_streams_and_leaves_their_connections_to_the_site():
    web, _ = harness_with_call()
    requests = [web.stream("/events", basic("user1")), web.stream("/events", client=TRUSTED)]
    for request in requests:
        request.channel.transport = AbortableTransport()
    web.streams.stop()
    assert all(r.finished == 1 and r.channel.transport.closed == [] for r in requests)


def test_a_stream_opened_after_stop_gets_live_events_and_heartbeats():
    web, call = harness_with_call()
    web.stream("/events", basic("user1"))
    web.streams.stop()
    request = web.stream("/events", basic("user1"))
    play(call, LINES[:1])
    assert [i for i, _ in kinds(request)] == [f"{call.id}:1"]
    web.clock.advance(15)  # an event went out in this interval: no comment
    web.clock.advance(15)
    assert request.body.count(b": keep-alive\n\n") == 1


# --- bounds -------------------------------------------------------------------------------------

def test_a_stream_keeps_nothing_of_the_calls_that_ended():
    web, first = harness_with_call()
    web.request(b"POST", "/callcontroller/user1/user4", headers=basic("user1"))
    second = web.registry.calls[1]
    play(first, LINES[:2])
    first.finish("completed")
    request = web.stream("/events", {**basic("user1"),
                                     b"Last-Event-ID": f"{first.id}:0".encode()})
    stream = request.producer
    assert first.id not in stream.names  # the replayed end of the first call
    play(second, LINES[:2])
    assert list(stream.names) == [second.id]
    second.finish("completed")
    assert stream.names == {}  # the live end of the second


def test_the_caps_come_from_the_configuration():
    web = Harness()
    config = web.context.config
    web.context.config = replace(config, http=replace(config.http, max_streams=2,
                                                      max_streams_per_user=1))
    web.streams = install_streams(web.root, web.context, web.clock)
    assert [web.stream("/events", basic("user1")).responseCode for _ in range(2)] == [200, 429]
    assert web.stream("/events", basic("user2")).responseCode == 200
    assert web.stream("/events", basic("user3")).responseCode == 503
