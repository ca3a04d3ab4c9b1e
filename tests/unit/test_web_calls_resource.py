"""/calls and /calls/{id} as a client sees them: status, content type and error texts."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from tests.unit.test_web_resources import NS, TRUSTED, URI, status
from tests.unit.webfakes import WebHarness, basic

JSON = {b"Accept": b"application/json"}
XML_TYPE = b"text/xml; charset=UTF-8"
JSON_TYPE = b"application/json; charset=utf-8"


@pytest.fixture
def web():
    harness = WebHarness()
    for calling, called in (("user1", "user2"), ("user2", "user3"), ("user1", "user4")):
        harness.request(b"POST", f"/callcontroller/{calling}/{called}",
                        headers=basic(calling))
    return harness


@pytest.mark.parametrize("path", ["/calls", "/calls/"])
def test_the_list_as_xml_shows_a_user_only_their_calls(web, path):
    request = web.request(b"GET", path, headers=basic("user1"))
    assert request.responseCode == 200
    assert request.header(b"content-type") == XML_TYPE
    assert b"user3@sipx.test</called>" not in request.body
    assert request.body.count(b"user1@sipx.test</calling>") == 2


def test_the_list_as_json_for_a_trusted_peer_shows_every_call(web):
    request = web.request(b"GET", "/calls", client=TRUSTED, headers=JSON)
    assert request.responseCode == 200
    assert request.header(b"content-type") == JSON_TYPE
    calls = json.loads(request.body)["calls"]
    assert [c["called"] for c in calls] == ["user4@sipx.test", "user3@sipx.test",
                                            "user2@sipx.test"]


def test_the_list_as_json_for_a_user(web):
    request = web.request(b"GET", "/calls", headers={**basic("user2"), **JSON})
    assert [c["called"] for c in json.loads(request.body)["calls"]] == ["user3@sipx.test"]


def test_deleting_the_collection_is_405_allowing_get(web):
    request = web.request(b"DELETE", "/calls", client=TRUSTED)
    assert status(request) == (405, "ERROR", 405, "Method not allowed")
    assert request.headers(b"allow") == [b"GET"]


def test_one_call_as_json_and_as_xml(web):
    call = web.registry.calls[0]
    as_json = web.request(b"GET", f"/calls/{call.id}", headers={**basic("user1"), **JSON})
    assert as_json.responseCode == 200 and as_json.header(b"content-type") == JSON_TYPE
    assert json.loads(as_json.body)["id"] == call.id
    as_xml = web.request(b"GET", f"/calls/{call.id}", headers=basic("user1"))
    assert as_xml.responseCode == 200 and as_xml.header(b"content-type") == XML_TYPE
    assert as_xml.body.endswith(b"</status-lines>\n")


def test_someone_elses_call_is_not_found(web):
    theirs = web.registry.calls[1]
    request = web.request(b"GET", f"/calls/{theirs.id}", headers=basic("user1"))
    assert status(request) == (404, "ERROR", 404, "Call not found.")
    request = web.request(b"DELETE", f"/calls/{theirs.id}", headers=basic("user1"))
    assert status(request) == (404, "ERROR", 404, "Call not found.")
    assert web.registry.hung_up == []


def test_deleting_a_call_by_id_hangs_it_up(web):
    call = web.registry.calls[0]
    request = web.request(b"DELETE", f"/calls/{call.id}", headers=basic("user1"))
    assert status(request) == (200, "OK", 200, "Success")
    assert web.registry.hung_up == [call]


@pytest.mark.parametrize("path,code,text", [
    ("/calls/a/b", 404, "Not found"),
    ("/calls/a%2Fb", 404, "Not found"),
    ("/calls/unknown", 404, "Call not found."),
    ("/calls/%FF", 400, "Bad parameter id: not UTF-8"),
])
def test_bad_call_paths(web, path, code, text):
    assert status(web.request(b"GET", path, client=TRUSTED)) == (code, "ERROR", code, text)


def test_callcontroller_errors_name_what_is_wrong(web):
    request = web.request(b"DELETE", "/callcontroller/user4/user1", client=TRUSTED)
    assert status(request) == (404, "ERROR", 404, "Call not found.")
    request = web.request(b"POST", URI + "?agent=nobody", client=TRUSTED)
    assert status(request) == (403, "ERROR", 403, "could not find credentials for nobody")
    request = web.request(b"GET", "/callcontroller/user1/user2/x", client=TRUSTED)
    assert status(request) == (404, "ERROR", 404, "Not found")
    request = web.request(b"GET", "/callcontroller/%FF/user2", client=TRUSTED)
    assert status(request) == (400, "ERROR", 400, "Bad parameter callingUser: not UTF-8")
    request = web.request(b"GET", "/callcontroller/user1/%FF", client=TRUSTED)
    assert status(request) == (400, "ERROR", 400, "Bad parameter calledUser: not UTF-8")


def test_get_by_key_finds_only_the_agents_own_call(web):
    mine = web.request(b"GET", URI, headers=basic("user1"))
    assert etree.fromstring(mine.body).tag == NS + "status-lines"
    assert mine.header(b"content-type") == XML_TYPE
    as_json = web.request(b"GET", URI, headers={**basic("user1"), **JSON})
    assert json.loads(as_json.body) == {"status-lines": []}
    assert as_json.header(b"content-type") == JSON_TYPE
