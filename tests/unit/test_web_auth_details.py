"""Authentication details a client relies on: the exact Digest challenge, which digest
variants are accepted, nonce lifetime and capacity, 403 texts, and the /health page."""

from __future__ import annotations

import base64
import re

import pytest
from twisted.internet.task import Clock

from sipxcc.calls.store import MemoryCallStore
from sipxcc.web import auth
from sipxcc.web.auth import DigestNonces
from sipxcc.web.limits import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST, REQUEST_DEADLINE
from sipxcc.web.site import REQUEST_TIMEOUT, build_site
from tests.unit.test_web_auth import URI, digest, digest_challenge, error_code
from tests.unit.webfakes import (
    PIN,
    FakeDirectory,
    FakeRegistry,
    WebHarness,
    WebRequest,
    basic,
    make_config,
)

CHALLENGE = re.compile(rb'Digest realm="sipx\.test", qop="auth", algorithm=MD5, '
                       rb'nonce="[0-9a-f]{32}"(, stale=(true|false))?')


@pytest.fixture
def harness():
    return WebHarness()


def challenges(request) -> list[bytes]:
    return request.headers(b"www-authenticate")


def test_the_challenges_offered_over_https_and_http(harness):
    request = harness.request(b"GET", URI)
    digest_header, basic_header = challenges(request)
    assert CHALLENGE.fullmatch(digest_header) and b"stale" not in digest_header
    assert basic_header == b'Basic realm="sipx.test"'
    assert error_code(request) == (401, 401, "Authentication required")
    [only] = challenges(harness.request(b"GET", URI, secure=False))
    assert CHALLENGE.fullmatch(only)


def test_each_challenge_has_a_new_nonce(harness):
    first = digest_challenge(harness)["nonce"]
    second = digest_challenge(harness)["nonce"]
    assert first != second and len(first) == 32


def test_a_failed_login_says_so_and_is_not_stale(harness):
    request = harness.request(b"GET", URI, headers=basic("user1", "999"))
    assert error_code(request) == (401, 401, "Authentication failed")
    assert challenges(request)[0].endswith(b", stale=false")


def test_a_stale_nonce_asks_again_without_counting_a_failure(harness):
    challenge = digest_challenge(harness)
    harness.clock.advance(auth.NONCE_LIFETIME + 1)
    for _ in range(auth.FAILURE_LIMIT + 1):
        request = harness.request(b"GET", URI, headers=digest(challenge))
        assert error_code(request) == (401, 401, "Authentication required")
        assert challenges(request)[0].endswith(b", stale=true")


def test_a_nonce_is_fresh_for_exactly_its_lifetime(harness):
    challenge = digest_challenge(harness)
    harness.clock.advance(auth.NONCE_LIFETIME)
    assert harness.request(b"GET", URI, headers=digest(challenge)).responseCode == 200


@pytest.mark.parametrize("override", [{"algorithm": "md5"}, {"nc": "0000000A"},
                                      {"nc": "0000000a"}])
def test_digest_variants_that_are_accepted(harness, override):
    challenge = digest_challenge(harness)
    header = digest(challenge, **override)
    assert b"nc=%s" % override.get("nc", "00000001").encode() in header[b"Authorization"]
    assert harness.request(b"GET", URI, headers=header).responseCode == 200


def test_a_digest_without_algorithm_is_md5(harness):
    challenge = digest_challenge(harness)
    header = digest(challenge)[b"Authorization"].replace(b", algorithm=MD5", b"")
    assert b"algorithm" not in header
    assert harness.request(b"GET", URI, headers={b"Authorization": header}).responseCode == 200


def test_quoted_values_may_escape_characters(harness):
    challenge = digest_challenge(harness)
    header = digest(challenge)[b"Authorization"].replace(b'username="user1"',
                                                          b'username="us\\er1"')
    assert harness.request(b"GET", URI, headers={b"Authorization": header}).responseCode == 200


def test_nonce_counts_per_nonce_are_bounded():
    clock = Clock()
    nonces = DigestNonces(clock)
    nonce = nonces.issue()
    for n in range(auth.MAX_NC_PER_NONCE):
        assert nonces.consume(nonce, b"%08x" % n)
    assert not nonces.consume(nonce, b"%08x" % auth.MAX_NC_PER_NONCE)
    assert not nonces.consume(b"unknown", b"00000001")


def test_the_oldest_nonce_is_forgotten_first():
    nonces = DigestNonces(Clock(), capacity=3)
    issued = [nonces.issue() for _ in range(4)]
    assert [nonces.is_fresh(n) for n in issued] == [False, True, True, True]
    nonces = DigestNonces(Clock(), capacity=3)
    issued = [nonces.issue() for _ in range(3)]
    assert all(nonces.is_fresh(n) for n in issued)


def test_an_expired_nonce_stays_expired():
    clock = Clock()
    nonces = DigestNonces(clock, lifetime=10)
    nonce = nonces.issue()
    clock.advance(10.5)
    assert not nonces.is_fresh(nonce)
    clock.advance(-5)  # even were the clock to step back, the nonce is gone
    assert not nonces.is_fresh(nonce)


