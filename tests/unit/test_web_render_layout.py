"""The status documents byte for byte: /calls and <dialogs> layout, JSON field names, UTF-8
as is, and which calls the rendered-document cache keeps."""

from __future__ import annotations

import json

from sipxcc.calls.call import Call, CallRequest, DialogInfo
from sipxcc.web import render
from tests.unit.webfakes import make_user

NS = b'xmlns="http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00"'


def call(called="user2@sipx.test", method="REFER", created=1000.5) -> Call:
    request = CallRequest(make_user("user1", "201"), "user1@sipx.test", called, method=method)
    made = Call(request, created)
    made.id = "ID1"
    return made


def test_the_calls_list_layout():
    body = render.calls_xml([call("Caf\u00e9@sipx.test")])
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<calls ' + NS + b'>\n'
        b"<call>\n\t<id>ID1</id>\n\t<state>calling</state>\n"
        b"\t<calling>user1@sipx.test</calling>\n"
        b"\t<called>Caf\xc3\xa9@sipx.test</called>\n\t<mode>REFER</mode>\n"
        b"\t<created>1000.5</created>\n</call>\n</calls>\n")


def test_the_dialogs_layout():
    dialogs = [DialogInfo("d1", "sip:a", "sip:b", "Early Dialog"),
               DialogInfo("d2", "sip:c", "sip:\u00e9", "Confirmed Dialog")]
    body = render.dialogs_xml(dialogs)
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<dialogs ' + NS + b'>\n\t'
        b"<dialog>\n\t\t<dialog-id>d1</dialog-id>\n\t\t<local-party>sip:a</local-party>\n"
        b"\t\t<remote-party>sip:b</remote-party>\n\t\t<dialog-state>Early Dialog</dialog-state>"
        b"\n\t</dialog>\n\t"
        b"<dialog>\n\t\t<dialog-id>d2</dialog-id>\n\t\t<local-party>sip:c</local-party>\n"
        b"\t\t<remote-party>sip:\xc3\xa9</remote-party>\n"
        b"\t\t<dialog-state>Confirmed Dialog</dialog-state>\n\t</dialog>\n</dialogs>\n")


def test_json_documents_name_every_field_and_keep_utf8():
    invite = call("Caf\u00e9@sipx.test", method="INVITE")
    invite.set_dialog_source(lambda: [DialogInfo("d1", "sip:a", "sip:\u00e9", "Early Dialog")])
    body = render.call_json(invite)
    assert "Caf\u00e9".encode() in body and b"\\u00e9" not in body
    assert json.loads(body) == {
        "id": "ID1", "state": "calling", "calling": "user1@sipx.test",
        "called": "Caf\u00e9@sipx.test", "mode": "INVITE", "created": 1000.5,
        "dialogs": [{"dialog-id": "d1", "local-party": "sip:a", "remote-party": "sip:\u00e9",
                     "dialog-state": "Early Dialog"}], "status-lines": []}
    assert json.loads(render.call_document(invite, True, render.StatusCache())) == {
        "dialogs": [{"dialog-id": "d1", "local-party": "sip:a", "remote-party": "sip:\u00e9",
                     "dialog-state": "Early Dialog"}]}
    assert render.call_document(invite, False, render.StatusCache()).startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<dialogs ')


def test_the_status_lines_document_as_json_and_xml_from_the_cache():
    refer = call()
    refer.record(1000, "c1", "INVITE", "SIP/2.0 180 Ringing")
    cache = render.StatusCache()
    as_json = render.call_document(refer, True, cache)
    assert json.loads(as_json) == {"status-lines": [
        {"timestamp": 1000, "call-id": "c1", "method": "INVITE",
         "status-line": "SIP/2.0 180 Ringing"}]}
    as_xml = render.call_document(refer, False, cache)
    assert as_xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<status-lines ')


def test_the_cache_forgets_the_least_recently_asked_call():
    cache = render.StatusCache(size=2)
    calls = [call(f"u{n}@sipx.test") for n in range(3)]
    for n, each in enumerate(calls):
        each.id = f"ID{n}"
    cache.status_lines(calls[0], False)
    cache.status_lines(calls[1], False)
    cache.status_lines(calls[0], False)  # asked again: now the most recent
    cache.status_lines(calls[2], False)
    assert list(cache._cache) == ["ID0", "ID2"]
