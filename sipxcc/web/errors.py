"""
Replies of the REST interface and the resources that only answer an error.

Every answer carries a document: the status document, or the processing-status
document whose C{error-code} equals the HTTP status (SPEC §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.web import resource

from sipxcc.web import render

MAX_URI = 8192
"""Longest request URI (bytes) served; longer ones get 414."""


@dataclass
class Reply:
    """An HTTP answer: status, body and extra headers."""

    code: int
    body: bytes
    content_type: bytes = render.XML_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class ApiError(Exception):
    """A request answered with an error document: C{code} and C{text}, optional headers."""

    def __init__(self, code: int, text: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(text)
        self.code = code
        self.headers = list(headers)


def wants_json(request) -> bool:
    """C{Accept: application/json} selects JSON; everything else gets XML."""
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept.lower()


def status_reply(request, code: int, text: str, headers=()) -> Reply:
    """The processing-status document as a reply, in the format the client accepts."""
    if wants_json(request):
        return Reply(code, render.processing_status_json(code, text), render.JSON_TYPE,
                     list(headers))
    return Reply(code, render.processing_status_xml(code, text), render.XML_TYPE,
                 list(headers))


def send(request, reply: Reply) -> None:
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


class ErrorResource(resource.Resource):
    """Answers every request with one error document (404 for unknown paths, 414, ...)."""

    isLeaf = True

    def __init__(self, code: int, text: str):
        super().__init__()
        self.code = code
        self.text = text

    def render(self, request):
        reply = status_reply(request, self.code, self.text)
        request.setResponseCode(reply.code)
        request.setHeader(b"content-type", reply.content_type)
        request.setHeader(b"cache-control", b"no-store")
        return reply.body


NOT_FOUND = ErrorResource(404, "Not found")
URI_TOO_LONG = ErrorResource(414, "Request URI too long")


class PathResource(resource.Resource):
    """
    An inner node of the URL tree: unknown children, and the node itself, are 404 with
    the processing-status document. As the root it also refuses over-long URIs (414).
    """

    def getChildWithDefault(self, path, request):
        if len(request.uri) > MAX_URI:
            return URI_TOO_LONG
        return super().getChildWithDefault(path, request)

    def getChild(self, path, request):
        return NOT_FOUND

    def render(self, request):
        if len(request.uri) > MAX_URI:
            return URI_TOO_LONG.render(request)
        return NOT_FOUND.render(request)
