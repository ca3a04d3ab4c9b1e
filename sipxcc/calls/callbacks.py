"""
Status webhooks (C{statusCallback=URL}): every status event of a call POSTed as JSON, in
order, retried with back-off for a bounded time, never holding up the call itself.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable

from twisted.internet import defer

from sipxcc.logs import logger

log = logger(__name__)

#: seconds to wait before each retry of one event; then it is given up
BACKOFF = (1, 2, 4, 8, 16)
#: events waiting per call beyond which the oldest are dropped
MAX_QUEUED = 200


def treq_poster(reactor, timeout: float = 5.0) -> Callable:
    """A C{post(url, body) -> Deferred[int status]} built on treq with our reactor."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    client = HTTPClient(Agent(reactor, connectTimeout=timeout))

    def post(url: str, body: bytes):
        d = client.post(url, data=body, headers={b"Content-Type": [b"application/json"]},
                        timeout=timeout)
        return d.addCallback(lambda response: client_drain(response))

    def client_drain(response):
        return response.content().addCallback(lambda _: response.code)
    return post


def event_document(call, event) -> dict:
    doc = {"id": call.id, "state": call.state, "mode": call.mode,
           "calling": call.request.calling, "called": call.request.called}
    if event is None:
        doc["ended"] = True
    else:
        doc.update({"timestamp": event.timestamp, "call-id": event.call_id,
                    "method": event.method, "status-line": event.status_line})
    return doc


class _Queue:
    """The events of one call on their way to its callback URL, one at a time."""

    def __init__(self, sender: StatusCallbacks, url: str):
        self.sender = sender
        self.url = url
        self.waiting: deque[bytes] = deque()
        self.busy = False

    def push(self, body: bytes) -> None:
        if len(self.waiting) >= MAX_QUEUED:
            self.waiting.popleft()
            self.sender.dropped += 1
        self.waiting.append(body)
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.waiting:
            self.busy = False
            return
        self.busy = True
        self._attempt(self.waiting.popleft(), 0)

    def _attempt(self, body: bytes, tries: int) -> None:
        d = defer.maybeDeferred(self.sender.post, self.url, body)

        def done(status):
            if 200 <= status < 300:
                self.sender.delivered += 1
                self._next()
            else:
                failed(f"HTTP {status}")

        def failed(reason):
            if tries >= len(BACKOFF):
                log.warn("status callback to {url} given up: {reason}", url=self.url,
                         reason=getattr(reason, "getErrorMessage", lambda: reason)())
                self.sender.dropped += 1
                self._next()
            else:
                self.sender.clock.callLater(BACKOFF[tries], self._attempt, body, tries + 1)
        d.addCallbacks(done, failed)


class StatusCallbacks:
    """Attach to each new call that asked for a status callback (C{registry} observer)."""

    def __init__(self, clock, post: Callable):
        self.clock = clock
        self.post = post
        self.delivered = 0
        self.dropped = 0

    def attach(self, call) -> None:
        url = call.request.status_callback
        if not url:
            return
        queue = _Queue(self, url)

        def listener(call, event):
            queue.push(json.dumps(event_document(call, event)).encode())
        call.listen(listener)
