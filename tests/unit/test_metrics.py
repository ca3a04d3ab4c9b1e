"""
``GET /metrics``: what the counters say after calls, SIP messages and HTTP requests (read
back through prometheus_client's own parser, as a scraper would), who may read them, and
that each daemon's counters are its own.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.resource import getChildForRequest

from sipxcc.calls.registry import CallRegistry
from sipxcc.config import ConfigError, load_config
from sipxcc.web.metrics import Metrics, MetricsResource
from sipxcc.web.site import build_site
from tests.unit.sipfakes import FakeNetwork, answer
from tests.unit.test_registry import FakeFlow, req
from tests.unit.webfakes import WebHarness, WebRequest, basic, make_config

CALL_ID = "abc@127.0.0.1"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape by (name, sorted labels), parsed as Prometheus would."""
    text = metrics.render().decode("utf-8")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: Metrics, name: str, **labels) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def followed_registry(max_tracked: int = 1000):
    clock = Clock()
    clock.advance(1000)
    registry = CallRegistry(clock, {"REFER": FakeFlow, "INVITE": FakeFlow})
    metrics = Metrics(clock, max_tracked=max_tracked)
    metrics.follow(registry)
    return clock, registry, metrics


def line(clock, call, method, status_line, call_id=CALL_ID):
    call.record(int(clock.seconds() * 1000), call_id, method, status_line)


# --- calls ---------------------------------------------------------------------------------

def test_a_call_that_connects_is_counted_placed_finished_and_timed():
    clock, registry, metrics = followed_registry()
    call = registry.place(req())
    assert value(metrics, "sipxcc_calls_in_progress") == 1
    line(clock, call, "INVITE", "SIP/2.0 180 Ringing")
    clock.advance(3)
    line(clock, call, "INVITE", "SIP/2.0 200 OK")  # the calling user answered
    clock.advance(2)
    line(clock, call, "REFER", "SIP/2.0 202 Accepted")
    line(clock, call, "NOTIFY", "SIP/2.0 200 OK")  # the called user answered
    call.flow.end()

    assert value(metrics, "sipxcc_calls_placed_total", mode="REFER") == 1
    assert value(metrics, "sipxcc_calls_finished_total", mode="REFER", outcome="ended") == 1
    assert value(metrics, "sipxcc_calls_in_progress") == 0
    assert value(metrics, "sipxcc_calls_retained") == 1
    assert value(metrics, "sipxcc_call_answer_seconds_count") == 1
    assert value(metrics, "sipxcc_call_answer_seconds_sum") == 3
    assert value(metrics, "sipxcc_call_answer_seconds_bucket", le="2.0") == 0
    assert value(metrics, "sipxcc_call_answer_seconds_bucket", le="5.0") == 1
    assert value(metrics, "sipxcc_call_connect_seconds_count") == 1
    assert value(metrics, "sipxcc_call_connect_seconds_sum") == 2
    assert metrics.tracked == {}


def test_a_call_that_is_never_answered_is_not_timed():
    clock, registry, metrics = followed_registry()
    call = registry.place(req(method="INVITE"))
    line(clock, call, "INVITE", "SIP/2.0 486 Busy Here")
    call.flow.end()
    assert value(metrics, "sipxcc_calls_placed_total", mode="INVITE") == 1
    assert value(metrics, "sipxcc_calls_finished_total", mode="INVITE", outcome="ended") == 1
    assert value(metrics, "sipxcc_call_answer_seconds_count") == 0
    assert metrics.tracked == {}


def test_the_calls_followed_for_their_times_are_bounded():
    clock, registry, metrics = followed_registry(max_tracked=2)
    calls = [registry.place(req(called=f"user{n}@sipx.test")) for n in range(4)]
    for call in calls:
        line(clock, call, "INVITE", "SIP/2.0 180 Ringing", call_id=call.id)
    assert len(metrics.tracked) == 2
    for call in calls:
        line(clock, call, "INVITE", "SIP/2.0 200 OK", call_id=call.id)
        call.flow.end()
    # every call is counted; only the followed ones are timed
    assert value(metrics, "sipxcc_calls_placed_total", mode="REFER") == 4
    assert value(metrics, "sipxcc_calls_finished_total", mode="REFER", outcome="ended") == 4
    assert value(metrics, "sipxcc_call_answer_seconds_count") == 2
    assert metrics.tracked == {}


