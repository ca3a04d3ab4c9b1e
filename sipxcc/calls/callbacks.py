"""
Status webhooks (C{statusCallback=URL}): every status event of a call POSTed as JSON, in
order, retried with back-off for a bounded time, never holding up the call itself. Only
to the configured hosts and ports, to an address checked when connecting, and never
following a redirect.
"""

from __future__ import annotations

import ipaddress
import json
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from sipxcc.logs import logger

log = logger(__name__)

#: seconds to wait before each retry of one event; then it is given up
BACKOFF = (1, 2, 4, 8, 16)
#: events waiting per call beyond which the oldest are dropped
MAX_QUEUED = 200


class CallbackRefused(Exception):
    """A status callback the policy forbids (port, host or address); never retried."""


class CallbackPolicy:
    """
    Where status callbacks may go. The URL's host must be one of C{hosts} (names or
    addresses) and its port (80/443 by default for http/https) one of C{ports}. The host
    is resolved once per delivery and the connection goes to the address checked:

      - an address listed in C{hosts} is always allowed;
      - an address that a listed I{name} resolves to is allowed only if it is public
        (not loopback, private, link-local, shared, reserved, unspecified or multicast),
        so a name in the allow-list cannot be pointed at an internal host later;
        to use an internal address, list that address itself.
    """

    def __init__(self, hosts, ports=(80, 443)):
        self.hosts = frozenset(h.lower().strip("[]").rstrip(".") for h in hosts)
        self.addresses = frozenset(a for a in map(_address, self.hosts) if a is not None)
        self.ports = frozenset(ports)

    def target(self, url: str) -> tuple[str, int]:
        """The URL's (host, port), or L{CallbackRefused} saying why it may not be used."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise CallbackRefused("not a valid URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise CallbackRefused("not an http(s) URL")
        host = host.lower().rstrip(".")
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        if host not in self.hosts:
            raise CallbackRefused(f"host {host} is not in calls.callback_hosts")
        if port not in self.ports:
            raise CallbackRefused(f"port {port} is not in calls.callback_ports")
        return host, port

    def choose(self, host: str, resolved: list[str]) -> str:
        """The first of C{host}'s C{resolved} addresses it may connect to."""
        for text in resolved:
            address = _address(text)
            if address is None:
                continue
            if address in self.addresses or (_address(host) is None and _public(address)):
                return str(address)
        raise CallbackRefused(f"{host} resolves to no allowed address "
                              f"({', '.join(resolved) or 'none'})")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _public(address) -> bool:
    return address.is_global and not address.is_multicast


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects one host name resolution into a Deferred list of address strings."""

    def __init__(self):
        self.found: list[str] = []
        self.done = defer.Deferred()

    def resolutionBegan(self, resolution) -> None:
        pass

    def addressResolved(self, address) -> None:
        self.found.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolve(reactor, host: str, timeout: float) -> defer.Deferred:
    """C{host}'s addresses (an address resolves to itself), within C{timeout} seconds."""
    if _address(host) is not None:
        return defer.succeed([host])
    receiver = _Addresses()
    reactor.nameResolver.resolveHostName(receiver, host, 0)
    return receiver.done.addTimeout(timeout, reactor)


@implementer(IAgentEndpointFactory)
class _PinnedEndpoints:
    """Connects to one already checked address whatever the URL's host resolves to now;
    TLS is still verified against the URL's host name."""

    def __init__(self, reactor, address: str, timeout: float):
        self.reactor = reactor
        self.address = address
        self.timeout = timeout
        self.tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri):
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        endpoint = kind(self.reactor, self.address, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


def treq_poster(reactor, policy: CallbackPolicy, timeout: float = 5.0) -> Callable:
    """
    A C{post(url, body) -> Deferred[int status]} built on treq with our reactor: the
    URL checked against C{policy}, its host resolved once and the address checked, the
    connection made to that address, redirects never followed (a 3xx is returned as is).
    """
    from treq.client import HTTPClient

    def post(url: str, body: bytes):
        host, _ = policy.target(url)
        d = resolve(reactor, host, timeout)
        d.addCallback(lambda addresses: send(url, body, policy.choose(host, addresses)))
        return d

    def send(url: str, body: bytes, address: str):
        agent = Agent.usingEndpointFactory(reactor, _PinnedEndpoints(reactor, address, timeout))
        d = HTTPClient(agent).post(url, data=body,
                                   headers={b"Content-Type": [b"application/json"]},
                                   timeout=timeout, allow_redirects=False)
        return d.addCallback(drain)

    def drain(response):
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
        self.refused = False

    def push(self, body: bytes) -> None:
        if self.refused:
            self.sender.dropped += 1
            return
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
            else:  # a redirect too: it is not followed
                failed(f"HTTP {status}")

        def failed(reason):
            self.sender.failed += 1
            if isinstance(reason, Failure) and reason.check(CallbackRefused):
                log.warn("status callback to {url} refused: {reason}; the call's events "
                         "are not sent", url=self.url, reason=reason.getErrorMessage())
                self.refused = True
                self.sender.dropped += 1 + len(self.waiting)
                self.waiting.clear()
                self.busy = False
            elif tries >= len(BACKOFF):
                log.warn("status callback to {url} given up: {reason}", url=self.url,
                         reason=getattr(reason, "getErrorMessage", lambda: reason)())
                self.sender.dropped += 1
                self._next()
            else:
                log.debug("status callback to {url} failed ({reason}); retry in {delay} s",
                          url=self.url, delay=BACKOFF[tries],
                          reason=getattr(reason, "getErrorMessage", lambda: reason)())
                self.sender.clock.callLater(BACKOFF[tries], self._attempt, body, tries + 1)
        d.addCallbacks(done, failed)


class StatusCallbacks:
    """Attach to each new call that asked for a status callback (C{registry} observer)."""

    def __init__(self, clock, post: Callable):
        self.clock = clock
        self.post = post
        self.delivered = 0
        self.dropped = 0
        self.failed = 0  # attempts that did not deliver (each retried or dropped)

    def attach(self, call) -> None:
        url = call.request.status_callback
        if not url:
            return
        queue = _Queue(self, url)

        def listener(call, event):
            queue.push(json.dumps(event_document(call, event)).encode())
        call.listen(listener)
