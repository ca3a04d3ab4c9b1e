"""
Live events (Server-Sent Events, C{text/event-stream}): C{GET /calls/{id}/events} follows
one call, C{GET /events} every call the requester may see.

Each event of a call is one SSE event: C{id:} is the call's event number (1, 2, 3, ...;
on C{/events} C{<call id>:<number>} so that it names one call's event), C{event:} its
kind (C{initiated}, C{ringing}, C{answered}, C{transferring}, C{connected}, C{failed},
C{completed} when a status line changes it, as webhooks name them; C{sip} for a status
line that does not), and C{data:} one line of JSON: the status line's entry of the JSON
status document plus C{call}, C{seq} and C{event} (the end of the call: its C{state}).
A C{Last-Event-ID} header resumes after that event, from the call's retained status
lines. A comment line is sent every L{HEARTBEAT} seconds while nothing else is.

Bounds: L{EventStreams} admits at most C{max_streams} streams at once (beyond: 503) and
C{max_per_user} per user (beyond: 429; the trusted hosts share one count); a stream
whose reader does not take what is sent (the transport asks us to pause) may queue at
most L{MAX_BACKLOG} more bytes and is then dropped. The whole lot shares one
subscription to the event hub of this process's calls.

Live events come from the calls this process runs. With a call registry shared by several
nodes, C{/calls/{id}/events} for a call another node runs sends the events stored so far
(and its end, if over) and then ends the stream: an EventSource reconnects after
C{retry:} and resumes after its C{Last-Event-ID}. C{/events} follows this node's calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from sipxcc.calls.events import COMPLETED, FAILED, EventNamer
from sipxcc.calls.hub import CallEvent
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.store import CallView
from sipxcc.logs import logger
from sipxcc.web import params
from sipxcc.web.auth import Principal
from sipxcc.web.callcontroller import CALL_NOT_FOUND, ApiResource, WebContext
from sipxcc.web.errors import ApiError
from sipxcc.web.render import clean_text
from sipxcc.web.reply import Answer, Reply

log = logger(__name__)

EVENT_STREAM_TYPE = b"text/event-stream; charset=utf-8"

HEARTBEAT = 15.0
"""Seconds between two comment lines that keep an idle stream (and its proxies) alive."""

MAX_BACKLOG = 65536
"""Bytes a stream may still queue once its transport asked us to pause; beyond, it is
dropped (a reader that does not read is not buffered for forever)."""

RETRY_MS = 3000
"""What C{retry:} tells an EventSource to wait before reconnecting, in milliseconds."""

SIP = "sip"
"""The kind of a status line that does not change the call's named state."""

MAX_LAST_EVENT_ID = 200
"""Longest C{Last-Event-ID} looked at (a call id and a number)."""

TRUSTED_KEY = ""
"""The per-user count the trusted hosts share."""

SHUTDOWN_GRACE = 0.5
"""Seconds the open streams' connections get to flush their end when the daemon stops."""

MAX_RESUME_CALLS = 10_000
"""Most calls a resumed C{/events} stream looks through for the one it names."""


class StreamLimit(ApiError):
    """Too many streams: 429 for one user, 503 for all together."""


