"""The twisted.web Site that the HTTPS and HTTP listeners serve."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web import resource, server

from sipxcc.config import Config
from sipxcc.users import UserDirectory


class Health(resource.Resource):
    """``GET /health``: 200 ``ok`` while the daemon runs (for monitoring and start-up checks)."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"ok\n"


class NotFound(resource.Resource):
    """A plain 404 for every method (twisted.web's own NoResource is deprecated in 26.10)."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"not found\n"


class Root(resource.Resource):
    """The root of the tree: known children, 404 for anything else."""

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return NotFound()

    def render(self, request: server.Request) -> bytes:
        return NotFound().render(request)


def build_site(config: Config, directory: UserDirectory, registry: object | None,
               reactor: IReactorTime) -> server.Site:
    """The Site for both listeners; ``registry`` is the CallRegistry (None until wired)."""
    root = Root()
    root.putChild(b"health", Health())
    site = server.Site(root, reactor=reactor)
    site.displayTracebacks = False
    return site
