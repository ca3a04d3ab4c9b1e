"""What the OpenAPI contract test found, fixed: every answer is one the spec describes."""

from __future__ import annotations

from lxml import etree

from sipxcc.web.openapi import OpenAPIResource
from tests.unit.test_web_limits import Client, make_site
from tests.unit.webfakes import WebHarness, WebRequest

NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"


def test_an_endless_request_line_is_414_with_the_document_and_close():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /callcontroller/" + b"a" * 20000)
    head, _, body = client.output().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 ")
    assert etree.fromstring(body).findtext(NS + "error-code") == "414"
    assert client.closing


def test_an_endless_header_line_is_still_431():
    site, _ = make_site()
    client = Client(site)
    client.send(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    assert client.output().startswith(b"HTTP/1.1 431 ")


def test_the_calls_collection_names_only_get_in_allow():
    web = WebHarness()
    request = web.request(b"OPTIONS", "/calls", client="127.0.0.1")
    assert request.responseCode == 405 and request.header(b"allow") == b"GET"
    request = web.request(b"OPTIONS", "/calls/abc", client="127.0.0.1")
    assert request.header(b"allow") == b"DELETE, GET"


def test_other_methods_on_the_spec_are_405_not_501():
    request = WebRequest(b"TRACE", b"/openapi.json")
    body = OpenAPIResource(b"{}").render(request)
    assert request.responseCode == 405 and request.header(b"allow") == b"GET, HEAD"
    assert body == b"Method not allowed\n"