def _parse_seq(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        return 0
    return max(value, 0)


def last_event_id(request: Request) -> tuple[str | None, int]:
    """The C{Last-Event-ID} header as (call id or None, event number); (None, 0) if none
    or unreadable (an unreadable one starts over, as a missing one does)."""
    raw = request.getHeader(b"last-event-id")
    if not raw or len(raw) > MAX_LAST_EVENT_ID:
        return None, 0
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None, 0
    call_id, colon, seq = text.rpartition(":")
    if not colon:
        return None, _parse_seq(text)
    return call_id or None, _parse_seq(seq)


def format_event(event_id: str, kind: str, data: dict[str, Any]) -> bytes:
    """One SSE event: C{id}, C{event} and one C{data} line of JSON (no CR/LF inside:
    JSON escapes them in strings)."""
    body = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    return f"id: {event_id}\nevent: {kind}\ndata: {body}\n\n".encode()


class _Names:
    """The kind of each event of one call, in order (see the module docstring)."""

    def __init__(self) -> None:
        self.namer = EventNamer()
        self.shown: str | None = None

    def kind(self, status: Any, state: str) -> str:
        name = self.namer.name(status, state)
        if status is None:
            return name
        if name == self.shown:
            return SIP
        self.shown = name
        return name


def event_data(call: Any, seq: int, kind: str, status: Any) -> dict[str, Any]:
    """The JSON of one event: the status document's entry, or the call's end state."""
    data: dict[str, Any] = {"call": call.id, "seq": seq, "event": kind}
    if status is None:
        data["state"] = call.state
    else:
        data.update({"timestamp": status.timestamp, "call-id": clean_text(status.call_id),
                     "method": clean_text(status.method),
                     "status-line": clean_text(status.status_line)})
    return data


class Stream:
    """
    One open event stream: writes SSE events to its request, and is a push producer
    registered with it so that it learns when the reader falls behind.
    """

    def __init__(self, streams: EventStreams, request: Request, principal: Principal,
                 call_id: str | None):
        self.streams = streams
        self.request = request
        self.principal = principal
        self.call_id = call_id  # None: every call the principal may see
        self.key = TRUSTED_KEY if principal.trusted else (principal.identity or "")
        self.names: dict[str, _Names] = {}
        self.paused = False
        self.backlog = 0
        self.closed = False
        self.sent_since_heartbeat = False

    # IPushProducer
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.backlog = 0

    def stopProducing(self) -> None:
        self.close(finish=False)

    def wants(self, call: Any) -> bool:
        if self.call_id is not None:
            same: bool = call.id == self.call_id
            return same
        visible: bool = self.principal.may_see(call)
        return visible

    def event_id(self, call: Any, seq: int) -> str:
        return str(seq) if self.call_id is not None else f"{call.id}:{seq}"

    def _names(self, call: Any, before: int) -> _Names:
        names = self.names.get(call.id)
        if names is None:
            names = self.names[call.id] = _Names()
            for status in call.events[:before]:  # catch up on what came before
                names.kind(status, call.state)
        return names

    def replay(self, call: Any, after: int) -> None:
        """Send C{call}'s retained events numbered above C{after}, and its end if over."""
        names = self._names(call, 0)
        events = call.events
        for index, status in enumerate(events):
            kind = names.kind(status, call.state)
            if index + 1 > after:
                self.send(call, index + 1, kind, status)
        if call.ended:
            end = max(call.seq, len(events) + 1)
            self.end(call, end, after)

    def live(self, call: Any, event: CallEvent) -> None:
        names = self._names(call, event.seq - 1)
        kind = names.kind(event.status, call.state)
        self.send(call, event.seq, kind, event.status)
        if event.status is None:
            self.names.pop(call.id, None)
            if self.call_id is not None:
                self.close()

    def end(self, call: Any, seq: int, after: int) -> None:
        if seq > after:
            kind = FAILED if call.state == "failed" else COMPLETED
            self.send(call, seq, kind, None)
        self.names.pop(call.id, None)
        if self.call_id is not None:
            self.close()

    def send(self, call: Any, seq: int, kind: str, status: Any) -> None:
        self.write(format_event(self.event_id(call, seq), kind,
                                event_data(call, seq, kind, status)))

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.paused:
            self.backlog += len(data)
            if self.backlog > self.streams.max_backlog:
                log.info("dropping a live event stream of {who}: its reader fell "
                         "{backlog} bytes behind", who=self.key or "a trusted host",
                         backlog=self.backlog)
                self.drop()
                return
        self.sent_since_heartbeat = True
        self.request.write(data)

    def heartbeat(self) -> None:
        if not self.sent_since_heartbeat:
            self.write(b": keep-alive\n\n")
        self.sent_since_heartbeat = False

    def drop(self) -> None:
        """Close the connection at once (the reader is too slow to flush to)."""
        transport = getattr(self.request.channel, "transport", None)  # before close()
        self.close(finish=False)
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        elif transport is not None:
            transport.loseConnection()

    def close(self, finish: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.streams.forget(self)
        try:
            self.request.unregisterProducer()
        except RuntimeError:
            pass
        if finish and not self.request.finished:
            self.request.finish()


class EventStreams:
    """
    The open event streams: one subscription to the events of the calls this process
    runs (C{registry}), fanned out to the streams that may see each call; the caps, and
    one heartbeat timer for all.
    """

    def __init__(self, registry: CallRegistry, clock: IReactorTime, max_streams: int,
                 max_per_user: int, heartbeat: float = HEARTBEAT,
                 max_backlog: int = MAX_BACKLOG):
        self.registry = registry
        self.clock = clock
        self.max_streams = max_streams
        self.max_per_user = max_per_user
        self.heartbeat_interval = heartbeat
        self.max_backlog = max_backlog
        self.streams: list[Stream] = []
        self.per_user: dict[str, int] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._beat: task.LoopingCall | None = None

    def __len__(self) -> int:
        return len(self.streams)

    def open(self, request: Request, principal: Principal, call: CallView | None,
             live: bool = True) -> Stream:
        """Start a stream on C{request} (raises L{StreamLimit} beyond a cap): headers,
        the events after C{Last-Event-ID}, then live events; without C{live} (a call
        another node runs) the stream ends after the events stored so far."""
        stream = Stream(self, request, principal, None if call is None else call.id)
        if self.per_user.get(stream.key, 0) >= self.max_per_user:
            raise StreamLimit(429, "Too many event streams for this user",
                              ((b"retry-after", b"5"),))
        if len(self.streams) >= self.max_streams:
            raise StreamLimit(503, "Too many event streams", ((b"retry-after", b"5"),))
        self._start()
        self.streams.append(stream)
        self.per_user[stream.key] = self.per_user.get(stream.key, 0) + 1
        request.setResponseCode(200)
        request.setHeader(b"content-type", EVENT_STREAM_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.notifyFinish().addBoth(lambda _: stream.close(finish=False))
        request.registerProducer(stream, True)
        stream.write(b"retry: %d\n\n" % RETRY_MS)
        stream.sent_since_heartbeat = False
        wanted, after = last_event_id(request)
        if call is not None:
            stream.replay(call, after)
            if not live:
                stream.close()
        elif wanted is not None:
            self._resume_all(stream, wanted, after)
        return stream

    def _resume_all(self, stream: Stream, call_id: str, after: int) -> None:
        """On C{/events}: the rest of the call C{Last-Event-ID} names, then every event
        of the visible calls placed after it that are still retained."""
        owner = None if stream.principal.trusted else stream.principal.identity
        placed = list(reversed(self.registry.calls_of(owner, MAX_RESUME_CALLS)))
        ids = [c.id for c in placed]
        if call_id not in ids:
            return
        for call in placed[ids.index(call_id):]:
            if stream.closed:
                return
            stream.replay(call, after if call.id == call_id else 0)

    def _start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.registry.subscribe(self._on_event)
        if self._beat is None:
            self._beat = task.LoopingCall(self._heartbeat)
            self._beat.clock = self.clock
            self._beat.start(self.heartbeat_interval, now=False)

    def _on_event(self, call: Any, event: CallEvent) -> None:
        for stream in self.streams:
            if not stream.closed and stream.wants(call):
                stream.live(call, event)

    def _heartbeat(self) -> None:
        for stream in list(self.streams):
            stream.heartbeat()

    def forget(self, stream: Stream) -> None:
        if stream in self.streams:
            self.streams = [s for s in self.streams if s is not stream]
            left = self.per_user.get(stream.key, 1) - 1
            if left > 0:
                self.per_user[stream.key] = left
            else:
                self.per_user.pop(stream.key, None)

    def shutdown(self) -> defer.Deferred[None]:
        """The daemon stops: end every stream as HTTP says (its last chunk), close its
        connection, and give the connections L{SHUTDOWN_GRACE} seconds to flush (the
        reactor cuts whatever is left open when it stops)."""
        open_ = list(self.streams)
        self.stop(close_connections=True)
        if not open_:
            return defer.succeed(None)
        log.info("stopping: ended {count} live event streams", count=len(open_))
        return task.deferLater(self.clock, SHUTDOWN_GRACE, lambda: None)

    def stop(self, close_connections: bool = False) -> None:
        """End every stream, stop the heartbeat and the subscription."""
        for stream in list(self.streams):
            transport = getattr(stream.request.channel, "transport", None)
            stream.close()
            if close_connections and transport is not None:
                transport.loseConnection()
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        self._beat = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class EventsResource(ApiResource):
    """C{GET /events}: every call the requester may see, live."""

    allowed = (b"GET",)

    def __init__(self, context: WebContext, streams: EventStreams):
        super().__init__(context)
        self.streams = streams

    def handle(self, request: Request, principal: Principal) -> Answer:
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "Not found")
        self.streams.open(request, principal, None)
        return STREAMING

    def respond(self, request: Request, reply: Reply) -> None:
        if reply is not STREAMING:
            super().respond(request, reply)


class CallEventsResource(EventsResource):
    """C{GET /calls/{id}/events}: one call's events, until it is over (see the module
    docstring for a call another node runs)."""

    def handle(self, request: Request, principal: Principal) -> Answer:
        path = request.postpath or []
        call_id = params.decode_segment("id", path[0])
        call = self.streams.registry.get(call_id)
        if call is not None:  # this process runs it: its live events come here
            return self._open(call, request, principal, True)
        found = self.context.store.get(call_id)  # another node's, in a shared registry
        return found.addCallback(self._open, request, principal, False)

    def _open(self, call: CallView | None, request: Request, principal: Principal,
              live: bool) -> Reply:
        if call is None or not principal.may_see(call):
            raise ApiError(404, CALL_NOT_FOUND)
        self.streams.open(request, principal, call, live)
        return STREAMING


class StreamsService(Service):
    """Ends the open event streams first when the daemon stops (see L{EventStreams.shutdown})."""

    def __init__(self, streams: EventStreams):
        self.streams = streams

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        return self.streams.shutdown()


def install_streams(root: Any, context: WebContext, clock: IReactorTime) -> EventStreams:
    """Add C{/events} and C{/calls/{id}/events} to the tree L{install} built under
    C{root}; returns the streams (to L{EventStreams.stop} on shutdown)."""
    config = context.config.http
    streams = EventStreams(context.store.registry, clock, config.max_streams,
                           config.max_streams_per_user)
    root.putChild(b"events", EventsResource(context, streams))
    root.children[b"calls"].events = CallEventsResource(context, streams)
    return streams


STREAMING = Reply(200, b"")
"""What a stream resource's C{handle} returns once it has taken over the request."""
