"""
The live call page: C{GET /} (same authentication as the REST interface) is a form that
places a call and a timeline of the requester's calls, fed by C{/events}; its script and
style are C{/static/app.js} and C{/static/app.css}, files next to this module, read once
at start-up. Nothing is inline and nothing comes from elsewhere: every answer carries a
Content-Security-Policy that allows scripts, styles and connections from this origin only.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web import server
from twisted.web.server import Request

from sipxcc.web.auth import Principal
from sipxcc.web.callcontroller import ApiResource, WebContext
from sipxcc.web.errors import ApiError, PathResource
from sipxcc.web.openapi import ReadOnlyResource
from sipxcc.web.reply import Reply

STATIC_DIR = Path(__file__).with_name("static")

CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       b"frame-ancestors 'none'")
"""The page's Content-Security-Policy: its own origin only, no inline script or style."""

#: the static files served, and their types
STATIC_TYPES = {"app.js": b"text/javascript; charset=utf-8",
                "app.css": b"text/css; charset=utf-8",
                "icon.svg": b"image/svg+xml"}

HTML_TYPE = b"text/html; charset=utf-8"


def page_headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-security-policy", CSP), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class PageResource(ApiResource):
    """C{GET /}: the call page, for an authenticated user or a trusted host."""

    allowed = (b"GET",)

    def __init__(self, context: WebContext):
        super().__init__(context)
        self.body = (STATIC_DIR / "index.html").read_bytes()

    def handle(self, request: Request, principal: Principal) -> Reply:
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "Not found")
        return Reply(200, self.body, HTML_TYPE, page_headers())


class StaticFile(ReadOnlyResource):
    """One of the page's static files (public: they hold no user's data)."""

    def __init__(self, name: str):
        super().__init__()
        self.body = (STATIC_DIR / name).read_bytes()
        self.content_type = STATIC_TYPES[name]

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        for name, value in page_headers():
            request.setHeader(name, value)
        return self.body

    render_HEAD = render_GET


def install_page(root: PathResource, context: WebContext) -> None:
    """Put the page at C{/} and its files under C{/static/}."""
    root.putChild(b"", PageResource(context))
    static = PathResource()
    for name in STATIC_TYPES:
        static.putChild(name.encode("ascii"), StaticFile(name))
    root.putChild(b"static", static)
