"""The twisted.web Sites: one for the HTTPS and HTTP listeners, one for the internal one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import http, resource, server

from sipxcc.calls.store import CallStore
from sipxcc.config import Config
from sipxcc.logs import logger
from sipxcc.timers import FixedDelayTimers
from sipxcc.users import UserDirectory
from sipxcc.web.auth import Authenticator, client_host
from sipxcc.web.callcontroller import WebContext, install
from sipxcc.web.errors import REGISTRY_RETRY_AFTER, ErrorResource, PathResource
from sipxcc.web.idempotency import Idempotency, IdempotencyStore, MemoryStore
from sipxcc.web.limits import IDLE_TIMEOUT, REQUEST_DEADLINE, ConnectionLimits, LimitedChannel
from sipxcc.web.metrics import Metrics, MetricsResource
from sipxcc.web.openapi import OpenAPIResource, ReadOnlyResource
from sipxcc.web.page import install_page
from sipxcc.web.stream import EventStreams, install_streams

REQUEST_TIMEOUT = IDLE_TIMEOUT
"""Seconds an idle HTTP connection is kept open (see sipxcc.web.limits for the rest)."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same untrusted host on the internal listener."""

MAX_REFUSAL_HOSTS = 4096
"""Untrusted hosts whose last log line the internal listener remembers."""

NOT_TRUSTED = ErrorResource(403, "Only trusted hosts may use this port")

log = logger(__name__)


class Health(ReadOnlyResource):
    """
    ``GET /health``: 200 ``ok`` while the daemon serves (for monitoring and start-up
    checks). With a call registry shared through Redis, a second line tells its state;
    while this node cannot use it (Redis unreachable, or the node still starting) the
    answer is 503 with Retry-After: this node cannot place calls, and a load balancer's
    health check then sends clients to a node that can.
    """

    isLeaf = True

    def __init__(self, registry: Callable[[], dict[str, Any]]):
        super().__init__()
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        health = self.registry()
        if health.get("backend") == "memory":
            return b"ok\n"
        details = ", ".join(f"{name.replace('_', ' ')} {value}"
                            for name, value in health.items() if name != "state")
        line = f"registry {health['state']}: {details}\n".encode()
        if health["state"] == "up":
            return b"ok\n" + line
        request.setResponseCode(503)
        request.setHeader(b"Retry-After", b"%d" % REGISTRY_RETRY_AFTER)
        return b"unavailable\n" + line


class LimitedSite(server.Site):
    """A Site whose connections are L{LimitedChannel}s sharing one L{ConnectionLimits}.

    Both listeners serve the same Site, so the connection caps count them together, and
    their request deadlines share one timer queue.
    """

    # an HTTP/1.1 channel of ours instead of Twisted's HTTP/1.1-or-2 factory
    protocol = LimitedChannel  # type: ignore[assignment]

    def __init__(self, root: resource.IResource, reactor: IReactorTime,
                 limits: ConnectionLimits | None = None):
        super().__init__(root, reactor=reactor)  # type: ignore[no-untyped-call]  # Twisted's, untyped
        self.clock = reactor
        self.limits = limits or ConnectionLimits()
        self.deadlines = FixedDelayTimers(reactor, REQUEST_DEADLINE)
        self.streams: EventStreams | None = None  # ended on shutdown
        self.on_request: Callable[[http.Request], None] | None = None  # metrics
        self.access_log = True  # False: log() only reports to on_request

    def log(self, request: http.Request) -> None:
        if self.on_request is not None:
            self.on_request(request)
        if self.access_log:
            super().log(request)

    def stopFactory(self) -> None:
        self.deadlines.stop()
        if self.streams is not None:
            self.streams.stop()
        super().stopFactory()


class RefusalLog:
    """
    Says whether to log a refusal of C{host}: at most once per C{interval} seconds per
    host, remembering at most C{max_hosts} hosts (the oldest are forgotten first).
    """

    def __init__(self, clock: IReactorTime, interval: float = REFUSAL_LOG_INTERVAL,
                 max_hosts: int = MAX_REFUSAL_HOSTS):
        self._clock = clock
        self._interval = interval
        self._max_hosts = max_hosts
        self._last: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def should_log(self, host: str) -> bool:
        now = self._clock.seconds()
        last = self._last.get(host)
        if last is not None and now - last < self._interval:
            return False
        self._last.pop(host, None)
        self._last[host] = now
        while len(self._last) > self._max_hosts:
            self._last.popitem(last=False)
        return True


class InternalSite(LimitedSite):
    """
    The internal listener (plain HTTP, for sipXconfig's redirector): the same resource
    tree and connection limits as the public Site, but only for C{http.trusted} hosts.
    Any other host gets 403 with the error document, whatever it asks for, and one log
    line per L{REFUSAL_LOG_INTERVAL}. Requests on it carry the C{sipx-user} identity
    (L{sipxcc.web.auth.Authenticator.internal} reads C{internal} to know).
    """

    internal = True

    def __init__(self, root: resource.IResource, reactor: IReactorTime, config: Config,
                 limits: ConnectionLimits | None = None):
        super().__init__(root, reactor, limits)
        self._config = config
        self.refusals = RefusalLog(reactor)

    def getResourceFor(self, request: server.Request) -> resource.IResource:
        request.site = self
        host = client_host(request)
        if not (host and self._config.is_trusted(host)):
            if self.refusals.should_log(host):
                log.warn("internal listener: refusing requests from {host}: not in "
                         "http.trusted (logged once per {interval:.0f} s)", host=host,
                         interval=REFUSAL_LOG_INTERVAL)
            return NOT_TRUSTED
        found: resource.IResource = super().getResourceFor(  # type: ignore[no-untyped-call]  # Twisted's, untyped
            request)
        return found


def build_site(config: Config, directory: UserDirectory, store: CallStore,
               reactor: IReactorTime, metrics: Metrics | None = None,
               idempotency_store: IdempotencyStore | None = None) -> LimitedSite:
    """The Site that both listeners serve, over the calls of C{store}; with C{metrics},
    counting its requests and serving C{/metrics} (unless C{http.metrics} is off).
    Idempotency keys go to C{idempotency_store} (shared by a cluster's nodes), else to
    this process' memory."""
    root = PathResource()
    root.putChild(b"health", Health(store.health))
    root.putChild(b"openapi.json", OpenAPIResource())
    context = WebContext(config=config, directory=directory,
                         store=store,
                         auth=Authenticator(config, directory, reactor),
                         idempotency=Idempotency(
                             idempotency_store or MemoryStore(reactor), reactor,
                             config.calls.idempotency_ttl))
    install(root, context)
    streams = install_streams(root, context, reactor)
    install_page(root, context)
    site = LimitedSite(root, reactor, ConnectionLimits(is_trusted=config.is_trusted))
    site.streams = streams
    if metrics is not None:
        site.on_request = metrics.http_request
        metrics.streams_open.set_function(lambda: len(streams))  # read when scraped
        if config.http.metrics:
            root.putChild(b"metrics", MetricsResource(context, metrics, config.http.metrics))
    site.displayTracebacks = False
    site.timeOut = REQUEST_TIMEOUT
    return site


def build_internal_site(site: LimitedSite, config: Config,
                        reactor: IReactorTime) -> InternalSite:
    """The internal listener's Site: C{site}'s resource tree and connection limits."""
    internal = InternalSite(site.resource, reactor, config, site.limits)
    internal.on_request = site.on_request
    internal.displayTracebacks = False
    internal.timeOut = REQUEST_TIMEOUT
    return internal
