"""
The internal listener (``http.internal``), where sipXconfig's redirector forwards the
portal's requests: trusted hosts only, and ``sipx-user`` is the authenticated identity,
held to every rule a Digest user is held to.
"""

from __future__ import annotations

import pytest
from lxml import etree
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import getChildForRequest

from sipxcc.config import ConfigError, load_config
from sipxcc.web import render
from sipxcc.web.site import REFUSAL_LOG_INTERVAL, InternalSite, RefusalLog
from tests.unit.webfakes import WebHarness, WebRequest, basic

URI = "/callcontroller/user1/user2"
TRUSTED = "127.0.0.1"
UNTRUSTED = "192.0.2.10"


class InternalHarness(WebHarness):
    """The resource tree on fakes, reached through the real internal Site."""

    def __init__(self, **config_options):
        super().__init__(**config_options)
        self.site = InternalSite(self.root, self.clock, self.config)

    def internal(self, method: bytes, uri: str, client: str = TRUSTED,
                 sipx_user: bytes | list[bytes] | None = None,
                 headers: dict | None = None) -> WebRequest:
        request = WebRequest(method, uri.encode("utf-8"), client=client, secure=False,
                             headers=headers)
        values = [sipx_user] if isinstance(sipx_user, bytes) else sipx_user or []
        for value in values:
            request.requestHeaders.addRawHeader(b"sipx-user", value)
        request.prepath = []
        resource = self.site.getResourceFor(request)
        request.render(resource)
        assert request.finished, "the request was never answered"
        return request


def answer(request) -> tuple[int, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, int(root[1].text), root[2].text


@pytest.fixture
def web():
    return InternalHarness()


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(event) for event in events]
    globalLogPublisher.removeObserver(events.append)


def place_as(web, user: bytes, uri: str = URI):
    request = web.internal(b"POST", uri, sipx_user=user)
    assert request.responseCode == 200, request.body
    return web.registry.calls[-1]


# --- sipx-user is the identity ----------------------------------------------------------


def test_sipx_user_places_a_call_as_itself(web):
    call = place_as(web, b"user1")
    assert call.owner == "user1@sipx.test"
    assert (call.request.calling, call.request.called) == ("user1@sipx.test",
                                                           "user2@sipx.test")


@pytest.mark.parametrize("name", [b"201", b"user1@sipx.test"])
def test_sipx_user_by_alias_or_identity_is_the_same_user(web, name):
    assert place_as(web, name).owner == "user1@sipx.test"


def test_sipx_user_may_not_place_calls_for_another_calling_user(web):
    # The redirector does not check the URL against the portal user; sipxcc does.
    request = web.internal(b"POST", "/callcontroller/user2/user1", sipx_user=b"user1")
    assert answer(request) == (403, 403, "user1 may not act as agent user2")
    assert web.registry.calls == []


def test_sipx_user_may_not_name_another_agent(web):
    request = web.internal(b"POST", URI + "?agent=user3", sipx_user=b"user1")
    assert answer(request)[:2] == (403, 403)
    assert web.registry.calls == []


def test_a_listed_agent_may_place_calls_for_others(web):
    request = web.internal(b"POST", URI + "?agent=user3", sipx_user=b"user3")
    assert request.responseCode == 200
    call = web.registry.calls[0]
    assert (call.owner, call.request.calling) == ("user3@sipx.test", "user1@sipx.test")


def test_an_unlisted_agent_may_not(web):
    request = web.internal(b"POST", URI + "?agent=user4", sipx_user=b"user4")
    assert answer(request) == (403, 403, "user4 may not place calls for user1")
    assert web.registry.calls == []


def test_sipx_user_sees_and_ends_only_its_own_calls(web):
    call = place_as(web, b"user1")
    by_id = f"/calls/{call.id}"
    for method in (b"GET", b"DELETE"):
        assert answer(web.internal(method, by_id, sipx_user=b"user2"))[:2] == (404, 404)
    assert web.registry.hung_up == []
    mine = web.internal(b"GET", "/calls", sipx_user=b"user2")
    assert etree.fromstring(mine.body).findall(".//{*}call") == []
    assert answer(web.internal(b"GET", URI, sipx_user=b"user2"))[:2] == (403, 403)
    assert web.internal(b"GET", by_id, sipx_user=b"user1").responseCode == 200
    assert web.internal(b"DELETE", URI, sipx_user=b"user1").responseCode == 200
    assert web.registry.hung_up == [call]


