"""Live events (sipxcc.web.stream) on fakes: format, order, resume, caps, heartbeat on a
Clock, a slow reader dropped, visibility as GET has it."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer
from twisted.web.resource import getChildForRequest

from sipxcc.calls.call import CallRequest
from sipxcc.calls.hub import EventHub
from sipxcc.calls.store import MemoryCallStore
from sipxcc.web.stream import install_streams
from tests.unit.webfakes import FakeRegistry, WebHarness, WebRequest, basic, stored_form

TRUSTED = "127.0.0.1"
CALL_ID = "a84b4c76e66710@192.0.2.4"
LINES = [("INVITE", "SIP/2.0 100 Trying"), ("INVITE", "SIP/2.0 180 Ringing"),
         ("INVITE", "SIP/2.0 200 OK"), ("REFER", "SIP/2.0 202 Accepted"),
         ("NOTIFY", "SIP/2.0 100 Trying"), ("NOTIFY", "SIP/2.0 200 OK")]


class HubRegistry(FakeRegistry):
    """The fake registry, publishing its calls' events to a real L{EventHub}."""

    def __init__(self):
        super().__init__()
        self.events = EventHub()

    def subscribe(self, subscriber):
        return self.events.subscribe(subscriber)

    def place(self, request):
        call = super().place(request)
        call.listen(self.events.publish)
        return call


class FakeTransport:
    def __init__(self):
        self.aborted = False

    def abortConnection(self):
        self.aborted = True

    def loseConnection(self):
        self.aborted = True


class Channel:
    def __init__(self):
        self.transport = FakeTransport()


