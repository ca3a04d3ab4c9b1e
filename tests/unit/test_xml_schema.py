"""Every XML document the renderers emit is valid against docs/call-status.xsd."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from sipxcc.calls.call import INVITE, Call, CallRequest, DialogInfo
from sipxcc.calls.redis_store import StoredCall
from sipxcc.users import User
from sipxcc.web import render
from tests.unit.webfakes import SEED_EVENTS

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "call-status.xsd"
USER1 = User("user1@sipx.test", "user1", (), None, None, None)


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


def assert_valid(schema, document: bytes) -> None:
    root = etree.fromstring(document)
    assert schema.validate(root), schema.error_log.filter_from_errors()


def calls():
    refer = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test"), 1764755775.25)
    for event in SEED_EVENTS:
        refer.record(*event)
    invite = Call(CallRequest(USER1, "201@sipx.test", "+4930123@[::1]:5070", method=INVITE),
                  1764755776.0)
    return [refer, invite]


DIALOGS = [DialogInfo("cid;ft;tt", "sip:user1@sipx.test", "sip:user2@sipx.test", state)
           for state in ("Early Dialog", "Confirmed Dialog", "Completed Dialog",
                         "Terminated Dialog")]


@pytest.mark.parametrize("document", [
    render.processing_status_xml(200, "Success"),
    render.processing_status_xml(404, "Call not found."),
    render.processing_status_xml(503, "text with <markup> & \x01 control"),
    render.status_lines_xml(SEED_EVENTS),
    render.status_lines_xml(()),
    render.dialogs_xml(DIALOGS),
    render.dialogs_xml(()),
    render.empty_document("REFER", False),
    render.empty_document("INVITE", False),
    render.calls_xml(()),
], ids=["ok", "404", "hostile-text", "status-lines", "no-status-lines", "dialogs",
        "no-dialogs", "empty-refer", "empty-invite", "no-calls"])
def test_each_renderers_output_is_valid(schema, document):
    assert_valid(schema, document)


def test_the_calls_list_and_call_documents_are_valid(schema):
    made = calls()
    assert_valid(schema, render.calls_xml(made))
    cache = render.StatusCache()
    for call in made:
        assert_valid(schema, render.call_document(call, False, cache))


def test_a_call_ended_without_its_node_is_listed_validly_with_its_reason(schema):
    lost = StoredCall("id1", "user1@sipx.test", "user1@sipx.test", "user2@sipx.test",
                      "REFER", "ended", True, 1764755775.25, "node0", [], reason="node lost")
    document = render.calls_xml([*calls(), lost])
    assert b"node lost" in document
    assert_valid(schema, document)
    assert not schema.validate(etree.fromstring(document.replace(b"node lost", b"gone")))


def test_the_schema_rejects_a_document_that_breaks_it(schema):
    bad = render.processing_status_xml(200, "Success").replace(b"OK", b"FINE")
    assert not schema.validate(etree.fromstring(bad))
    bad = render.status_lines_xml(SEED_EVENTS).replace(b"1259114103662", b"yesterday")
    assert not schema.validate(etree.fromstring(bad))
