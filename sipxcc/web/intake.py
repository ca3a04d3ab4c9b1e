"""
What the REST resources accept from a request besides its path and credentials.

Parameters come from the query string only: twisted.web merges the fields of a form body
into C{request.args} (and lets them replace the query's), and an HTTP Digest response
(qop=auth) covers the method and URI but not the body, so a body could change a signed
request's parameters in flight. A request with a non-empty body is therefore refused
(415), whatever its content type; an empty one is fine.

A state-changing request (POST, DELETE) that a browser sends for a page of another
origin is refused (403): its C{Origin} is not the daemon's own, or its C{Sec-Fetch-Site}
is C{cross-site}. Requests without those headers (curl, CRMs, the sipX servers) are not
affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.web.http import parse_qs
from twisted.web.server import Request

from sipxcc.web.errors import ApiError
from sipxcc.web.params import Query

STATE_CHANGING = (b"POST", b"DELETE")
DEFAULT_PORTS = {"http": 80, "https": 443}
BODY_REFUSED = "Parameters go in the query string; a request body is not accepted"
CROSS_ORIGIN = "Cross-origin request refused"


def query(request: Request) -> Query:
    """
    The request's parameters, from the query string of its URI and nothing else (parsed
    as twisted.web parses it into C{request.args} before it adds the body's fields).
    """
    _, _, text = request.uri.partition(b"?")
    return Query(parse_qs(text, 1))


def body_size(request: Request) -> int:
    """Bytes of request body received (the channel already bounds it)."""
    content = getattr(request, "content", None)
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size: int = content.tell()
    content.seek(position)
    return size


def refuse_body(request: Request) -> None:
    """L{ApiError} 415 if the request carries a body."""
    if body_size(request):
        raise ApiError(415, BODY_REFUSED)


def _origin_triple(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.path or parts.query or parts.username is not None:
        return None
    return scheme, host.lower(), port or DEFAULT_PORTS[scheme]


def own_origin(request: Request) -> tuple[str, str, int] | None:
    """The origin this request was addressed to: its scheme and C{Host}."""
    host = request.getHeader(b"host")
    if not host:
        return None
    scheme = "https" if request.isSecure() else "http"
    return _origin_triple(scheme, host.decode("latin-1").strip())


def origin_of(value: bytes) -> tuple[str, str, int] | None:
    """An C{Origin} header's (scheme, host, port); None for C{null} or garbage."""
    scheme, separator, rest = value.decode("latin-1").strip().partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS:
        return None
    return _origin_triple(scheme, rest)


def refuse_cross_origin(request: Request) -> None:
    """L{ApiError} 403 if a browser sends this state-changing request for another origin."""
    if request.method not in STATE_CHANGING:
        return
    fetch_site = request.getHeader(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() == b"cross-site":
        raise ApiError(403, CROSS_ORIGIN)
    origin = request.getHeader(b"origin")
    if origin is None:
        return
    theirs = origin_of(origin)
    if theirs is None or theirs != own_origin(request):
        raise ApiError(403, CROSS_ORIGIN)