def test_403_texts_name_who_may_not_do_what(harness):
    request = harness.request(b"POST", URI + "?agent=user3", headers=basic("user1"))
    assert error_code(request) == (403, 403, "user1 may not act as agent user3")
    request = harness.request(b"POST", "/callcontroller/user2/user4?agent=user1",
                              headers=basic("user1"))
    assert error_code(request) == (403, 403, "user1 may not place calls for user2")


@pytest.mark.parametrize("calling", ["user1", "201", "user1@sipx.test"])
def test_a_user_may_call_from_any_of_its_names(harness, calling):
    request = harness.request(b"POST", f"/callcontroller/{calling}/user2?agent=user1",
                              headers=basic("user1"))
    assert request.responseCode == 200


def test_a_name_of_another_user_is_not_the_user(harness):
    request = harness.request(b"POST", "/callcontroller/202/user4?agent=user1",
                              headers=basic("user1"))
    assert error_code(request)[:2] == (403, 403)


def site():
    clock = Clock()
    return clock, build_site(make_config(), FakeDirectory(), MemoryCallStore(FakeRegistry()),
                             clock)


def render(site, method, uri, **options):
    from twisted.web.resource import getChildForRequest

    request = WebRequest(method, uri, **options)
    request.prepath = []
    request.render(getChildForRequest(site.resource, request))
    return request


def test_health_is_plain_ok_never_cached():
    clock, s = site()
    request = render(s, b"GET", b"/health")
    assert request.body == b"ok\n"
    assert request.header(b"content-type") == b"text/plain; charset=utf-8"
    assert request.header(b"cache-control") == b"no-store"


class SharedStore(MemoryCallStore):
    """A store that reports a shared registry's health."""

    def __init__(self, state):
        super().__init__(FakeRegistry())
        self.state = state

    def health(self):
        return {"backend": "redis", "node": "pbx1:6050", "state": self.state,
                "buffered_writes": 3, "dropped_writes": 0}


def test_health_with_a_shared_registry_tells_its_state():
    store = SharedStore("up")
    s = build_site(make_config(), FakeDirectory(), store, Clock())
    request = render(s, b"GET", b"/health")
    assert (request.responseCode, request.body) == (None, (
        b"ok\nregistry up: backend redis, node pbx1:6050, buffered writes 3, "
        b"dropped writes 0\n"))
    for state in ("down", "starting"):  # this node cannot place calls now
        store.state = state
        request = render(s, b"GET", b"/health")
        assert request.responseCode == 503 and request.header(b"retry-after") == b"5"
        assert request.body.startswith(b"unavailable\nregistry " + state.encode() + b":")
        assert request.header(b"cache-control") == b"no-store"


def test_the_site_serves_the_api_with_its_limits():
    clock, s = site()
    request = render(s, b"POST", URI.encode(), headers=basic("user1"))
    assert error_code(request) == (200, 200, "Success")
    assert s.displayTracebacks is False
    assert s.timeOut == REQUEST_TIMEOUT == 30
    assert (s.limits.total, s.limits.per_host) == (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST)
    fired = []
    s.deadlines.call_later(fired.append, "due")
    clock.advance(REQUEST_DEADLINE)
    assert fired == ["due"]
    s.deadlines.call_later(fired.append, "stopped")
    s.stopFactory()
    clock.advance(REQUEST_DEADLINE)
    assert fired == ["due"]


def test_digest_nonces_expire_on_the_sites_clock():
    clock, s = site()
    request = render(s, b"GET", URI.encode())
    header = challenges(request)[0]
    nonce = re.search(rb'nonce="([0-9a-f]+)"', header).group(1).decode()
    clock.advance(auth.NONCE_LIFETIME + 1)
    stale = render(s, b"GET", URI.encode(), headers=digest({"realm": "sipx.test",
                                                            "nonce": nonce}))
    assert challenges(stale)[0].endswith(b"stale=true")


def test_unknown_paths_and_long_uris_get_documents_never_cached():
    from sipxcc.web.errors import MAX_URI

    clock, s = site()
    request = render(s, b"GET", b"/nothing", client="127.0.0.1")
    assert error_code(request) == (404, 404, "Not found")
    assert request.header(b"cache-control") == b"no-store"
    assert request.header(b"content-type") == b"text/xml; charset=UTF-8"
    root = render(s, b"GET", b"/", client="127.0.0.1")  # the call page (sipxcc.web.page)
    assert root.header(b"content-type") == b"text/html; charset=utf-8"
    assert root.header(b"cache-control") == b"no-store"
    longest = b"/health?" + b"x" * (MAX_URI - len(b"/health?"))
    assert render(s, b"GET", longest).body == b"ok\n"
    too_long = render(s, b"GET", longest + b"x")
    assert error_code(too_long) == (414, 414, "Request URI too long")
    root_too_long = render(s, b"GET", b"/?" + b"x" * MAX_URI)
    assert error_code(root_too_long) == (414, 414, "Request URI too long")


