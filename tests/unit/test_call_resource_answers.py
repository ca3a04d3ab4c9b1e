"""
The REST resources' answers a client acts on beyond the happy path: the texts of DELETE and
of bad users in a GET, the document type of an empty answer, which methods the /calls
collection allows, and /calls/{id}/events where no event streams are served.
"""

from __future__ import annotations

import pytest

from tests.unit.test_web_auth import error_code
from tests.unit.webfakes import WebHarness

TRUSTED = {"client": "127.0.0.1"}


@pytest.fixture
def web():
    return WebHarness()


def test_ending_a_call_says_success(web):
    web.request(b"POST", "/callcontroller/user1/user2", **TRUSTED)
    assert error_code(web.request(b"DELETE", "/callcontroller/user1/user2", **TRUSTED)) == (
        200, 200, "Success")
    call_id = web.registry.calls[0].id
    assert error_code(web.request(b"DELETE", f"/calls/{call_id}", **TRUSTED)) == (
        200, 200, "Success")


@pytest.mark.parametrize(("path", "text"), [
    ("/callcontroller/a%20b/user2", "Bad parameter callingUser = a b"),
    ("/callcontroller/user1/a%20b", "Bad parameter calledUser = a b")])
def test_a_get_names_the_bad_user(web, path, text):
    assert error_code(web.request(b"GET", path, **TRUSTED)) == (400, 400, text)


def test_no_call_yet_is_an_empty_document_of_the_type_asked_for(web):
    xml = web.request(b"GET", "/callcontroller/user1/user2", **TRUSTED)
    assert xml.responseCode == 200 and xml.header(b"content-type") == b"text/xml; charset=UTF-8"
    as_json = web.request(b"GET", "/callcontroller/user1/user2", **TRUSTED,
                          headers={b"Accept": b"application/json"})
    assert as_json.header(b"content-type") == b"application/json; charset=utf-8"


@pytest.mark.parametrize("path", ["/calls", "/calls/"])
def test_the_calls_collection_cannot_be_deleted(web, path):
    refused = web.request(b"DELETE", path, **TRUSTED)
    assert error_code(refused) == (405, 405, "Method not allowed")
    assert refused.header(b"allow") == b"GET"


def test_without_event_streams_a_calls_events_path_is_not_found(web):
    web.request(b"POST", "/callcontroller/user1/user2", **TRUSTED)
    call_id = web.registry.calls[0].id
    assert error_code(web.request(b"GET", f"/calls/{call_id}/events", **TRUSTED)) == (
        404, 404, "Not found")