class StreamRequest(WebRequest):
    """A request a stream can register with as a push producer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.producer = None
        self.channel = Channel()

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def events(self):
        """The SSE events written so far, as (id, event, data) tuples."""
        out = []
        for block in self.body.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines()
                          if ": " in line and not line.startswith(":"))
            if "id" in fields:
                out.append((fields["id"], fields["event"], json.loads(fields["data"])))
        return out


class Harness(WebHarness):
    def __init__(self, **config):
        super().__init__(**config)
        self.registry = HubRegistry()
        self.context = None
        from sipxcc.web.callcontroller import WebContext, install
        from sipxcc.web.errors import PathResource
        self.root = PathResource()
        self.call_store = MemoryCallStore(self.registry)
        self.context = WebContext(self.config, self.directory, self.call_store, self.auth)
        install(self.root, self.context)
        self.streams = install_streams(self.root, self.context, self.clock)

    def stream(self, uri, headers=None, client="192.0.2.10"):
        request = StreamRequest(b"GET", uri.encode(), client=client, headers=headers)
        request.prepath = []
        request.render(getChildForRequest(self.root, request))
        return request


@pytest.fixture
def web():
    harness = Harness()
    harness.request(b"POST", "/callcontroller/user1/user2", headers=basic("user1"))
    return harness


def play(call, lines=LINES):
    for index, (method, line) in enumerate(lines):
        call.record(1_700_000_000_000 + index, CALL_ID, method, line)


def test_a_calls_stream_names_each_step_in_order_and_ends_with_the_call(web):
    call = web.registry.calls[0]
    request = web.stream(f"/calls/{call.id}/events", basic("user1"))
    assert request.responseCode == 200
    assert request.header(b"content-type") == b"text/event-stream; charset=utf-8"
    play(call)
    call.finish("completed")
    events = request.events()
    assert [kind for _, kind, _ in events] == [
        "initiated", "ringing", "answered", "transferring", "sip", "connected", "completed"]
    assert [event_id for event_id, _, _ in events] == [str(n) for n in range(1, 8)]
    assert events[1][2] == {"call": call.id, "seq": 2, "event": "ringing",
                            "timestamp": 1_700_000_000_001, "call-id": CALL_ID,
                            "method": "INVITE", "status-line": "SIP/2.0 180 Ringing"}
    assert events[-1][2]["state"] == "completed"
    assert request.finished and len(web.streams) == 0


def test_last_event_id_resumes_with_exactly_the_missing_events(web):
    call = web.registry.calls[0]
    play(call, LINES[:4])
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"2"})
    play(call, LINES[4:])
    assert [(i, kind) for i, kind, _ in request.events()] == [
        ("3", "answered"), ("4", "transferring"), ("5", "sip"), ("6", "connected")]


def test_a_finished_call_replays_what_is_retained_and_closes(web):
    call = web.registry.calls[0]
    play(call)
    call.finish("failed")
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"5"})
    assert [(i, kind) for i, kind, _ in request.events()] == [("6", "connected"),
                                                             ("7", "failed")]
    assert request.finished


def another_nodes_call(web, lines, end=None):
    """A call of user1 that another node runs: this node's store finds only its stored
    form (as Redis holds it), its registry nothing."""
    other = HubRegistry()
    other.place(CallRequest(web.directory.lookup("user1"), "user1@sipx.test",
                            "user4@sipx.test"))
    call = other.calls[0]
    play(call, lines)
    if end is not None:
        call.finish(end)
    stored = stored_form(call)
    web.call_store.get = lambda call_id: defer.succeed(stored if call_id == call.id else None)
    return call


def test_a_call_another_node_runs_streams_its_stored_events_then_ends(web):
    call = another_nodes_call(web, LINES[:3])
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"1"})
    assert request.responseCode == 200
    assert [(i, kind) for i, kind, _ in request.events()] == [("2", "ringing"),
                                                             ("3", "answered")]
    assert request.finished and len(web.streams) == 0  # the EventSource comes back later
    assert web.stream(f"/calls/{call.id}/events", basic("user2")).responseCode == 404


def test_a_finished_call_another_node_ran_replays_its_end(web):
    call = another_nodes_call(web, LINES, end="completed")
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"6"})
    assert [(i, kind) for i, kind, _ in request.events()] == [("7", "completed")]
    assert request.finished


def test_another_users_call_is_404_as_get_answers(web):
    call = web.registry.calls[0]
    request = web.stream(f"/calls/{call.id}/events", basic("user2"))
    get = web.request(b"GET", f"/calls/{call.id}", headers=basic("user2"))
    assert request.responseCode == get.responseCode == 404
    assert len(web.streams) == 0


def test_without_credentials_a_stream_is_401(web):
    call = web.registry.calls[0]
    assert web.stream(f"/calls/{call.id}/events").responseCode == 401


def test_all_events_show_a_user_only_its_calls_with_call_qualified_ids(web):
    web.request(b"POST", "/callcontroller/user2/user3", headers=basic("user2"))
    mine, theirs = web.registry.calls
    request = web.stream("/events", basic("user1"))
    trusted = web.stream("/events", client=TRUSTED)
    play(theirs, LINES[:1])
    play(mine, LINES[:2])
    assert [i for i, _, _ in request.events()] == [f"{mine.id}:1", f"{mine.id}:2"]
    assert [i for i, _, _ in trusted.events()] == [f"{theirs.id}:1", f"{mine.id}:1",
                                                   f"{mine.id}:2"]


def test_all_events_resume_after_the_named_event(web):
    call = web.registry.calls[0]
    play(call, LINES[:3])
    request = web.stream("/events", {**basic("user1"),
                                     b"Last-Event-ID": f"{call.id}:1".encode()})
    assert [i for i, _, _ in request.events()] == [f"{call.id}:2", f"{call.id}:3"]



@pytest.mark.parametrize("hostile", [
    "\u00e9:1".encode("utf-8"),     # not ASCII
    b"1:not-a-number",
])
def test_an_unreadable_last_event_id_starts_the_stream_over(web, hostile):
    call = web.registry.calls[0]
    play(call, LINES[:2])
    request = web.stream("/events", {**basic("user1"), b"Last-Event-ID": hostile})
    assert request.responseCode == 200
    play(call, LINES[2:3])
    assert [i for i, _, _ in request.events()] == [f"{call.id}:3"]



def test_a_last_event_id_beyond_its_bound_is_not_read(web):
    call = web.registry.calls[0]
    play(call, LINES[:2])
    # 201 bytes that would read as event 1 if the bound (200) were not there
    request = web.stream(f"/calls/{call.id}/events",
                         {**basic("user1"), b"Last-Event-ID": b"0" * 200 + b"1"})
    assert [i for i, _, _ in request.events()] == ["1", "2"]

def test_another_users_call_named_in_last_event_id_replays_nothing_of_it(web):
    web.request(b"POST", "/callcontroller/user2/user3", headers=basic("user2"))
    mine, theirs = web.registry.calls
    play(theirs, LINES[:3])
    request = web.stream("/events", {**basic("user1"),
                                     b"Last-Event-ID": f"{theirs.id}:0".encode()})
    play(mine, LINES[:1])
    assert [i for i, _, _ in request.events()] == [f"{mine.id}:1"]

def test_the_per_user_cap_is_429_and_the_total_503():
    web = Harness()
    web.streams.max_per_user = 2
    web.streams.max_streams = 3
    assert [web.stream("/events", basic("user1")).responseCode for _ in range(3)] == [
        200, 200, 429]
    assert web.stream("/events", basic("user2")).responseCode == 200
    refused = web.stream("/events", basic("user3"))
    assert refused.responseCode == 503 and refused.header(b"retry-after") == b"5"
    assert len(web.streams) == 3


def test_a_closed_stream_frees_its_place():
    web = Harness()
    web.streams.max_per_user = 1
    first = web.stream("/events", basic("user1"))
    first.processingFailed = None
    for d in first._finishedDeferreds:  # the client went away
        d.errback(Exception("connection lost"))
    first._finishedDeferreds = []
    assert len(web.streams) == 0
    assert web.stream("/events", basic("user1")).responseCode == 200


def test_a_heartbeat_comment_every_15_seconds_on_the_clock_only_when_idle(web):
    request = web.stream("/events", basic("user1"))
    web.clock.advance(14.9)
    assert b": keep-alive" not in request.body
    web.clock.advance(0.2)
    assert request.body.count(b": keep-alive\n\n") == 1
    play(web.registry.calls[0], LINES[:1])
    web.clock.advance(15)  # an event went out in this interval: no comment needed
    assert request.body.count(b": keep-alive\n\n") == 1
    web.clock.advance(15)
    assert request.body.count(b": keep-alive\n\n") == 2


def test_a_reader_that_does_not_read_is_dropped_and_others_are_served(web):
    call = web.registry.calls[0]
    web.streams.max_backlog = 16384
    slow = web.stream("/events", basic("user1"))
    fast = web.stream("/events", client=TRUSTED)
    slow.producer.pauseProducing()  # the transport's buffer is full
    many = [("INVITE", "SIP/2.0 180 Ringing " + "x" * 400)] * 60
    play(call, many)
    assert slow.channel.transport.aborted
    assert 15000 < len(slow.body) <= 16384 + 64  # what it queued stays within the budget
    assert len(fast.events()) == len(many)
    assert len(web.streams) == 1


def test_a_paused_reader_that_catches_up_is_kept(web):
    call = web.registry.calls[0]
    slow = web.stream("/events", basic("user1"))
    web.streams.max_backlog = 16384
    for _ in range(4):
        slow.producer.pauseProducing()
        play(call, [("INVITE", "SIP/2.0 180 Ringing " + "x" * 400)] * 20)
        slow.producer.resumeProducing()
    assert not slow.channel.transport.aborted and len(slow.events()) == 80


def test_shutdown_ends_every_stream(web):
    requests = [web.stream("/events", basic("user1")), web.stream("/events", client=TRUSTED)]
    web.streams.stop()
    assert all(r.finished for r in requests) and len(web.streams) == 0
    assert not web.clock.getDelayedCalls()


@pytest.mark.parametrize("method", [b"POST", b"DELETE"])
def test_other_methods_are_405(web, method):
    request = StreamRequest(method, b"/events", client=TRUSTED)
    request.prepath = []
    request.render(getChildForRequest(web.root, request))
    assert request.responseCode == 405


def test_shutdown_ends_the_streams_closes_their_connections_and_gives_them_a_grace(web):
    from sipxcc.web.stream import SHUTDOWN_GRACE, StreamsService
    requests = [web.stream("/events", basic("user1")), web.stream("/events", client=TRUSTED)]
    service = StreamsService(web.streams)
    service.startService()
    done = []
    service.stopService().addCallback(done.append)
    assert all(r.finished and r.channel.transport.aborted for r in requests)
    assert not done
    web.clock.advance(SHUTDOWN_GRACE)
    assert done == [None] and len(web.streams) == 0


def test_shutdown_without_streams_does_not_wait(web):
    from sipxcc.web.stream import StreamsService
    done = []
    StreamsService(web.streams).stopService().addCallback(done.append)
    assert done == [None]
