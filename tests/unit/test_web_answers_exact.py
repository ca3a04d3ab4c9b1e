"""
The exact answers of the small resources (the page, its static files, /openapi.json, error
documents) and of the Sites as built for the daemon: every header a browser or client acts
on, the error texts, and the listeners sharing their limits.
"""

from __future__ import annotations

import json

import pytest
from lxml import etree
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import getChildForRequest

from sipxcc.calls.errors import CallError
from sipxcc.calls.store import MemoryCallStore
from sipxcc.web import errors
from sipxcc.web.callcontroller import WebContext
from sipxcc.web.metrics import Metrics
from sipxcc.web.openapi import OpenAPIResource
from sipxcc.web.page import CSP, install_page
from sipxcc.web.site import REQUEST_TIMEOUT, LimitedSite, build_internal_site, build_site
from tests.unit.test_web_limits import GET_HEALTH, Client
from tests.unit.webfakes import (
    FakeDirectory,
    FakeRegistry,
    WebHarness,
    WebRequest,
    basic,
    make_config,
)

NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"
PAGE_HEADERS = [(b"content-security-policy", CSP), (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


@pytest.fixture
def web():
    harness = WebHarness()
    install_page(harness.root, WebContext(harness.config, harness.directory,
                                          harness.registry, harness.auth))
    harness.root.putChild(b"openapi.json", OpenAPIResource(b'{"openapi": "3.1.0"}'))
    return harness


def get(resource_root, method: bytes, uri: bytes, **options) -> WebRequest:
    request = WebRequest(method, uri, **options)
    request.prepath = []
    request.render(getChildForRequest(resource_root, request))
    return request


def document(request) -> tuple[int, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, int(root.find(NS + "error-code").text), \
        root.find(NS + "error-text").text


def test_the_page_and_its_files_carry_the_browser_headers(web):
    page = get(web.root, b"GET", b"/", headers=basic("user1"))
    assert [(name, page.header(name)) for name, _ in PAGE_HEADERS] == PAGE_HEADERS
    script = get(web.root, b"GET", b"/static/app.js")
    assert script.header(b"cache-control") == b"no-cache"
    assert script.header(b"content-type") == b"text/javascript; charset=utf-8"
    assert [(name, script.header(name)) for name, _ in PAGE_HEADERS] == PAGE_HEADERS


def test_below_the_page_there_is_nothing(web):
    assert get(web.root, b"GET", b"//", headers=basic("user1")).responseCode == 200  # "/" + ""
    assert document(get(web.root, b"GET", b"//extra", headers=basic("user1"))) == (
        404, 404, "Not found")


def test_the_openapi_description_and_what_else_may_be_asked_of_it(web):
    spec = get(web.root, b"GET", b"/openapi.json")
    assert spec.body == b'{"openapi": "3.1.0"}' and spec.responseCode in (None, 200)
    assert spec.header(b"content-type") == b"application/json; charset=utf-8"
    assert spec.header(b"cache-control") == b"no-cache"
    assert get(web.root, b"HEAD", b"/openapi.json").responseCode in (None, 200)
    refused = get(web.root, b"DELETE", b"/openapi.json")
    assert (refused.responseCode, refused.body) == (405, b"Method not allowed\n")
    assert [refused.header(h) for h in (b"allow", b"content-type", b"cache-control")] == [
        b"GET, HEAD", b"text/plain; charset=utf-8", b"no-store"]


def test_api_answers_state_their_length(web):
    calls = get(web.root, b"GET", b"/calls", client="127.0.0.1")
    assert calls.header(b"content-length") == b"%d" % len(calls.body)


def test_json_errors_keep_their_status_and_headers(web):
    web.registry.error = errors.TooManyCalls("Too many calls")
    busy = get(web.root, b"POST", b"/callcontroller/user1/user2", client="127.0.0.1",
               headers={b"Accept": b"application/json"})
    assert busy.responseCode == 503 and busy.header(b"retry-after") == b"5"
    assert json.loads(busy.body)["error-code"] == 503
    challenged = get(web.root, b"GET", b"/calls", headers={b"Accept": b"application/json"})
    assert challenged.responseCode == 401 and challenged.headers(b"www-authenticate")


def test_a_call_error_without_its_own_status_is_500_with_its_text(web):
    web.registry.error = CallError("the call could not be placed")
    answer = get(web.root, b"POST", b"/callcontroller/user1/user2", client="127.0.0.1")
    assert document(answer) == (500, 500, "the call could not be placed")


def test_an_error_resource_answers_its_code_and_text_never_cached():
    request = WebRequest(b"GET", b"/x")
    body = errors.ErrorResource(418, "Short and stout").render(request)
    request.written.append(body)
    assert document(request) == (418, 418, "Short and stout")
    assert request.header(b"cache-control") == b"no-store"


def test_the_root_itself_with_a_uri_of_exactly_the_limit_is_404_one_more_414(web):
    query = b"/?" + b"a" * (errors.MAX_URI - 2)
    assert len(query) == errors.MAX_URI
    at_limit = WebRequest(b"GET", query)
    at_limit.written.append(web.root.render(at_limit))
    assert document(at_limit)[:2] == (404, 404)
    over = WebRequest(b"GET", query + b"a")
    over.written.append(web.root.render(over))
    assert document(over) == (414, 414, "Request URI too long")


# --- the Sites as built for the daemon -------------------------------------------------------

def daemon_sites(**caps):
    reactor = MemoryReactorClock()
    config = make_config()
    metrics = Metrics(reactor)
    site = build_site(config, FakeDirectory(), MemoryCallStore(FakeRegistry()), reactor, metrics)
    if caps:
        from sipxcc.web.limits import ConnectionLimits
        site.limits = ConnectionLimits(**caps)
    internal = build_internal_site(site, config, reactor)
    site.startFactory()
    internal.startFactory()
    return site, internal, metrics


def test_the_internal_listener_serves_the_same_tree_counted_and_without_tracebacks():
    site, internal, metrics = daemon_sites()
    client = Client(internal, host="127.0.0.1")
    client.send(GET_HEALTH)
    assert client.output().startswith(b"HTTP/1.1 200 ") and client.output().endswith(b"ok\n")
    client.send(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.output().count(b"HTTP/1.1 200 ") == 2
    text = metrics.render().decode()
    assert 'sipxcc_http_requests_total{code="200",route="health"} 1.0' in text
    assert 'sipxcc_http_requests_total{code="200",route="openapi.json"} 1.0' in text
    assert internal.displayTracebacks is False and internal.timeOut == REQUEST_TIMEOUT
    internal.stopFactory()
    site.stopFactory()


def test_both_listeners_share_one_set_of_connection_limits():
    site, internal, _ = daemon_sites(total=1, per_host=1)
    Client(site)
    refused = Client(internal, host="127.0.0.1", port=40001)
    assert refused.output().startswith(b"HTTP/1.1 503 ")


def test_the_daemons_site_honours_idempotency_keys():
    _, internal, _ = daemon_sites()
    client = Client(internal, host="127.0.0.1")  # a trusted host on the internal listener
    post = (b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
            b"Idempotency-Key: k1\r\nContent-Length: 0\r\n\r\n")
    client.send(post)
    client.send(post)
    assert client.output().count(b"HTTP/1.1 200 ") == 2
    assert client.output().lower().count(b"idempotent-replayed: true") == 1


def test_a_bare_site_starts_and_stops():
    site = LimitedSite(WebHarness().root, MemoryReactorClock())
    site.startFactory()
    site.stopFactory()
    assert site.streams is None


@pytest.mark.parametrize("origin", [b"https://sipx.test/page", b"https://", b"ftp://sipx.test",
                                    b"null"])
def test_a_browser_post_from_an_origin_that_is_not_ours_is_refused(web, origin):
    answer = get(web.root, b"POST", b"/callcontroller/user1/user2", client="127.0.0.1",
                 headers={b"Host": b"sipx.test", b"Origin": origin})
    assert document(answer) == (403, 403, "Cross-origin request refused")
    same = get(web.root, b"POST", b"/callcontroller/user1/user2", client="127.0.0.1",
               headers={b"Host": b"sipx.test", b"Origin": b"https://sipx.test"})
    assert same.responseCode == 200


def test_a_browser_post_it_marks_cross_site_is_refused(web):
    answer = get(web.root, b"POST", b"/callcontroller/user1/user2", client="127.0.0.1",
                 headers={b"Sec-Fetch-Site": b"Cross-Site"})
    assert document(answer) == (403, 403, "Cross-origin request refused")


def test_query_values_may_be_empty_or_contain_a_question_mark(web):
    empty = get(web.root, b"POST", b"/callcontroller/user1/user2?agent=", client="127.0.0.1")
    assert document(empty) == (400, 400, "Bad parameter agent = ")  # given, and empty
    asked = get(web.root, b"POST", b"/callcontroller/user1/user2?subject=why?not",
                client="127.0.0.1")
    assert asked.responseCode == 200
    assert web.registry.calls[-1].request.subject == "why?not"


def test_the_refusal_log_forgets_the_host_it_heard_from_least_recently():
    from twisted.internet.task import Clock

    from sipxcc.web.site import RefusalLog

    clock = Clock()
    refusals = RefusalLog(clock, interval=60, max_hosts=2)
    assert refusals.should_log("a") and refusals.should_log("b")
    clock.advance(61)
    assert refusals.should_log("a")  # logged again: now the most recent
    assert refusals.should_log("c")  # "b" is forgotten, not "a"
    assert not refusals.should_log("a")
    assert refusals.should_log("b")