def test_two_daemons_count_apart():
    _, first_registry, first = followed_registry()
    _, _, second = followed_registry()
    first_registry.place(req())
    assert value(first, "sipxcc_calls_in_progress") == 1
    assert value(second, "sipxcc_calls_in_progress") == 0


# --- SIP -------------------------------------------------------------------------------------

def counted_network():
    net = FakeNetwork()
    metrics = Metrics(net.clock)
    net.ua.set_stats(metrics.sip)
    return net, metrics


def options(net):
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                 "<sip:user1@sipx.test>")
    results: list = []
    net.ua.send(request, net.ua.proxy_target).deferred.addBoth(results.append)
    [sent] = net.sent_messages()
    return sent, results


def test_sip_requests_and_responses_are_counted_by_method_and_class():
    net, metrics = counted_network()
    sent, _ = options(net)
    net.deliver(answer(sent, 100, "Trying"))
    net.deliver(answer(sent, 200, "OK", "t1"))
    assert value(metrics, "sipxcc_sip_requests_total", direction="sent", method="OPTIONS") == 1
    assert value(metrics, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "1xx"}) == 1
    assert value(metrics, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "2xx"}) == 1
    assert value(metrics, "sipxcc_sip_retransmissions_total") == 0


def test_a_received_request_and_our_answer_are_counted():
    net, metrics = counted_network()
    sent, _ = options(net)
    # the proxy sends us a request out of any dialog: we answer it
    request = sent.to_bytes().replace(b"OPTIONS sip:user1@sipx.test",
                                      b"OPTIONS sip:callcontroller@127.0.0.1", 1)
    request = request.replace(b"z9hG4bK", b"z9hG4bKother", 1)
    net.deliver(request)
    assert value(metrics, "sipxcc_sip_requests_total", direction="received",
                 method="OPTIONS") == 1
    assert sum(v for (name, labels), v in samples(metrics).items()
               if name == "sipxcc_sip_responses_total" and ("direction", "sent") in labels) == 1


def test_retransmissions_and_a_timeout_are_counted():
    net, metrics = counted_network()
    _, results = options(net)
    resent = 0
    for _ in range(33 * 4):  # Timer E at 0.5, 1.5, 3.5, 7.5, ...; Timer F at 32
        net.clock.advance(0.25)
        resent += len(net.sent())
    assert resent > 3
    assert len(results) == 1  # the 408
    assert value(metrics, "sipxcc_sip_retransmissions_total") == resent
    assert value(metrics, "sipxcc_sip_requests_total", direction="sent",
                 method="OPTIONS") == resent + 1
    assert value(metrics, "sipxcc_sip_transaction_timeouts_total", method="OPTIONS") == 1


def test_an_unknown_method_and_a_strange_status_count_as_other():
    metrics = Metrics(Clock())
    metrics.sip.sent(b"FOO sip:x SIP/2.0\r\n\r\n")
    metrics.sip.sent(b"AVERYLONGMETHODNAMEINDEED sip:x SIP/2.0\r\n\r\n")
    metrics.sip.sent(b"SIP/2.0 999 Odd\r\n\r\n")

    class Odd:
        status = 999
    metrics.sip.received(Odd())
    assert value(metrics, "sipxcc_sip_requests_total", direction="sent", method="other") == 2
    assert value(metrics, "sipxcc_sip_responses_total", direction="sent",
                 **{"class": "other"}) == 1
    assert value(metrics, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "other"}) == 1


# --- HTTP and who may read /metrics -----------------------------------------------------------

class MetricsHarness(WebHarness):
    """The resource tree on fakes with /metrics; C{http.metrics} is C{access}."""

    def __init__(self, access=frozenset({"trusted", "agents"}), **config_options):
        super().__init__(**config_options)
        self.metrics = Metrics(self.clock)
        context = getChildForRequest(self.root, WebRequest(b"GET", b"/calls")).context
        self.root.putChild(b"metrics", MetricsResource(context, self.metrics, access))

    def scrape(self, **options) -> WebRequest:
        request = self.request(b"GET", "/metrics", **options)
        request.code = request.responseCode  # as twisted.web's Request has it
        self.metrics.http_request(request)
        return request