def test_answers_are_the_documents_the_other_listeners_give(web):
    # The redirector copies status, Content-Type and body back to the portal unchanged.
    place_as(web, b"user1")
    internal = web.internal(b"GET", URI, sipx_user=b"user1")
    public = web.request(b"GET", URI, headers=basic("user1"))
    assert internal.responseCode == public.responseCode == 200
    assert internal.header(b"content-type") == public.header(b"content-type")
    assert internal.body == public.body
    refused = web.internal(b"GET", "/callcontroller/user2/user1", sipx_user=b"user1")
    assert refused.header(b"content-type") == render.XML_TYPE


def test_without_sipx_user_a_trusted_host_acts_as_a_trusted_peer(web):
    request = web.internal(b"POST", URI + "?agent=user4")
    assert request.responseCode == 200
    assert web.registry.calls[0].owner == "user4@sipx.test"
    listing = web.internal(b"GET", "/calls")
    assert len(etree.fromstring(listing.body).findall(".//{*}call")) == 1


def test_credentials_are_not_needed_and_do_not_override_sipx_user(web):
    request = web.internal(b"POST", URI + "?agent=user3", sipx_user=b"user1",
                           headers=basic("user3"))
    assert answer(request)[:2] == (403, 403)
    assert web.registry.calls == []


# --- bad sipx-user ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    b"", b"user1 user2", b"user1,user2", b"<sip:user1@sipx.test>", b"user1;x=y",
    b"user1\x00", b"\xff\xfe", b"u" * 200, b"user1@", b"sip:user1",
])
def test_a_malformed_sipx_user_is_403_and_logged(web, logged, value):
    request = web.internal(b"POST", URI, sipx_user=value)
    assert answer(request) == (403, 403, "Malformed sipx-user header")
    assert web.registry.calls == []
    assert any("refused a request from 127.0.0.1: Malformed sipx-user" in line
               for line in logged())


def test_an_unknown_sipx_user_is_403_and_logged(web, logged):
    request = web.internal(b"POST", "/callcontroller/nobody/user2", sipx_user=b"nobody")
    assert answer(request) == (403, 403, "Unknown sipx-user")
    assert web.registry.calls == []
    assert any("Unknown sipx-user (sipx-user: nobody)" in line for line in logged())


def test_two_sipx_user_headers_are_403(web):
    request = web.internal(b"POST", URI, sipx_user=[b"user1", b"user3"])
    assert answer(request) == (403, 403, "More than one sipx-user header")
    assert web.registry.calls == []


def test_control_characters_are_escaped_in_the_log(web, logged):
    web.internal(b"GET", URI, sipx_user=b"evil\x1b[31m\x00")
    line = next(line for line in logged() if "Malformed sipx-user" in line)
    assert "\x1b" not in line and "\x00" not in line and "evil\\x1b[31m\\x00" in line


def test_refused_sipx_users_do_not_lock_the_host_out(web):
    # The redirector's host serves every portal user; one user's bad name must not
    # trigger the per-address authentication-failure block.
    for _ in range(30):
        assert web.internal(b"GET", URI, sipx_user=b"nobody").responseCode == 403
    assert web.internal(b"POST", URI, sipx_user=b"user1").responseCode == 200


# --- only trusted hosts ------------------------------------------------------------------


@pytest.mark.parametrize("path", [URI, "/health", "/calls", "/nowhere"])
def test_an_untrusted_host_is_refused_whatever_it_asks(web, path):
    request = web.internal(b"POST", path, client=UNTRUSTED, sipx_user=b"user1")
    assert answer(request) == (403, 403, "Only trusted hosts may use this port")
    assert web.registry.calls == []


