"""Status text that came off the wire may hold anything: every document still encodes, with
the hostile characters gone or replaced, XML and JSON alike."""

from __future__ import annotations

import json

from lxml import etree

from sipxcc.calls.call import CallRequest, StatusEvent
from sipxcc.web import render
from tests.unit.webfakes import FakeRegistry, WebHarness, basic, make_user

# A lone surrogate (what surrogateescape makes of a stray byte), NUL, ESC, DEL's C1 cousin.
HOSTILE = "SIP/2.0 180 Ring\udcffing\x00\x1b[2J"
CLEANED = "SIP/2.0 180 Ring?ing[2J"  # str.encode(errors="replace") gives "?"
EVENT = StatusEvent(5, "cid\udc80@x", "INVITE\x07", HOSTILE)


def test_clean_text_replaces_lone_surrogates_and_drops_controls():
    assert render.clean_text(HOSTILE) == CLEANED


def test_json_status_lines_are_cleaned():
    body = render.status_lines_json([EVENT])
    assert json.loads(body.decode("utf-8")) == {"status-lines": [{
        "timestamp": 5, "call-id": "cid?@x", "method": "INVITE", "status-line": CLEANED}]}


def test_xml_status_lines_are_cleaned():
    root = etree.fromstring(render.status_lines_xml([EVENT]))
    assert [e.text for e in root.iter("{*}status-line")] == [CLEANED]
    assert [e.text for e in root.iter("{*}call-id")] == ["cid?@x"]


def hostile_call():
    registry = FakeRegistry()
    call = registry.place(CallRequest(agent=make_user("user1", "201"),
                                      calling="user1@sipx.test", called="user2@sipx.test"))
    call.record(*EVENT)
    return call


def test_call_json_is_cleaned():
    document = json.loads(render.call_json(hostile_call()).decode("utf-8"))
    assert document["status-lines"] == [
        {"timestamp": 5, "call-id": "cid?@x", "method": "INVITE", "status-line": CLEANED}]


def test_get_as_json_answers_200_with_the_cleaned_line():
    harness = WebHarness()
    harness.request(b"POST", "/callcontroller/user1/user2", headers=basic("user1"))
    harness.registry.calls[0].record(*EVENT)
    request = harness.request(b"GET", "/callcontroller/user1/user2",
                              headers={**basic("user1"), b"Accept": b"application/json"})
    assert request.responseCode == 200
    assert request.header(b"content-type") == render.JSON_TYPE
    lines = json.loads(request.body.decode("utf-8"))["status-lines"]
    assert [line["status-line"] for line in lines] == [CLEANED]
