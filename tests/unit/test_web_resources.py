"""The REST resources on a fake registry: what a client sees for each request."""

from __future__ import annotations

import json

import pytest
from lxml import etree
from twisted.logger import globalLogPublisher

from sipxcc.calls.call import DialogInfo
from sipxcc.calls.errors import (
    AgentLimit,
    CallInProgress,
    TooManyCalls,
    TransferNotPossible,
)
from tests.unit.webfakes import SEED_EVENTS, WebHarness, basic

TRUSTED = "127.0.0.1"
URI = "/callcontroller/user1/user2"
REDIRECT = "/sipxconfig/rest/my/redirect/callcontroller/user1/user2"
NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"


@pytest.fixture
def web():
    return WebHarness()


def status(request) -> tuple[int, str, int, str]:
    """(HTTP status, error-flag, error-code, error-text) of a processing-status answer."""
    root = etree.fromstring(request.body)
    assert root.tag == NS + "processing-status"
    flag, code, text = (element.text for element in root)
    return request.responseCode, flag, int(code), text


@pytest.mark.parametrize("uri", [URI, REDIRECT])
def test_post_places_a_call(web, uri):
    request = web.request(b"POST", uri + "?timeout=30&isForwardingAllowed=true&confpin=42",
                          headers=basic("user1"))
    assert status(request) == (200, "OK", 200, "Success")
    [call] = web.registry.calls
    assert request.header(b"location") == f"/calls/{call.id}".encode()
    assert request.header(b"content-type") == b"text/xml; charset=UTF-8"
    assert request.header(b"cache-control") == b"no-store"
    wanted = call.request
    assert (wanted.agent.identity, wanted.calling, wanted.called) == (
        "user1@sipx.test", "user1@sipx.test", "user2@sipx.test")
    assert (wanted.method, wanted.timeout, wanted.forwarding_allowed, wanted.confpin) == (
        "REFER", 30, True, "42")
    assert wanted.result_cache_time == 180 and not wanted.auto_answer


def test_post_with_every_new_option(web):
    web.request(b"POST", URI + "?sipMethod=invite&autoAnswer=true&subject=Hello+there"
                "&statusCallback=https%3A%2F%2Fhooks.example%2Fcb&resultCacheTime=5",
                client=TRUSTED)
    wanted = web.registry.calls[0].request
    assert (wanted.method, wanted.auto_answer, wanted.subject, wanted.status_callback,
            wanted.result_cache_time) == ("INVITE", True, "Hello there",
                                          "https://hooks.example/cb", 5)


@pytest.mark.parametrize("error,code,retry", [
    (CallInProgress("Call in progress"), 409, None),
    (TooManyCalls("Too many calls"), 503, b"5"),
    (AgentLimit("Too many calls for this agent"), 429, b"5"),
    (TransferNotPossible("Not an INVITE call"), 409, None),
])
def test_registry_errors_keep_their_status(web, error, code, retry):
    web.registry.error = error
    request = web.request(b"POST", URI, client=TRUSTED)
    assert status(request) == (code, "ERROR", code, str(error))
    assert request.header(b"retry-after") == retry


def test_bad_parameter_is_400_and_nothing_is_placed(web):
    request = web.request(b"POST", URI + "?timeout=abc", client=TRUSTED)
    assert status(request) == (400, "ERROR", 400, "Bad parameter timeout = abc")
    request = web.request(b"POST", URI + "?subject=a%0D%0AX-Evil:%201", client=TRUSTED)
    assert status(request)[:3] == (400, "ERROR", 400) and "subject" in status(request)[3]
    request = web.request(b"POST", "/callcontroller/user1%3Bx=1/user2", client=TRUSTED)
    assert "callingUser" in status(request)[3]
    assert web.registry.calls == []


def test_transfer(web):
    request = web.request(b"POST", URI + "?action=transfer", client=TRUSTED)
    assert status(request) == (400, "ERROR", 400, "Need a transfer target parameter")
    request = web.request(b"POST", URI + "?action=transfer&target=user4", client=TRUSTED)
    assert status(request) == (404, "ERROR", 404, "Call not found.")
    web.request(b"POST", URI + "?sipMethod=INVITE", client=TRUSTED)
    request = web.request(b"POST", URI + "?action=transfer&target=user4&timeout=7",
                          client=TRUSTED)
    assert status(request)[0] == 200
    assert web.registry.transfers == [(web.registry.calls[0], "user4@sipx.test", 7)]


def test_get_unknown_key_gives_the_empty_documents(web):
    refer = web.request(b"GET", URI, headers=basic("user1"))
    assert refer.responseCode == 200 and refer.body.endswith(
        b'call-status-00-00">\n</status-lines>\n')
    invite = web.request(b"GET", URI + "?sipMethod=INVITE", headers=basic("user1"))
    assert invite.body.endswith(b'call-status-00-00">\n</dialogs>\n')
    as_json = web.request(b"GET", URI, headers={**basic("user1"),
                                                b"Accept": b"application/json"})
    assert json.loads(as_json.body) == {"status-lines": []}
    assert as_json.header(b"content-type") == b"application/json; charset=utf-8"