def test_refusals_before_any_credential_check_say_why(harness):
    request = harness.request(b"GET", URI, secure=False, headers=basic("user1"))
    assert error_code(request) == (401, 401,
                                   "Basic authentication is not accepted over plain HTTP")
    request = harness.request(b"GET", URI, headers={b"Authorization": b"Bearer x"})
    assert error_code(request) == (401, 401, "Authentication required")
    for _ in range(auth.FAILURE_LIMIT):
        harness.request(b"GET", URI, headers=basic("user1", "0"))
    request = harness.request(b"GET", URI, headers=basic("user1"))
    assert error_code(request) == (429, 429, "Too many authentication failures")


def test_only_a_trusted_address_over_tls_is_trusted_without_credentials(harness):
    from tests.unit.webfakes import WebRequest as Request

    trusted = Request(b"GET", URI.encode(), client="127.0.0.1")
    assert harness.auth.trusted(trusted) is auth.TRUSTED
    assert harness.auth.trusted(Request(b"GET", URI.encode(), client="127.0.0.1",
                                        secure=False)) is None
    assert harness.auth.trusted(Request(b"GET", URI.encode())) is None
    nowhere = Request(b"GET", URI.encode())
    nowhere.client = None
    assert harness.auth.trusted(nowhere) is None
    principal = []
    harness.auth.authenticate(trusted).addCallback(principal.append)
    assert principal == [auth.TRUSTED] and principal[0].may_see(object())


def test_the_trust_memo_is_bounded_and_still_answers_right(harness):
    from tests.unit.webfakes import WebRequest as Request

    for n in range(4100):
        harness.auth.trusted(Request(b"GET", b"/", client=f"10.0.{n >> 8}.{n & 255}"))
    assert len(harness.auth._trust) <= 4096
    assert harness.auth.trusted(Request(b"GET", b"/", client="127.0.0.1")) is auth.TRUSTED


# --- failures: what the client is told, and what is counted against it ------------------------

def test_malformed_digests_are_failures_of_that_client_and_not_stale(harness):
    for _ in range(auth.FAILURE_LIMIT):
        request = harness.request(b"GET", URI, headers={b"Authorization": b"Digest nonsense"})
        assert error_code(request) == (401, 401, "Authentication failed")
        assert CHALLENGE.fullmatch(challenges(request)[0])
        assert challenges(request)[0].endswith(b", stale=false")
    blocked = harness.request(b"GET", URI, headers=basic("user1"))
    assert error_code(blocked) == (429, 429, "Too many authentication failures")


def test_a_user_name_that_is_not_utf8_is_a_failed_login_not_an_error(harness):
    token = base64.b64encode(b"us\xffer:" + PIN.encode())
    request = harness.request(b"GET", URI, headers={b"Authorization": b"Basic " + token})
    assert error_code(request) == (401, 401, "Authentication failed")


def test_a_locked_account_is_told_so(harness):
    harness.auth.accounts = auth.FailureThrottle(harness.clock, limit=1, what="account")
    harness.request(b"GET", URI, headers=basic("user1", "999"))
    request = harness.request(b"GET", URI, headers=basic("user1"), client="192.0.2.77")
    assert error_code(request) == (429, 429,
                                   "Too many authentication failures for this account")


def test_the_nonce_lifetime_is_the_authenticators():
    clock = Clock()
    authenticator = auth.Authenticator(make_config(), FakeDirectory(), clock, nonce_lifetime=5)
    nonce = authenticator.digest.nonces.issue()
    clock.advance(5)
    assert authenticator.digest.nonces.is_fresh(nonce)
    clock.advance(0.5)
    assert not authenticator.digest.nonces.is_fresh(nonce)


def test_the_trust_memo_never_holds_more_than_4096_hosts(harness):
    from tests.unit.webfakes import WebRequest as Request

    for n in range(4097):
        harness.auth.trusted(Request(b"GET", b"/", client=f"10.0.{n >> 8}.{n & 255}"))
        assert len(harness.auth._trust) <= 4096
    assert len(harness.auth._trust) == 1  # cleared when full, then the 4097th


def test_a_throttle_remembers_the_newest_max_hosts_keys():
    throttle = auth.FailureThrottle(Clock(), limit=2, max_hosts=3)
    for host in ("a", "b", "c", "d"):
        throttle.failed(host)  # "a" is forgotten: 3 keys at most
    throttle.failed("b")
    throttle.failed("d")
    throttle.failed("a")  # counted from 1 again
    assert [throttle.retry_after(h) for h in "abd"] == [None, 60, 60]


def test_a_block_ends_exactly_on_time_and_retry_after_rounds_up():
    clock = Clock()
    throttle = auth.FailureThrottle(clock, limit=1, block=60)
    throttle.failed("a")
    clock.advance(59.5)
    assert throttle.retry_after("a") == 1  # half a second left: come back in 1
    clock.advance(0.25)
    assert throttle.retry_after("a") == 1
    clock.advance(0.25)
    assert throttle.retry_after("a") is None  # 60 s: over
