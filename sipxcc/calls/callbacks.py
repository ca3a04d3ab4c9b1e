"""
Status webhooks (C{statusCallback=URL}): every status event of a call POSTed as JSON, in
order, retried with back-off for a bounded time, never holding up the call itself. Only
to the configured hosts and ports, to an address checked when connecting, and never
following a redirect.

Each document carries C{sequence} (1, 2, 3, ... per call, counting the documents sent, so a
receiver sees a gap if one was dropped) and C{event} (see L{sipxcc.calls.events}); a call
that asked for C{statusCallbackEvent} gets only those events. With a secret configured,
each delivery is signed: C{X-Sipxcc-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">}.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from sipxcc.calls.events import EventNamer
from sipxcc.hosts import ip_address
from sipxcc.logs import logger
from sipxcc.privatefile import SecretError as SecretError
from sipxcc.privatefile import read_private_line
from sipxcc.timers import Clock

if TYPE_CHECKING:
    from sipxcc.calls.call import Call, StatusEvent

log = logger(__name__)

Poster = Callable[[str, bytes, dict[bytes, bytes]], "defer.Deferred[int] | int"]
"""C{post(url, body, headers)}: delivers one document, gives its HTTP status."""

#: seconds to wait before each retry of one event; then it is given up
BACKOFF = (1, 2, 4, 8, 16)
#: events waiting per call beyond which the oldest are dropped
MAX_QUEUED = 200
#: the header that carries a delivery's signature
SIGNATURE_HEADER = b"X-Sipxcc-Signature"


#: shortest signing key accepted (bytes)
MIN_SECRET = 16


def read_secret(value: str | None) -> bytes | None:
    """
    The signing key of C{calls.callback_secret}: an absolute path names a file (its first
    line, which only its owner may read: mode 0600 or 0400), anything else is the key itself.
    """
    if value is None:
        return None
    if os.path.isabs(value):
        key = read_private_line(value, "calls.callback_secret")
    else:
        key = value.encode("utf-8")
    if len(key) < MIN_SECRET:
        raise SecretError(f"calls.callback_secret: the key is shorter than {MIN_SECRET} bytes")
    return key


def signature(secret: bytes, timestamp: int, body: bytes) -> bytes:
    """The C{X-Sipxcc-Signature} value: C{t=<timestamp>,v1=<hex HMAC-SHA256("<t>.<body>")>}."""
    stamp = b"%d" % timestamp
    digest = hmac.new(secret, stamp + b"." + body, hashlib.sha256).hexdigest()
    return b"t=" + stamp + b",v1=" + digest.encode("ascii")


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

    def __init__(self, hosts: Iterable[str], ports: Iterable[int] = (80, 443)):
        self.hosts = frozenset(h.lower().strip("[]").rstrip(".") for h in hosts)
        self.addresses = frozenset(a for a in map(ip_address, self.hosts) if a is not None)
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
            address = ip_address(text)
            if address is None:
                continue
            if address in self.addresses or (ip_address(host) is None and _public(address)):
                return str(address)
        raise CallbackRefused(f"{host} resolves to no allowed address "
                              f"({', '.join(resolved) or 'none'})")


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects one host name resolution into a Deferred list of address strings."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.done: defer.Deferred[list[str]] = defer.Deferred()

    def resolutionBegan(self, resolution: object) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.found.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolve(reactor: Any, host: str, timeout: float) -> defer.Deferred[list[str]]:
    """C{host}'s addresses (an address resolves to itself), within C{timeout} seconds."""
    if ip_address(host) is not None:
        return defer.succeed([host])
    receiver = _Addresses()
    reactor.nameResolver.resolveHostName(receiver, host, 0)
    return receiver.done.addTimeout(timeout, reactor)


