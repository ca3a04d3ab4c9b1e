"""
C{GET /openapi.json}: the OpenAPI 3.1 description of the REST interface (the file
C{openapi.json} next to this module; docs/openapi.json links to it). Served to anyone, as
C{/health} is: it describes the interface and reveals nothing about users or calls.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web import resource, server

SPEC_PATH = Path(__file__).with_name("openapi.json")
JSON_TYPE = b"application/json; charset=utf-8"


def load_spec() -> bytes:
    """The description as served (read once, at start-up)."""
    return SPEC_PATH.read_bytes()


class ReadOnlyResource(resource.Resource):
    """A leaf that answers only GET and HEAD: any other method is 405 with C{Allow}."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's, untyped

    def render(self, request: server.Request) -> bytes:
        if request.method in (b"GET", b"HEAD"):
            body: bytes = super().render(request)  # type: ignore[no-untyped-call]  # Twisted's, untyped
            return body
        request.setResponseCode(405)
        request.setHeader(b"Allow", b"GET, HEAD")
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"Method not allowed\n"


class OpenAPIResource(ReadOnlyResource):
    """Serves the OpenAPI description, read once when built."""

    def __init__(self, body: bytes | None = None):
        super().__init__()
        self.body = load_spec() if body is None else body

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", JSON_TYPE)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.body

    render_HEAD = render_GET
