"""The call page: served at / behind the same authentication, strict CSP, nothing inline."""

from __future__ import annotations

import re

import pytest
from twisted.web.resource import getChildForRequest

from sipxcc.web.page import STATIC_DIR, install_page
from tests.unit.webfakes import WebHarness, WebRequest, basic


@pytest.fixture
def web():
    harness = WebHarness()
    from sipxcc.web.callcontroller import WebContext
    install_page(harness.root, WebContext(harness.config, harness.directory,
                                          harness.call_store, harness.auth))
    return harness


def get(web, uri, **options):
    request = WebRequest(b"GET", uri.encode(), **options)
    request.prepath = []
    request.render(getChildForRequest(web.root, request))
    return request


def test_the_page_needs_credentials_like_the_api(web):
    request = get(web, "/")
    assert request.responseCode == 401
    assert any(v.startswith(b"Basic ") for v in request.headers(b"www-authenticate"))


def test_the_page_is_html_with_a_strict_content_security_policy(web):
    request = get(web, "/", headers=basic("user1"))
    assert request.responseCode == 200
    assert request.header(b"content-type") == b"text/html; charset=utf-8"
    csp = request.header(b"content-security-policy").decode()
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "style-src 'self'" in csp and "unsafe" not in csp
    assert b'<script src="/static/app.js"' in request.body


def test_nothing_in_the_page_is_inline_or_from_elsewhere():
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from elsewhere
    script = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script  # text only, as text


@pytest.mark.parametrize("name,kind", [("app.js", b"text/javascript; charset=utf-8"),
                                       ("app.css", b"text/css; charset=utf-8")])
def test_the_static_files_are_served_with_their_type(web, name, kind):
    request = get(web, f"/static/{name}")
    assert request.responseCode in (None, 200)
    assert request.header(b"content-type") == kind
    assert request.header(b"x-content-type-options") == b"nosniff"
    assert request.body == (STATIC_DIR / name).read_bytes()


def test_an_unknown_static_file_is_404(web):
    assert get(web, "/static/secret.py").responseCode == 404


def test_posting_to_the_page_is_405(web):
    request = WebRequest(b"POST", b"/", headers=basic("user1"))
    request.prepath = []
    request.render(getChildForRequest(web.root, request))
    assert request.responseCode == 405