def test_a_trusted_host_reads_the_metrics_in_prometheus_format():
    web = MetricsHarness()
    request = web.scrape(client="127.0.0.1")
    assert request.responseCode == 200
    assert request.header(b"content-type").startswith(b"text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(request.body.decode())}
    assert {"sipxcc_calls_placed", "sipxcc_sip_requests", "sipxcc_http_requests",
            "sipxcc_calls_in_progress", "sipxcc_event_streams_open"} <= names


def test_an_agent_reads_the_metrics_and_another_user_is_refused():
    web = MetricsHarness()
    assert web.scrape(headers=basic("user3")).responseCode == 200  # in users.agents
    refused = web.scrape(headers=basic("user1"))
    assert refused.responseCode == 403
    assert b"sipxcc_" not in refused.body
    assert web.scrape().responseCode == 401  # no credentials: challenged
    assert value(web.metrics, "sipxcc_http_requests_total", route="metrics", code="200") == 1
    assert value(web.metrics, "sipxcc_http_requests_total", route="metrics", code="403") == 1
    assert value(web.metrics, "sipxcc_http_auth_failures_total") == 2


def test_access_trusted_only_refuses_agents_and_agents_only_refuses_trusted_hosts():
    trusted_only = MetricsHarness(access=frozenset({"trusted"}))
    assert trusted_only.scrape(headers=basic("user3")).responseCode == 403
    assert trusted_only.scrape(client="127.0.0.1").responseCode == 200
    agents_only = MetricsHarness(access=frozenset({"agents"}))
    assert agents_only.scrape(client="127.0.0.1").responseCode == 403
    assert agents_only.scrape(headers=basic("user3")).responseCode == 200


@pytest.mark.parametrize(("access", "code"), [(frozenset({"trusted", "agents"}), 200),
                                              (frozenset(), 404)])
def test_the_site_serves_metrics_unless_it_is_off(access, code):
    web = WebHarness()
    config = make_config()
    config = type(config)(**{**config.__dict__,
                             "http": type(config.http)(**{**config.http.__dict__,
                                                          "metrics": access})})
    metrics = Metrics(web.clock)
    site = build_site(config, web.directory, web.call_store, web.clock, metrics)
    request = WebRequest(b"GET", b"/metrics", client="127.0.0.1")
    request.prepath = []
    request.render(getChildForRequest(site.resource, request))
    assert request.responseCode == code
    request.code = request.responseCode  # as twisted.web's Request has it
    site.log(request)  # the Site's request log hook counts it
    assert value(metrics, "sipxcc_http_requests_total", route="metrics", code=str(code)) == 1
    site.deadlines.stop()


def test_the_event_stream_gauge_is_what_the_stream_code_sets():
    metrics = Metrics(Clock())
    metrics.streams_open.inc()
    metrics.streams_open.inc()
    metrics.streams_open.dec()
    assert value(metrics, "sipxcc_event_streams_open") == 1


MINIMAL = """\
[sip]
domain = sipx.test
proxy = sip:127.0.0.1:5080;lr
[users]
directory = validusers.xml
"""


@pytest.mark.parametrize(("text", "expected"), [
    ("", {"trusted", "agents"}), ("off", set()), ("agents", {"agents"}),
    ("Trusted, agents", {"trusted", "agents"})])
def test_http_metrics_config(tmp_path, text, expected):
    path = tmp_path / "sipxcc.ini"
    path.write_text(MINIMAL + (f"[http]\nmetrics = {text}\n" if text else ""))
    (tmp_path / "validusers.xml").write_text("<validusers/>")
    assert load_config(str(path)).http.metrics == expected


@pytest.mark.parametrize("text", ["everyone", "off trusted"])
def test_a_bad_http_metrics_value_names_the_key(tmp_path, text):
    path = tmp_path / "sipxcc.ini"
    path.write_text(MINIMAL + f"[http]\nmetrics = {text}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "http.metrics" in str(caught.value)


def test_http_labels_are_a_fixed_set_whatever_the_paths_and_codes():
    metrics = Metrics(Clock())

    class Answered:
        def __init__(self, path: bytes, code: int):
            self.prepath, self.postpath, self.code = [path], [], code
    for n in range(2000):
        metrics.http_request(Answered(b"random%d" % n, 1000 + n))
    metrics.http_request(Answered(b"calls", 200))
    http = {labels for (name, labels) in samples(metrics)
            if name == "sipxcc_http_requests_total"}
    assert http == {(("code", "0"), ("route", "other")), (("code", "200"), ("route", "calls"))}
    assert value(metrics, "sipxcc_http_requests_total", route="other", code="0") == 2000


def test_webhook_deliveries_and_failures_are_read_from_the_sender_when_scraped():
    metrics = Metrics(Clock())

    class Sender:
        delivered, failed, dropped = 0, 0, 0
    sender = Sender()
    metrics.follow_callbacks(sender)
    sender.delivered, sender.failed, sender.dropped = 5, 3, 1
    assert value(metrics, "sipxcc_webhook_deliveries_total") == 5
    assert value(metrics, "sipxcc_webhook_failures_total") == 3
    assert value(metrics, "sipxcc_webhook_dropped_total") == 1


# --- what a scraper is shown, exactly ---------------------------------------------------------

HELP = [
    ("sipxcc_sip_requests_total", "counter", "SIP requests, by direction and method"),
    ("sipxcc_sip_responses_total", "counter", "SIP responses, by direction and class"),
    ("sipxcc_sip_retransmissions_total", "counter",
     "SIP requests and responses sent again (RFC 3261 section 17)"),
    ("sipxcc_sip_transaction_timeouts_total", "counter",
     "client transactions without a final response (Timer B/F)"),
    ("sipxcc_calls_placed_total", "counter", "calls placed, by mode"),
    ("sipxcc_calls_finished_total", "counter", "calls over, by mode and outcome"),
    ("sipxcc_call_answer_seconds", "histogram", "from the POST to the calling user answering"),
    ("sipxcc_call_connect_seconds", "histogram",
     "from the calling user answering to the two users connected"),
    ("sipxcc_http_requests_total", "counter", "HTTP requests, by route and status"),
    ("sipxcc_http_auth_failures_total", "counter", "HTTP requests refused 401 or 403"),
    ("sipxcc_event_streams_open", "gauge", "event streams open"),
    ("sipxcc_calls_in_progress", "gauge", "calls in progress"),
    ("sipxcc_calls_retained", "gauge", "finished calls still queryable"),
    ("sipxcc_webhook_deliveries_total", "counter", "status callbacks delivered"),
    ("sipxcc_webhook_failures_total", "counter",
     "status callback attempts that did not deliver (each retried or dropped)"),
    ("sipxcc_webhook_dropped_total", "counter", "status callbacks given up"),
]
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "REFER", "NOTIFY", "OPTIONS", "INFO", "UPDATE",
           "PRACK", "SUBSCRIBE", "MESSAGE", "REGISTER", "PUBLISH", "other"]
CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "other"]
BUCKETS = ["0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "20.0", "30.0", "60.0", "120.0",
           "300.0", "+Inf"]


