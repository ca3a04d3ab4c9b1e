"""
How the REST interface answers: a L{Reply} (status, document, headers), in the format the
client accepts, written out by L{send}. Every answer carries a document: the call's status
document, or the processing-status document whose C{error-code} equals the HTTP status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from sipxcc.web import render


@dataclass
class Reply:
    """An HTTP answer: status, body and extra headers."""

    code: int
    body: bytes
    content_type: bytes = render.XML_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Answer = Reply | Deferred[Reply]
"""What a resource's handler gives: its reply, now or later."""


def wants_json(request: Request) -> bool:
    """C{Accept: application/json} selects JSON; everything else gets XML."""
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept.lower()


def status_reply(request: Request, code: int, text: str,
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> Reply:
    """The processing-status document as a reply, in the format the client accepts."""
    if wants_json(request):
        return Reply(code, render.processing_status_json(code, text), render.JSON_TYPE,
                     list(headers))
    return Reply(code, render.processing_status_xml(code, text), render.XML_TYPE,
                 list(headers))


def send(request: Request, reply: Reply) -> None:
    """Write C{reply} and finish the request."""
    request.setResponseCode(reply.code)
    request.setHeader(b"content-type", reply.content_type)
    request.setHeader(b"cache-control", b"no-store")
    for name, value in reply.headers:
        # addRawHeader: a 401 carries one WWW-Authenticate line per scheme.
        request.responseHeaders.addRawHeader(name, value)
    request.setHeader(b"content-length", b"%d" % len(reply.body))
    if request.method != b"HEAD":
        request.write(reply.body)
    request.finish()
