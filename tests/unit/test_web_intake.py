"""What a request may carry besides its query (sipxcc.web.intake): no body, no parameters
from anywhere but the query string, no cross-origin state change."""

from __future__ import annotations

import io

import pytest
from lxml import etree
from twisted.web.resource import getChildForRequest

from tests.unit.webfakes import WebHarness, WebRequest, basic

URI = "/callcontroller/user1/user2"
FORM = {b"Content-Type": b"application/x-www-form-urlencoded"}


@pytest.fixture
def harness():
    return WebHarness()


def render(harness, method: bytes, uri: str, *, body: bytes | None = None,
           body_args: dict | None = None, **options) -> WebRequest:
    """Render a request with an optional body; C{body_args} are fields twisted.web would
    have merged into C{request.args} from a form body."""
    request = WebRequest(method, uri.encode(), **options)
    if body is not None:
        request.content = io.BytesIO(body)
    for name, value in (body_args or {}).items():
        request.args[name.encode()] = [value.encode()]
    request.prepath = []
    request.render(getChildForRequest(harness.root, request))
    assert request.finished
    return request


def error(request) -> tuple[int, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, int(root[1].text), root[2].text


def test_parameters_from_a_form_body_are_not_used(harness):
    # as twisted.web merges a form body into request.args, replacing the query's values
    request = render(harness, b"POST", URI + "?subject=hello", headers=basic("user1"),
                     body_args={"autoAnswer": "true", "subject": "changed",
                                "agent": "user3"})
    assert request.responseCode == 200
    placed = harness.registry.calls[0].request
    assert placed.auto_answer is False
    assert placed.subject == "hello"
    assert placed.agent.user_name == "user1"


@pytest.mark.parametrize("method", [b"POST", b"DELETE", b"GET"])
@pytest.mark.parametrize("headers", [FORM, {b"Content-Type": b"multipart/form-data; b=x"},
                                     {b"Content-Type": b"text/plain"}, {}])
def test_a_request_with_a_body_is_415(harness, method, headers):
    request = render(harness, method, URI, body=b"autoAnswer=true&subject=x",
                     headers={**headers, **basic("user1")})
    assert error(request) == (415, 415, "Parameters go in the query string; a request "
                                        "body is not accepted")
    assert harness.registry.calls == [] and harness.registry.hung_up == []


def test_a_request_with_a_body_is_415_from_a_trusted_host_too(harness):
    request = render(harness, b"POST", URI, body=b"autoAnswer=true", headers=FORM,
                     client="127.0.0.1")
    assert request.responseCode == 415
    assert harness.registry.calls == []


def test_an_empty_body_is_fine(harness):
    request = render(harness, b"POST", URI + "?autoAnswer=true", body=b"",
                     headers={**FORM, **basic("user1")})
    assert request.responseCode == 200
    assert harness.registry.calls[0].request.auto_answer is True


@pytest.mark.parametrize("origin", [
    b"https://evil.example", b"https://127.0.0.1:6667", b"http://127.0.0.1:6666", b"null",
    b"https://127.0.0.1:6666.evil.example", b"garbage", b"https://user@127.0.0.1:6666",
])
@pytest.mark.parametrize("method", [b"POST", b"DELETE"])
def test_a_state_change_from_another_origin_is_403(harness, origin, method):
    for client in ("192.0.2.10", "127.0.0.1"):  # an untrusted and a trusted host
        request = render(harness, method, URI, client=client,
                         headers={b"Host": b"127.0.0.1:6666", b"Origin": origin,
                                  **basic("user1")})
        assert error(request) == (403, 403, "Cross-origin request refused")
    assert harness.registry.calls == [] and harness.registry.hung_up == []


def test_cross_site_fetch_metadata_is_403(harness):
    request = render(harness, b"POST", URI, client="127.0.0.1",
                     headers={b"Host": b"127.0.0.1:6666", b"Sec-Fetch-Site": b"cross-site"})
    assert request.responseCode == 403
    assert harness.registry.calls == []


@pytest.mark.parametrize("headers", [
    {},
    {b"Host": b"127.0.0.1:6666", b"Origin": b"https://127.0.0.1:6666"},
    {b"Host": b"PBX.example.com", b"Origin": b"https://pbx.example.com:443"},
    {b"Host": b"[::1]:6666", b"Origin": b"https://[::1]:6666"},
    {b"Host": b"127.0.0.1:6666", b"Sec-Fetch-Site": b"same-origin"},
    {b"Host": b"127.0.0.1:6666", b"Sec-Fetch-Site": b"none"},
])
def test_same_origin_or_no_origin_is_served(harness, headers):
    request = render(harness, b"POST", URI, client="127.0.0.1", headers=headers)
    assert request.responseCode == 200
    assert len(harness.registry.calls) == 1


def test_a_read_from_another_origin_is_not_refused(harness):
    request = render(harness, b"GET", URI, client="127.0.0.1",
                     headers={b"Host": b"127.0.0.1:6666", b"Origin": b"https://evil.example"})
    assert request.responseCode == 200


def test_plain_http_origin_matches_a_plain_http_request(harness):
    request = render(harness, b"POST", URI, secure=False,
                     headers={b"Host": b"127.0.0.1:6667", b"Origin": b"http://127.0.0.1:6667"})
    assert request.responseCode == 401  # past the origin check, on to Digest
