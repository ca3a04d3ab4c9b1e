"""The twisted.web Site that the HTTPS and HTTP listeners serve."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web import resource, server

from sipxcc.calls.registry import CallRegistry
from sipxcc.config import Config
from sipxcc.sip.timers import FixedDelayTimers
from sipxcc.users import UserDirectory
from sipxcc.web.auth import Authenticator
from sipxcc.web.callcontroller import WebContext, install
from sipxcc.web.errors import PathResource
from sipxcc.web.limits import IDLE_TIMEOUT, REQUEST_DEADLINE, ConnectionLimits, LimitedChannel

REQUEST_TIMEOUT = IDLE_TIMEOUT
"""Seconds an idle HTTP connection is kept open (see sipxcc.web.limits for the rest)."""


class Health(resource.Resource):
    """``GET /health``: 200 ``ok`` while the daemon runs (for monitoring and start-up checks)."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"ok\n"


class LimitedSite(server.Site):
    """A Site whose connections are L{LimitedChannel}s sharing one L{ConnectionLimits}.

    Both listeners serve the same Site, so the connection caps count them together, and
    their request deadlines share one timer queue.
    """

    protocol = LimitedChannel

    def __init__(self, root, reactor, limits: ConnectionLimits | None = None):
        super().__init__(root, reactor=reactor)
        self.clock = reactor
        self.limits = limits or ConnectionLimits()
        self.deadlines = FixedDelayTimers(reactor, REQUEST_DEADLINE)

    def stopFactory(self) -> None:
        self.deadlines.stop()
        super().stopFactory()


def build_site(config: Config, directory: UserDirectory, registry: CallRegistry,
               reactor: IReactorTime) -> server.Site:
    """The Site that both listeners serve."""
    root = PathResource()
    root.putChild(b"health", Health())
    context = WebContext(config=config, directory=directory,
                         registry=registry,
                         auth=Authenticator(config, directory, reactor))
    install(root, context)
    site = LimitedSite(root, reactor, ConnectionLimits(is_trusted=config.is_trusted))
    site.displayTracebacks = False
    site.timeOut = REQUEST_TIMEOUT
    return site
