"""
``GET /metrics``: the daemon's counters in the Prometheus text format, from a private
C{CollectorRegistry} (one per daemon, so tests do not share counters).

What is counted, and where:

  - calls placed, finished (by mode and outcome), POST-to-answered and answered-to-connected
    times: from the call registry's event subscription;
  - calls in progress and retained, webhook deliveries and failures: read from the
    registry and the status callback sender when scraped (nothing to do per call);
  - SIP requests and responses sent and received, retransmissions and transaction
    timeouts: the SIP layer's L{sipxcc.sip.stats.SipStats} sink, plain integers indexed
    through dicts built once, so a message costs one dict lookup and one increment;
  - HTTP requests by route and status, and authentication failures (401, 403): the Site's
    request log hook;
  - event streams open: L{Metrics.streams_open}, a gauge the event stream code moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from twisted.web import http
from twisted.web.server import Request

from sipxcc.calls import events as names
from sipxcc.calls.call import Call
from sipxcc.calls.callbacks import StatusCallbacks
from sipxcc.calls.events import EventNamer
from sipxcc.calls.hub import CallEvent
from sipxcc.calls.registry import CallRegistry
from sipxcc.timers import Clock
from sipxcc.web.auth import AuthFailure, Principal
from sipxcc.web.callcontroller import ApiResource, WebContext
from sipxcc.web.reply import Reply

#: the SIP methods counted by name; any other is counted as C{other}
METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "REFER", "NOTIFY", "OPTIONS", "INFO",
           "UPDATE", "PRACK", "SUBSCRIBE", "MESSAGE", "REGISTER", "PUBLISH")
#: response classes: 1xx .. 6xx; anything else is C{other}
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")
#: the first path segments counted by name; anything else is C{other}
ROUTES = ("callcontroller", "calls", "health", "metrics", "openapi.json", "events",
          "sipxconfig")
#: what generate_latest writes, the text format 0.0.4, on every prometheus_client version
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
#: calls followed at once for the answer/connect times (more than calls.max_calls allows)
MAX_TRACKED = 1_000_000
#: seconds: the buckets of both call time histograms
TIME_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class _Tracked:
    """What the metrics remember of one call in progress."""

    __slots__ = ("namer", "answered")

    def __init__(self) -> None:
        self.namer = EventNamer()
        self.answered: float | None = None


class SipCounters:
    """
    The L{sipxcc.sip.stats.SipStats} sink. On the path of every SIP message a Prometheus
    counter's C{inc()} (a lock, a check) costs more than the rest of the hook, so the
    counts are plain integers in a list, each label set's index looked up in a dict built
    once; L{collect} turns them into counters when scraped.
    """

    def __init__(self, registry: CollectorRegistry):
        self.labels: list[tuple[str, str, str]] = []  # (metric, direction, method or class)
        self._sent: dict[bytes, int] = {}
        for method in METHODS:
            self._sent[method.encode()] = self._slot("requests", "sent", method)
        for cls in CLASSES:
            self._sent[b"SIP/2.0 " + cls[0].encode()] = self._slot("responses", "sent", cls)
        self._sent_other_request = self._slot("requests", "sent", "other")
        self._sent_other_response = self._slot("responses", "sent", "other")
        self._received_requests = {m: self._slot("requests", "received", m) for m in METHODS}
        self._received_other_request = self._slot("requests", "received", "other")
        self._received_responses = [self._slot("responses", "received", c) for c in CLASSES]
        self._received_other_response = self._slot("responses", "received", "other")
        self._retransmissions = self._slot("retransmissions", "", "")
        self._timeouts = {m: self._slot("timeouts", "", m) for m in METHODS}
        self._timeouts_other = self._slot("timeouts", "", "other")
        self.counts = [0] * len(self.labels)
        registry.register(self)

    def _slot(self, metric: str, direction: str, what: str) -> int:
        self.labels.append((metric, direction, what))
        return len(self.labels) - 1

    def sent(self, data: bytes) -> None:
        if data[:4] == b"SIP/":
            index = self._sent.get(data[:9], self._sent_other_response)
        else:
            space = data.find(b" ", 0, 16)  # -1: no method we know is that long
            index = self._sent.get(data[:space], self._sent_other_request) if space > 0 \
                else self._sent_other_request
        self.counts[index] += 1

    def received(self, message: object) -> None:
        method = getattr(message, "method", None)
        if method is not None:
            self.counts[self._received_requests.get(method, self._received_other_request)] += 1
            return
        index = getattr(message, "status", 0) // 100 - 1
        self.counts[self._received_responses[index] if 0 <= index < 6
                    else self._received_other_response] += 1

    def retransmitted(self) -> None:
        self.counts[self._retransmissions] += 1

    def timed_out(self, method: str) -> None:
        self.counts[self._timeouts.get(method, self._timeouts_other)] += 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily("sipxcc_sip_requests", "SIP requests, by direction "
                                       "and method", labels=("direction", "method"))
        responses = CounterMetricFamily("sipxcc_sip_responses", "SIP responses, by "
                                        "direction and class", labels=("direction", "class"))
        timeouts = CounterMetricFamily("sipxcc_sip_transaction_timeouts", "client "
                                       "transactions without a final response (Timer B/F)",
                                       labels=("method",))
        retransmissions = 0
        for (metric, direction, what), count in zip(self.labels, self.counts, strict=True):
            if metric == "requests":
                requests.add_metric((direction, what), count)
            elif metric == "responses":
                responses.add_metric((direction, what), count)
            elif metric == "timeouts":
                timeouts.add_metric((what,), count)
            else:
                retransmissions = count
        yield requests
        yield responses
        yield CounterMetricFamily("sipxcc_sip_retransmissions", "SIP requests and responses "
                                  "sent again (RFC 3261 section 17)", retransmissions)
        yield timeouts


class _Snapshot:
    """A collector that reads its values when scraped: C{read()} yields metric families."""

    def __init__(self, read: Callable[[], Iterable[CounterMetricFamily | GaugeMetricFamily]]):
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self._read()


class Metrics:
    """
    The daemon's metrics. Hook it up with L{follow} (the call registry), L{follow_callbacks}
    (the status callback sender) and C{ua.set_stats(metrics.sip)}; the Site calls
    L{http_request} for each request; L{render} is the scrape. C{clock} times the calls.
    """

    def __init__(self, clock: Clock, max_tracked: int = MAX_TRACKED):
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.sip = SipCounters(registry)
        self._placed = Counter("sipxcc_calls_placed", "calls placed, by mode",
                               ("mode",), registry=registry)
        self._finished = Counter("sipxcc_calls_finished", "calls over, by mode and outcome",
                                 ("mode", "outcome"), registry=registry)
        self._answer_time = Histogram(
            "sipxcc_call_answer_seconds", "from the POST to the calling user answering",
            buckets=TIME_BUCKETS, registry=registry)
        self._connect_time = Histogram(
            "sipxcc_call_connect_seconds", "from the calling user answering to the two "
            "users connected", buckets=TIME_BUCKETS, registry=registry)
        self._http = Counter("sipxcc_http_requests", "HTTP requests, by route and status",
                             ("route", "code"), registry=registry)
        self._http_children: dict[tuple[str, int], Callable[[], None]] = {}
        self._auth_failures = Counter("sipxcc_http_auth_failures",
                                      "HTTP requests refused 401 or 403",
                                      registry=registry).inc
        #: event streams (server-sent events) open now: the stream code calls inc()/dec()
        self.streams_open = Gauge("sipxcc_event_streams_open", "event streams open",
                                  registry=registry)
        self._placed_children: dict[str, Callable[[], None]] = {}
        self._finished_children: dict[tuple[str, str], Callable[[], None]] = {}
        self.max_tracked = max_tracked
        self.tracked: dict[str, _Tracked] = {}
        self._calls: Callable[[], tuple[int, int]] | None = None
        self._callbacks: Callable[[], tuple[int, int, int]] | None = None
        registry.register(_Snapshot(self._snapshot))

    # Hooking up

    def follow(self, registry: CallRegistry) -> Callable[[], None]:
        """Count the calls of C{registry}; returns the unsubscribe."""
        self._calls = lambda: (registry.active_count, registry.retained_count)
        unsubscribe: Callable[[], None] = registry.subscribe(self.on_event)
        return unsubscribe

    def follow_callbacks(self, callbacks: StatusCallbacks) -> None:
        """Report the deliveries of C{callbacks} when scraped."""
        self._callbacks = lambda: (callbacks.delivered, callbacks.failed, callbacks.dropped)

    # Calls

    def on_event(self, call: Call, event: CallEvent) -> None:
        """A call's event (a registry subscriber)."""
        tracked = self.tracked.get(call.id)
        if event.seq == 1:
            inc = self._placed_children.get(call.mode)
            if inc is None:
                inc = self._placed_children[call.mode] = self._placed.labels(call.mode).inc
            inc()
            if event.status is not None and len(self.tracked) < self.max_tracked:
                tracked = self.tracked[call.id] = _Tracked()
        if event.status is None:
            self.tracked.pop(call.id, None)
            key = (call.mode, call.state)  # a few modes and outcomes: bound children
            inc = self._finished_children.get(key)
            if inc is None:
                inc = self._finished_children[key] = self._finished.labels(*key).inc
            inc()
            return
        if tracked is None:
            return
        name = tracked.namer.name(event.status, call.state)
        if name == names.ANSWERED and tracked.answered is None:
            tracked.answered = self.clock.seconds()
            self._answer_time.observe(max(tracked.answered - call.created, 0.0))
        elif name == names.CONNECTED and tracked.answered is not None:
            self._connect_time.observe(max(self.clock.seconds() - tracked.answered, 0.0))
            del self.tracked[call.id]  # nothing more to time

    # HTTP

    def http_request(self, request: http.Request) -> None:
        """A request was answered (the Site's log hook)."""
        code = int(request.code or 0)
        if not 100 <= code <= 599:
            code = 0
        if code in (401, 403):
            self._auth_failures()
        # a Site's requests are twisted.web.server.Request: process() walked the path into
        # prepath (at least one segment, the root not being a leaf) before any answer
        segments = getattr(request, "prepath", None)
        first = segments[0].decode("latin-1") if segments else ""
        route = first if first in ROUTES else "other"
        inc = self._http_children.get((route, code))
        if inc is None:
            inc = self._http_children[(route, code)] = self._http.labels(route, str(code)).inc
        inc()

    # Scraping

    def _snapshot(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        active, retained = self._calls() if self._calls is not None else (0, 0)
        yield GaugeMetricFamily("sipxcc_calls_in_progress", "calls in progress", active)
        yield GaugeMetricFamily("sipxcc_calls_retained", "finished calls still queryable",
                                retained)
        delivered, failed, dropped = (self._callbacks() if self._callbacks is not None
                                      else (0, 0, 0))
        yield CounterMetricFamily("sipxcc_webhook_deliveries", "status callbacks delivered",
                                  delivered)
        yield CounterMetricFamily("sipxcc_webhook_failures", "status callback attempts that "
                                  "did not deliver (each retried or dropped)", failed)
        yield CounterMetricFamily("sipxcc_webhook_dropped", "status callbacks given up",
                                  dropped)

    def render(self) -> bytes:
        """The scrape: every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsResource(ApiResource):
    """
    C{GET /metrics}: the scrape, for trusted hosts and/or authenticated users listed in
    C{users.agents}, as C{http.metrics} says; anyone else authenticated gets 403.
    """

    allowed = (b"GET",)

    def __init__(self, context: WebContext, metrics: Metrics, access: frozenset[str]):
        super().__init__(context)
        self.metrics = metrics
        self.access = access

    def handle(self, request: Request, principal: Principal) -> Reply:
        if not self.may_read(principal):
            raise AuthFailure(403, "Not allowed to read the metrics")
        return Reply(200, self.metrics.render(), CONTENT_TYPE)  # send() adds no-store

    def may_read(self, principal: Principal) -> bool:
        if principal.trusted:
            return "trusted" in self.access
        user = principal.user
        return ("agents" in self.access and user is not None
                and bool(user.names & self.context.config.users.agents))
