"""Who may do what: trusted peers, Basic over TLS, Digest, agents, throttling."""

from __future__ import annotations

import hashlib

import pytest
from lxml import etree

from sipxcc.web.auth import parse_auth_params
from tests.unit.webfakes import PIN, REALM, WebHarness, basic

URI = "/callcontroller/user1/user2"
UNTRUSTED = "192.0.2.10"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def error_code(request) -> tuple[int, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, int(root[1].text), root[2].text


def digest_challenge(harness, uri=URI, method=b"GET", secure=True) -> dict:
    request = harness.request(method, uri, secure=secure)
    assert request.responseCode == 401
    challenge = next(c for c in request.headers(b"www-authenticate") if c.startswith(b"Digest"))
    return {k: v.decode() for k, v in parse_auth_params(challenge[len(b"Digest"):]).items()}


def digest(challenge: dict, user="user1", pin=PIN, method="GET", uri=URI, count=1,
           cnonce="0a4f113b", nc=None, **override) -> dict:
    """An Authorization header as RFC 2617 §3.2.2 (qop=auth) computes it (C{nc}: the
    nonce count as written, else C{count} in lower-case hex)."""
    fields = {"username": user, "realm": challenge["realm"], "nonce": challenge["nonce"],
              "uri": uri, "qop": "auth", "nc": nc or f"{count:08x}", "cnonce": cnonce,
              "algorithm": "MD5"}
    ha1 = md5(f"{user}:{REALM}:{pin}")
    ha2 = md5(f"{method}:{uri}")
    fields["response"] = md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{cnonce}:auth:{ha2}")
    fields.update(override)
    text = ", ".join(f'{k}="{v}"' if k not in ("nc", "qop", "algorithm") else f"{k}={v}"
                     for k, v in fields.items())
    return {b"Authorization": b"Digest " + text.encode()}


@pytest.fixture
def harness():
    return WebHarness()


def test_trusted_peer_over_https_needs_nothing(harness):
    request = harness.request(b"POST", URI + "?agent=user3", client="127.0.0.1")
    assert request.responseCode == 200
    assert harness.registry.calls[0].owner == "user3@sipx.test"


def test_untrusted_https_needs_auth_and_is_offered_both(harness):
    request = harness.request(b"GET", URI)
    assert error_code(request)[:2] == (401, 401)
    schemes = sorted(c.split(b" ")[0] for c in request.headers(b"www-authenticate"))
    assert schemes == [b"Basic", b"Digest"]
    assert harness.registry.calls == []


def test_trusted_address_over_plain_http_needs_digest(harness):
    request = harness.request(b"POST", URI, client="127.0.0.1", secure=False)
    assert request.responseCode == 401
    assert [c.split(b" ")[0] for c in request.headers(b"www-authenticate")] == [b"Digest"]
    challenge = digest_challenge(harness, method=b"POST", secure=False)
    request = harness.request(b"POST", URI, client="127.0.0.1", secure=False,
                              headers=digest(challenge, method="POST"))
    assert request.responseCode == 200


def test_basic_refused_over_plain_http(harness):
    request = harness.request(b"POST", URI, secure=False, headers=basic("user1"))
    assert request.responseCode == 401
    assert harness.registry.calls == []


@pytest.mark.parametrize("headers", [
    {b"Host": b"127.0.0.1"}, {b"X-Forwarded-For": b"127.0.0.1"},
    {b"X-Real-IP": b"127.0.0.1", b"Forwarded": b"for=127.0.0.1"},
])
def test_spoofed_headers_from_untrusted_peer_do_not_help(harness, headers):
    assert harness.request(b"POST", URI, headers=headers).responseCode == 401


def test_basic_with_the_pin(harness):
    request = harness.request(b"POST", URI, headers=basic("user1"))
    assert error_code(request) == (200, 200, "Success")
    assert request.header(b"location") == b"/calls/" + harness.registry.calls[0].id.encode()


def test_basic_with_an_alias_as_user_name(harness):
    assert harness.request(b"POST", "/callcontroller/201/202",
                           headers=basic("201")).responseCode == 200


@pytest.mark.parametrize("user,pin", [("user1", "124"), ("user9", PIN), ("user1", "")])
def test_basic_wrong_pin_or_unknown_user(harness, user, pin):
    request = harness.request(b"POST", URI, headers=basic(user, pin))
    assert error_code(request) == (401, 401, "Authentication failed")
    assert harness.registry.calls == []


def test_digest_accepted(harness):
    challenge = digest_challenge(harness)
    request = harness.request(b"GET", URI, headers=digest(challenge))
    assert request.responseCode == 200


def test_digest_wrong_pin(harness):
    challenge = digest_challenge(harness)
    assert harness.request(b"GET", URI, headers=digest(challenge, pin="999")).responseCode == 401


def test_digest_unknown_user(harness):
    challenge = digest_challenge(harness)
    request = harness.request(b"GET", "/callcontroller/user9/user2",
                              headers=digest(challenge, user="user9",
                                             uri="/callcontroller/user9/user2"))
    assert request.responseCode == 401


def test_digest_replay_refused_but_next_nc_accepted(harness):
    challenge = digest_challenge(harness)
    header = digest(challenge)
    assert harness.request(b"GET", URI, headers=header).responseCode == 200
    replay = harness.request(b"GET", URI, headers=header)
    assert replay.responseCode == 401
    fresh = next(c for c in replay.headers(b"www-authenticate") if c.startswith(b"Digest"))
    assert b"stale=false" in fresh and challenge["nonce"].encode() not in fresh
    assert harness.request(b"GET", URI, headers=digest(challenge, count=2)).responseCode == 200


def test_digest_for_another_uri_refused(harness):
    challenge = digest_challenge(harness)
    header = digest(challenge, uri="/callcontroller/user1/user3")
    assert harness.request(b"GET", URI, headers=header).responseCode == 401


def test_digest_expired_nonce_is_stale(harness):
    challenge = digest_challenge(harness)
    harness.clock.advance(301)
    request = harness.request(b"GET", URI, headers=digest(challenge))
    assert request.responseCode == 401
    assert any(b"stale=true" in c for c in request.headers(b"www-authenticate"))


@pytest.mark.parametrize("override", [
    {"algorithm": "SHA-256"}, {"algorithm": "MD5-sess"}, {"qop": "auth-int"},
    {"realm": "other.realm"}, {"nc": "zz"}, {"response": ""},
])
def test_digest_unsupported_or_malformed_fields(harness, override):
    challenge = digest_challenge(harness)
    assert harness.request(b"GET", URI, headers=digest(challenge, **override)).responseCode == 401


@pytest.mark.parametrize("header", [
    b"Digest", b"Digest garbage", b'Digest username="user1', b"Basic !!!notbase64",
    b"Bearer abc", b"\xff\xfe", b"Digest username=\xff",
])
def test_garbage_authorization_is_401_never_500(harness, header):
    request = harness.request(b"GET", URI, headers={b"Authorization": header})
    assert request.responseCode == 401


def test_digest_username_must_be_the_agent(harness):
    challenge = digest_challenge(harness, uri=URI + "?agent=user1")
    request = harness.request(b"GET", URI + "?agent=user1",
                              headers=digest(challenge, user="user2", uri=URI + "?agent=user1"))
    assert error_code(request) == (403, 403, "user2 may not act as agent user1")


def test_basic_user_must_be_the_agent(harness):
    request = harness.request(b"POST", URI + "?agent=user3", headers=basic("user1"))
    assert error_code(request)[:2] == (403, 403)


def test_acting_for_another_needs_agent_rights(harness):
    request = harness.request(b"POST", "/callcontroller/user2/user4", headers=basic("user1"))
    assert error_code(request)[:2] == (403, 403)
    assert harness.registry.calls == []


def test_listed_agent_may_act_for_another(harness):
    request = harness.request(b"POST", URI + "?agent=user3", headers=basic("user3"))
    assert request.responseCode == 200
    assert harness.registry.calls[0].request.calling == "user1@sipx.test"


def test_unknown_agent_is_403(harness):
    request = harness.request(b"POST", URI + "?agent=nobody", client="127.0.0.1")
    assert error_code(request) == (403, 403, "could not find credentials for nobody")


def test_users_see_only_their_own_calls(harness):
    harness.request(b"POST", URI + "?agent=user3", headers=basic("user3"))
    call_id = harness.registry.calls[0].id
    other = harness.request(b"GET", f"/calls/{call_id}", headers=basic("user1"))
    assert other.responseCode == 404
    assert harness.request(b"DELETE", f"/calls/{call_id}",
                           headers=basic("user1")).responseCode == 404
    assert harness.registry.hung_up == []
    assert b"<call>" not in harness.request(b"GET", "/calls", headers=basic("user1")).body
    assert harness.request(b"GET", f"/calls/{call_id}", headers=basic("user3")).responseCode == 200
    trusted = harness.request(b"GET", "/calls", client="127.0.0.1")
    assert call_id.encode() in trusted.body


def test_repeated_failures_are_throttled(harness):
    for _ in range(10):
        assert harness.request(b"GET", URI, headers=basic("user1", "0")).responseCode == 401
    blocked = harness.request(b"GET", URI, headers=basic("user1"))
    assert error_code(blocked)[:2] == (429, 429)
    assert int(blocked.header(b"retry-after")) == 60
    # Another address is not affected; the blocked one recovers after the block.
    assert harness.request(b"GET", URI, headers=basic("user1"),
                           client="192.0.2.99").responseCode == 200
    harness.clock.advance(61)
    assert harness.request(b"GET", URI, headers=basic("user1")).responseCode == 200


def test_missing_credentials_are_not_counted_as_failures(harness):
    for _ in range(20):
        harness.request(b"GET", URI)
    assert harness.request(b"GET", URI, headers=basic("user1")).responseCode == 200


def test_throttle_memory_is_bounded(harness):
    throttle = harness.auth.throttle
    for n in range(20000):
        throttle.failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(throttle._failures) <= 10000