@implementer(IAgentEndpointFactory)
class _PinnedEndpoints:
    """Connects to one already checked address whatever the URL's host resolves to now;
    TLS is still verified against the URL's host name."""

    def __init__(self, reactor: Any, address: str, timeout: float):
        self.reactor = reactor
        self.address = address
        self.timeout = timeout
        self.tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        endpoint: IStreamClientEndpoint = kind(self.reactor, self.address, uri.port,
                                               timeout=self.timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


def treq_poster(reactor: Any, policy: CallbackPolicy, timeout: float = 5.0) -> Poster:
    """
    A C{post(url, body) -> Deferred[int status]} built on treq with our reactor (its
    connections and its C{timeout} both): the
    URL checked against C{policy}, its host resolved once and the address checked, the
    connection made to that address, redirects never followed (a 3xx is returned as is).
    """
    from treq.client import HTTPClient

    def post(url: str, body: bytes,
             headers: dict[bytes, bytes] | None = None) -> defer.Deferred[int]:
        host, _ = policy.target(url)
        d = resolve(reactor, host, timeout)
        return d.addCallback(lambda addresses: send(url, body, policy.choose(host, addresses),
                                                    headers or {}))

    def send(url: str, body: bytes, address: str,
             extra: dict[bytes, bytes]) -> defer.Deferred[int]:
        agent = Agent.usingEndpointFactory(reactor, _PinnedEndpoints(reactor, address, timeout))
        headers: dict[bytes | str, list[bytes | str]] = {b"Content-Type": [b"application/json"]}
        headers.update((name, [value]) for name, value in extra.items())
        d = HTTPClient(agent).post(url, data=body, headers=headers, timeout=timeout,
                                   allow_redirects=False, reactor=reactor)
        return d.addCallback(drain)

    def drain(response: Any) -> defer.Deferred[int]:
        code: int = response.code
        content: defer.Deferred[bytes] = response.content()
        return content.addCallback(lambda _: code)
    return post


def event_document(call: Call, event: StatusEvent | None, sequence: int = 0,
                   name: str | None = None) -> dict[str, object]:
    """The JSON document of one status event (None: the end of the call)."""
    doc: dict[str, object] = {
        "id": call.id, "sequence": sequence, "event": name, "state": call.state,
        "mode": call.mode, "calling": call.request.calling, "called": call.request.called}
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
        self.sequence = 0  # documents numbered so far

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
        headers: dict[bytes, bytes] = {}
        if self.sender.secret is not None:
            now = int(self.sender.clock.seconds())
            headers[SIGNATURE_HEADER] = signature(self.sender.secret, now, body)
        d = defer.maybeDeferred(self.sender.post, self.url, body, headers)

        def done(status: int) -> None:
            if 200 <= status < 300:
                self.sender.delivered += 1
                self._next()
            else:  # a redirect too: it is not followed
                failed(f"HTTP {status}")

        def failed(reason: Failure | str) -> None:
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
                         reason=_why(reason))
                self.sender.dropped += 1
                self._next()
            else:
                log.debug("status callback to {url} failed ({reason}); retry in {delay} s",
                          url=self.url, delay=BACKOFF[tries],
                          reason=_why(reason))
                self.sender.clock.callLater(BACKOFF[tries], self._attempt, body, tries + 1)
        d.addCallbacks(done, failed)


def _why(reason: Failure | str) -> str:
    return reason.getErrorMessage() if isinstance(reason, Failure) else reason


class StatusCallbacks:
    """
    Attach to each new call that asked for a status callback (C{registry} observer).
    C{post(url, body, headers)} delivers one document; C{secret} (bytes or None) signs them.
    """

    def __init__(self, clock: Clock, post: Poster, secret: bytes | None = None):
        self.clock = clock
        self.post = post
        self.secret = secret
        self.delivered = 0
        self.dropped = 0
        self.failed = 0  # attempts that did not deliver (each retried or dropped)

    def attach(self, call: Call) -> None:
        url = call.request.status_callback
        if not url:
            return
        queue = _Queue(self, url)
        namer = EventNamer()
        wanted = call.request.status_callback_events  # None: every event

        def listener(call: Call, event: StatusEvent | None) -> None:
            name = namer.name(event, call.state)
            if wanted is not None and name not in wanted:
                return
            queue.sequence += 1
            document = event_document(call, event, queue.sequence, name)
            queue.push(json.dumps(document).encode())
        call.listen(listener)