def test_a_fresh_scrape_shows_every_metric_with_its_help_and_zero_everywhere():
    text = Metrics(Clock()).render().decode("utf-8")
    comments = [line for line in text.splitlines()  # _created: as the client version has it
                if line.startswith("#") and not line.split()[2].endswith("_created")]
    assert comments == [line for name, kind, help in HELP
                        for line in (f"# HELP {name} {help}", f"# TYPE {name} {kind}")]
    found = samples(Metrics(Clock()))
    assert {key for key in found if not key[0].endswith("_created")} == {
        *{("sipxcc_sip_requests_total", (("direction", d), ("method", m)))
          for d in ("received", "sent") for m in METHODS},
        *{("sipxcc_sip_responses_total", (("class", c), ("direction", d)))
          for d in ("received", "sent") for c in CLASSES},
        *{("sipxcc_sip_transaction_timeouts_total", (("method", m),)) for m in METHODS},
        *{(f"sipxcc_call_{what}_seconds_bucket", (("le", le),))
          for what in ("answer", "connect") for le in BUCKETS},
        *{(f"sipxcc_call_{what}_seconds_{end}", ())
          for what in ("answer", "connect") for end in ("count", "sum")},
        *{(name, ()) for name in (
            "sipxcc_sip_retransmissions_total", "sipxcc_http_auth_failures_total",
            "sipxcc_event_streams_open", "sipxcc_calls_in_progress", "sipxcc_calls_retained",
            "sipxcc_webhook_deliveries_total", "sipxcc_webhook_failures_total",
            "sipxcc_webhook_dropped_total")}}
    assert {v for key, v in found.items() if not key[0].endswith("_created")} == {0.0}


