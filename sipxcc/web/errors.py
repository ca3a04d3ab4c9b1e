"""
The errors of the REST interface and the one place that turns an exception into an HTTP
answer (L{error_reply}): its status, Retry-After and text. Also the resources that only
ever answer an error (unknown paths, over-long URIs).
"""

from __future__ import annotations

from twisted.python.failure import Failure
from twisted.web import resource
from twisted.web.server import Request

from sipxcc.calls.errors import (
    AgentLimit,
    CallError,
    CallInProgress,
    OwnerTimeout,
    OwnerUnavailable,
    RegistryUnavailable,
    TooManyCalls,
    TransferNotPossible,
)
from sipxcc.logs import logger
from sipxcc.web.auth import AuthFailure
from sipxcc.web.params import BadParameter
from sipxcc.web.reply import Reply, status_reply

log = logger(__name__)

MAX_URI = 8192
"""Longest request URI (bytes) served; longer ones get 414."""

#: seconds a client is asked to wait (Retry-After) when a call limit refused its call
LIMIT_RETRY_AFTER = 5

#: seconds a client is asked to wait (Retry-After) while the shared call registry (Redis)
#: cannot be reached: about the longest pause between two reconnection attempts
REGISTRY_RETRY_AFTER = 5

#: what a client is told while the shared call registry cannot be reached
REGISTRY_UNAVAILABLE = "The call registry is unavailable; try again later"

#: how each refusal of the call layer is answered: HTTP status, Retry-After (or None)
CALL_ERRORS: dict[type[CallError], tuple[int, int | None]] = {
    CallInProgress: (409, None),
    TransferNotPossible: (409, None),
    TooManyCalls: (503, LIMIT_RETRY_AFTER),
    AgentLimit: (429, LIMIT_RETRY_AFTER),
    # another node runs the call: it did not answer in time, or it is gone (the call
    # can no longer be ended or transferred; the survivors mark it ended)
    OwnerTimeout: (504, None),
    OwnerUnavailable: (410, None),
}


class ApiError(Exception):
    """A request answered with an error document: C{code} and C{text}, optional headers."""

    def __init__(self, code: int, text: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(text)
        self.code = code
        self.headers = list(headers)


def _retry_after(seconds: int | None) -> list[tuple[bytes, bytes]]:
    return [] if seconds is None else [(b"retry-after", b"%d" % seconds)]


def error_reply(request: Request, failure: Failure) -> Reply:
    """
    The answer to a request that raised: the status, headers and text each known error
    stands for; anything else is a fault of ours, logged and answered 500 with a generic
    text (never a traceback).
    """
    error = failure.value
    if isinstance(error, AuthFailure):
        headers = [(b"www-authenticate", c) for c in error.challenges]
        return status_reply(request, error.code, str(error),
                            headers + _retry_after(error.retry_after))
    if isinstance(error, BadParameter):
        return status_reply(request, 400, str(error))
    if isinstance(error, ApiError):
        return status_reply(request, error.code, str(error), error.headers)
    if isinstance(error, CallError):
        code, retry = CALL_ERRORS.get(type(error), (500, None))
        return status_reply(request, code, str(error), _retry_after(retry))
    if isinstance(error, RegistryUnavailable):  # the connection's state changes are logged
        return status_reply(request, 503, REGISTRY_UNAVAILABLE,
                            _retry_after(REGISTRY_RETRY_AFTER))
    log.failure("unexpected error answering {method} {path}", failure,
                method=request.method, path=request.path)
    return status_reply(request, 500, "Internal error")


class ErrorResource(resource.Resource):
    """Answers every request with one error document (404 for unknown paths, 414, ...)."""

    isLeaf = True

    def __init__(self, code: int, text: str):
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self.code = code
        self.text = text

    def render(self, request: Request) -> bytes:
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

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def getChildWithDefault(self, path: bytes, request: Request) -> resource.IResource:
        if len(request.uri) > MAX_URI:
            return URI_TOO_LONG
        child: resource.IResource = super().getChildWithDefault(path, request)  # type: ignore[no-untyped-call]  # Twisted's, untyped
        return child

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        return NOT_FOUND

    def render(self, request: Request) -> bytes:
        if len(request.uri) > MAX_URI:
            return URI_TOO_LONG.render(request)
        return NOT_FOUND.render(request)