def test_an_untrusted_host_with_a_trusted_forwarded_header_is_still_refused(web):
    request = web.internal(b"POST", URI, client=UNTRUSTED,
                           headers={b"X-Forwarded-For": b"127.0.0.1",
                                    b"X-Real-IP": b"127.0.0.1"})
    assert request.responseCode == 403
    assert web.registry.calls == []


def test_untrusted_hosts_are_logged_once_per_interval(web, logged):
    for _ in range(5):
        web.internal(b"GET", URI, client=UNTRUSTED)
    web.internal(b"GET", URI, client="192.0.2.11")
    refusals = [line for line in logged() if "refusing requests from" in line]
    assert len(refusals) == 2
    assert "192.0.2.10" in refusals[0] and "192.0.2.11" in refusals[1]
    web.clock.advance(REFUSAL_LOG_INTERVAL)
    web.internal(b"GET", URI, client=UNTRUSTED)
    assert len([line for line in logged() if "refusing requests from" in line]) == 3


def test_the_refusal_log_remembers_a_bounded_number_of_hosts():
    clock = Clock()
    refusals = RefusalLog(clock, interval=60.0, max_hosts=3)
    hosts = [f"192.0.2.{n}" for n in range(1, 6)]
    assert [refusals.should_log(host) for host in hosts] == [True] * 5
    assert len(refusals) == 3
    assert refusals.should_log("192.0.2.5") is False  # still remembered
    assert refusals.should_log("192.0.2.1") is True   # forgotten first


def test_the_authenticator_refuses_untrusted_hosts_by_itself(web):
    # Defence in depth: even a resource reached without the Site's check refuses.
    request = WebRequest(b"POST", URI.encode(), client=UNTRUSTED, secure=False)
    request.site = web.site
    request.prepath = []
    request.render(getChildForRequest(web.root, request))
    assert answer(request) == (403, 403, "Only trusted hosts may use this port")
    assert web.registry.calls == []


# --- other listeners ignore sipx-user ----------------------------------------------------


@pytest.mark.parametrize("secure", [True, False])
def test_sipx_user_grants_nothing_on_the_other_listeners(web, secure):
    for client in (UNTRUSTED, TRUSTED) if not secure else (UNTRUSTED,):
        request = web.request(b"POST", URI, client=client, secure=secure,
                              headers={b"sipx-user": b"user1"})
        assert request.responseCode == 401
    assert web.registry.calls == []


def test_sipx_user_does_not_restrict_a_trusted_https_peer(web):
    request = web.request(b"POST", URI + "?agent=user4", client=TRUSTED,
                          headers={b"sipx-user": b"user1"})
    assert request.responseCode == 200
    assert web.registry.calls[0].owner == "user4@sipx.test"


# --- configuration -----------------------------------------------------------------------

MINIMAL = "[sip]\ndomain = sipx.test\nproxy = sip:127.0.0.1:5060;lr\n" \
          "[users]\ndirectory = validusers.xml\n"


def test_the_internal_listener_is_off_by_default(tmp_path):
    path = tmp_path / "sipxcc.ini"
    path.write_text(MINIMAL)
    config = load_config(str(path))
    assert (config.http.internal, config.http.internal_address) == (0, "127.0.0.1")


def test_internal_port_and_address(tmp_path):
    path = tmp_path / "sipxcc.ini"
    path.write_text(MINIMAL + "[http]\ninternal = 6667\ninternal_address = ::1\n")
    config = load_config(str(path))
    assert (config.http.internal, config.http.internal_address) == (6667, "::1")


@pytest.mark.parametrize("line, problem", [
    ("internal = 70000", "http.internal: 70000 is out of range"),
    ("internal = http", "http.internal: 'http' is not an integer"),
    ("internal_address = sipx.example", "http.internal_address: 'sipx.example' is not"),
])
def test_bad_internal_settings_are_named(tmp_path, line, problem):
    path = tmp_path / "sipxcc.ini"
    path.write_text(MINIMAL + f"[http]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    assert problem in str(error.value)