def test_the_scrape_is_served_once_marked_no_store_and_a_refusal_says_why():
    web = MetricsHarness()
    scrape = web.scrape(client="127.0.0.1")
    assert scrape.headers(b"cache-control") == [b"no-store"]
    assert scrape.header(b"content-type") == b"text/plain; version=0.0.4; charset=utf-8"
    refused = web.scrape(headers={**basic("user1"), b"Accept": b"application/json"})
    assert refused.responseCode == 403
    assert json.loads(refused.body) == {"error-flag": "ERROR", "error-code": 403,
                                        "error-text": "Not allowed to read the metrics"}


def test_sip_messages_of_other_methods_and_classes_are_counted_one_by_one():
    metrics = Metrics(Clock())
    sip = metrics.sip
    for _ in range(2):
        sip.sent(b"SIP/2.0 200 OK\r\n\r\n")
        sip.sent(b"ACK sip:a SIP/2.0\r\n\r\n")  # the request line is shorter than 16 bytes
        sip.received(type("Request", (), {"method": "FOO"})())
        sip.received(type("Response", (), {"status": 700})())
        sip.timed_out("FOO")
    sip.timed_out("INVITE")
    assert value(metrics, "sipxcc_sip_responses_total", direction="sent", **{"class": "2xx"}) == 2
    assert value(metrics, "sipxcc_sip_requests_total", direction="sent", method="ACK") == 2
    assert value(metrics, "sipxcc_sip_requests_total", direction="received",
                 method="other") == 2
    assert value(metrics, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "other"}) == 2
    assert value(metrics, "sipxcc_sip_transaction_timeouts_total", method="other") == 2
    assert value(metrics, "sipxcc_sip_transaction_timeouts_total", method="INVITE") == 1
    assert sum(samples(metrics).values()) - sum(
        v for (name, _), v in samples(metrics).items() if name.endswith("_created")) == 11


class Answered:
    """What the Site's log hook is given: the path split by twisted.web, and the status."""

    def __init__(self, code, prepath=()):
        self.code, self.prepath = code, list(prepath)


@pytest.mark.parametrize(("code", "label"), [(99, "0"), (100, "100"), (599, "599"),
                                             (600, "0"), (None, "0")])
def test_http_statuses_outside_100_to_599_are_counted_as_0(code, label):
    metrics = Metrics(Clock())
    metrics.http_request(Answered(code, prepath=[b"calls"]))
    assert value(metrics, "sipxcc_http_requests_total", route="calls", code=label) == 1


def test_a_request_without_a_path_counts_as_other():
    metrics = Metrics(Clock())
    metrics.http_request(Answered(400))
    assert value(metrics, "sipxcc_http_requests_total", route="other", code="400") == 1


def test_answer_and_connect_times_below_a_second_and_up_to_connected_only():
    clock, registry, metrics = followed_registry()
    call = registry.place(req())
    clock.advance(0.25)
    line(clock, call, "INVITE", "SIP/2.0 200 OK")  # the calling user answered
    clock.advance(0.5)
    line(clock, call, "REFER", "SIP/2.0 202 Accepted")  # transferring: not yet connected
    clock.advance(0.125)
    line(clock, call, "NOTIFY", "SIP/2.0 200 OK")  # the called user answered
    assert value(metrics, "sipxcc_call_answer_seconds_sum") == 0.25
    assert value(metrics, "sipxcc_call_connect_seconds_count") == 1
    assert value(metrics, "sipxcc_call_connect_seconds_sum") == 0.625