def test_get_shows_the_status_lines_and_they_only_grow(web):
    web.request(b"POST", URI, headers=basic("user1"))
    call = web.registry.calls[0]
    for event in SEED_EVENTS[:2]:
        call.record(event.timestamp, event.call_id, event.method, event.status_line)
    first = web.request(b"GET", URI, headers=basic("user1"))
    lines = [e.text for e in etree.fromstring(first.body).iter(NS + "status-line")]
    assert lines == ["SIP/2.0 100 Trying", "SIP/2.0 407 Proxy Authentication Required"]
    call.record(1, "c", "INVITE", "SIP/2.0 180 Ringing")
    second = web.request(b"GET", REDIRECT, headers=basic("user1"))
    assert second.body.startswith(first.body[:-len(b"</status-lines>\n")])
    assert len(second.body) > len(first.body)
    assert second.header(b"cache-control") == b"no-store"


def test_get_invite_call_shows_dialogs(web):
    web.request(b"POST", URI + "?sipMethod=INVITE", client=TRUSTED)
    call = web.registry.calls[0]
    call.set_dialog_source(lambda: [DialogInfo("d1", "sip:a", "sip:b", "Early Dialog")])
    request = web.request(b"GET", URI, client=TRUSTED)
    assert etree.fromstring(request.body).find(f"{NS}dialog/{NS}dialog-state").text == (
        "Early Dialog")
    as_json = web.request(b"GET", f"/calls/{call.id}", client=TRUSTED,
                          headers={b"Accept": b"application/json"})
    document = json.loads(as_json.body)
    assert document["id"] == call.id and document["mode"] == "INVITE"
    assert document["dialogs"][0]["dialog-id"] == "d1"


def test_delete_hangs_up(web):
    assert status(web.request(b"DELETE", URI, client=TRUSTED))[:3] == (404, "ERROR", 404)
    web.request(b"POST", URI, headers=basic("user1"))
    call = web.registry.calls[0]
    assert status(web.request(b"DELETE", URI, headers=basic("user1")))[0] == 200
    assert status(web.request(b"DELETE", f"/calls/{call.id}", headers=basic("user1")))[0] == 200
    assert web.registry.hung_up == [call, call]
    web.registry.calls.clear()  # the call was forgotten meanwhile
    assert status(web.request(b"DELETE", f"/calls/{call.id}", client=TRUSTED))[0] == 404


def test_calls_list_newest_first_with_limit(web):
    for called in ("user2", "user3", "user4"):
        web.request(b"POST", f"/callcontroller/user1/{called}", headers=basic("user1"))
    request = web.request(b"GET", "/calls?limit=2", headers={
        **basic("user1"), b"Accept": b"application/json"})
    calls = json.loads(request.body)["calls"]
    assert [c["called"] for c in calls] == ["user4@sipx.test", "user3@sipx.test"]
    assert status(web.request(b"GET", "/calls?limit=0", client=TRUSTED))[0] == 400


@pytest.mark.parametrize("method", [b"PUT", b"PATCH", b"HEAD", b"OPTIONS", b"BREW"])
def test_other_methods_are_405_with_allow(web, method):
    request = web.request(method, URI, client=TRUSTED)
    assert request.responseCode == 405
    assert request.header(b"allow") == b"DELETE, GET, POST"
    if method != b"HEAD":
        assert status(request) == (405, "ERROR", 405, "Method not allowed")


def test_calls_collection_allows_only_get(web):
    request = web.request(b"POST", "/calls", client=TRUSTED)
    assert request.responseCode == 405 and request.header(b"allow") == b"GET"
    request = web.request(b"DELETE", "/calls", client=TRUSTED)
    assert status(request)[0] == 405 and request.header(b"allow") == b"GET"


@pytest.mark.parametrize("uri", [
    "/", "/nothing", "/callcontroller", "/callcontroller/user1",
    "/callcontroller/user1/user2/extra", "/callcontroller/user1/user2/",
    "/callcontroller/user1%2Fx/user2", "/callcontroller//user2", "/sipxconfig/rest",
    "/sipxconfig/rest/my/redirect/other", "/calls/unknown-id", "/calls/a/b",
])
def test_unknown_paths_are_404_with_the_document(web, uri):
    request = web.request(b"GET", uri, client=TRUSTED)
    assert status(request)[:3] == (404, "ERROR", 404)


def test_overlong_uri_is_414(web):
    request = web.request(b"GET", URI + "?subject=" + "x" * 9000, client=TRUSTED)
    assert status(request)[:3] == (414, "ERROR", 414)


def test_unexpected_fault_is_logged_and_answered_generically(web):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        web.registry.raise_unexpected = True
        request = web.request(b"POST", URI, client=TRUSTED)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert status(request) == (500, "ERROR", 500, "Internal error")
    assert b"secret" not in request.body
    assert any("log_failure" in event for event in events)


def test_errors_as_json(web):
    request = web.request(b"POST", URI + "?timeout=-1", client=TRUSTED,
                          headers={b"Accept": b"application/json"})
    assert json.loads(request.body) == {"error-flag": "ERROR", "error-code": 400,
                                        "error-text": "Bad parameter timeout = -1"}
