"""Status documents: the original's layout, escaping, and JSON."""

from __future__ import annotations

import json

from lxml import etree

from sipxcc.calls.call import CallRequest, DialogInfo, StatusEvent
from sipxcc.calls.redis_store import StoredCall
from sipxcc.web import render
from tests.unit.webfakes import SEED_EVENTS, FakeRegistry, make_user

NS = "http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00"

SEED_DOCUMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<status-lines xmlns="http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00">
<status>
\t<timestamp>1259114103662</timestamp>
\t<call-id>7959e447b88502416ee2477f3d36a480@12.23.34.45</call-id>
\t<method>INVITE</method>
\t<status-line>SIP/2.0 100 Trying</status-line>
</status>
<status>
\t<timestamp>1259114103667</timestamp>
\t<call-id>7959e447b88502416ee2477f3d36a480@12.23.34.45</call-id>
\t<method>INVITE</method>
\t<status-line>SIP/2.0 407 Proxy Authentication Required</status-line>
</status>
<status>
\t<timestamp>1259114103678</timestamp>
\t<call-id>7959e447b88502416ee2477f3d36a480@12.23.34.45</call-id>
\t<method>INVITE</method>
\t<status-line>SIP/2.0 100 Trying</status-line>
</status>
<status>
\t<timestamp>1259114103841</timestamp>
\t<call-id>7959e447b88502416ee2477f3d36a480@12.23.34.45</call-id>
\t<method>INVITE</method>
\t<status-line>SIP/2.0 180 Ringing</status-line>
</status>
</status-lines>
"""

# The seed (wiki) shows the same document with its indentation stripped.
SEED_WIKI_LINES = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    f'<status-lines xmlns="{NS}">',
    "<status>", "<timestamp>1259114103662</timestamp>",
    "<call-id>7959e447b88502416ee2477f3d36a480@12.23.34.45</call-id>",
    "<method>INVITE</method>", "<status-line>SIP/2.0 100 Trying</status-line>", "</status>",
]


def test_seed_document_byte_for_byte():
    assert render.status_lines_xml(SEED_EVENTS) == SEED_DOCUMENT


def test_seed_document_matches_the_wiki_lines():
    lines = [line.strip() for line in render.status_lines_xml(SEED_EVENTS).decode().splitlines()]
    assert lines[:len(SEED_WIKI_LINES)] == SEED_WIKI_LINES
    assert lines[-1] == "</status-lines>"


def test_empty_documents_as_the_original():
    assert render.empty_document("REFER", False) == (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<status-lines xmlns="{NS}">\n'
        "</status-lines>\n").encode()
    assert render.empty_document("INVITE", False) == (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<dialogs xmlns="{NS}">\n</dialogs>\n'
    ).encode()
    assert json.loads(render.empty_document("REFER", True)) == {"status-lines": []}
    assert json.loads(render.empty_document("INVITE", True)) == {"dialogs": []}


def test_dialogs_document():
    body = render.dialogs_xml([DialogInfo("d1", "sip:a@x", "sip:b@x", "Confirmed Dialog")])
    assert body == (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<dialogs xmlns="{NS}">\n'
        "\t<dialog>\n\t\t<dialog-id>d1</dialog-id>\n\t\t<local-party>sip:a@x</local-party>\n"
        "\t\t<remote-party>sip:b@x</remote-party>\n"
        "\t\t<dialog-state>Confirmed Dialog</dialog-state>\n\t</dialog>\n</dialogs>\n").encode()


def test_processing_status_document():
    assert render.processing_status_xml(400, "Bad parameter timeout = -1") == (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<processing-status xmlns="{NS}">\n'
        "<error-flag>ERROR</error-flag>\n<error-code>400</error-code>\n"
        "<error-text>Bad parameter timeout = -1</error-text>\n</processing-status>\n").encode()
    ok = etree.fromstring(render.processing_status_xml(200, "Success"))
    assert [e.text for e in ok] == ["OK", "200", "Success"]


def test_hostile_text_is_escaped_and_parses_back():
    nasty = "SIP/2.0 200 <b>&amp; ]]> \x00\x07\x1b end \udcff"
    body = render.status_lines_xml([StatusEvent(1, "c<1>", "NOTIFY", nasty)])
    assert b"]]>" not in body and b"<b>" not in body
    line = etree.fromstring(body).find(f"{{{NS}}}status/{{{NS}}}status-line").text
    assert line == "SIP/2.0 200 <b>&amp; ]]>  end ?"


def test_invalid_utf8_bytes_are_replaced():
    assert render.clean_text(b"ok\xff") == "ok\ufffd"


def test_json_documents():
    events = json.loads(render.status_lines_json(SEED_EVENTS[:1]))
    assert events == {"status-lines": [{
        "timestamp": 1259114103662, "call-id": "7959e447b88502416ee2477f3d36a480@12.23.34.45",
        "method": "INVITE", "status-line": "SIP/2.0 100 Trying"}]}
    error = json.loads(render.processing_status_json(429, "slow down\x00"))
    assert error == {"error-flag": "ERROR", "error-code": 429, "error-text": "slow down"}


def make_call():
    registry = FakeRegistry()
    return registry.place(CallRequest(agent=make_user("user1", "201"),
                                      calling="user1@sipx.test", called="user2@sipx.test"))


def test_call_json_has_summary_and_status():
    call = make_call()
    call.record(5, "cid", "INVITE", "SIP/2.0 180 Ringing")
    document = json.loads(render.call_json(call))
    assert document["id"] == call.id and document["state"] == "calling"
    assert (document["calling"], document["called"], document["mode"]) == (
        "user1@sipx.test", "user2@sipx.test", "REFER")
    assert document["status-lines"][0]["status-line"] == "SIP/2.0 180 Ringing"


def test_an_invite_mode_calls_json_says_why_it_ended_beside_its_dialogs():
    # the time limit, a refusal: lines the <dialogs> document has no place for
    registry = FakeRegistry()
    call = registry.place(CallRequest(agent=make_user("user1", "201"), method="INVITE",
                                      calling="user1@sipx.test", called="user2@sipx.test"))
    call.record(5, "cid", "BYE", "Time limit of 3 s reached")
    document = json.loads(render.call_json(call))
    assert document["mode"] == "INVITE" and document["dialogs"] == []
    assert [(line["method"], line["status-line"]) for line in document["status-lines"]] == [
        ("BYE", "Time limit of 3 s reached")]


def test_a_call_ended_without_its_node_says_why_and_one_of_this_node_says_nothing():
    call = make_call()
    assert "reason" not in json.loads(render.call_json(call))
    assert b"reason" not in render.calls_xml([call])
    lost = StoredCall(call.id, call.owner, call.calling, call.called, "REFER", "ended",
                      True, 1764755775.25, "node0", [], reason="node lost")
    assert json.loads(render.call_json(lost))["reason"] == "node lost"
    assert json.loads(render.calls_json([lost]))["calls"][0]["reason"] == "node lost"
    [summary] = etree.fromstring(render.calls_xml([lost]))
    assert summary[-1].tag.endswith("}reason") and summary[-1].text == "node lost"


def test_cached_document_grows_with_new_events():
    call = make_call()
    cache = render.StatusCache()
    first = render.call_document(call, False, cache)
    assert render.call_document(call, False, cache) is first
    call.record(5, "cid", "INVITE", "SIP/2.0 180 Ringing")
    second = render.call_document(call, False, cache)
    assert len(second) > len(first) and b"180 Ringing" in second
    assert b"180 Ringing" in render.call_document(call, True, cache)


def test_calls_list_xml_parses():
    call = make_call()
    root = etree.fromstring(render.calls_xml([call]))
    assert root.tag == f"{{{NS}}}calls"
    assert root.find(f"{{{NS}}}call/{{{NS}}}id").text == call.id


def test_status_cache_follows_new_events_and_stays_bounded():
    from sipxcc.calls.call import Call, CallRequest
    from sipxcc.users import User
    from sipxcc.web.render import StatusCache

    user = User("user1@sipx.test", "user1", (), None, None, None)
    cache = StatusCache(size=2)
    calls = [Call(CallRequest(user, "user1@sipx.test", f"u{i}@sipx.test"), 0) for i in range(3)]
    first = calls[0]
    first.record(1, "c", "INVITE", "SIP/2.0 180 Ringing")
    before = cache.status_lines(first, False)
    assert cache.status_lines(first, False) is before  # rendered once
    first.record(2, "c", "INVITE", "SIP/2.0 200 OK")
    after = cache.status_lines(first, False)
    assert b"200 OK" in after and b"200 OK" not in before
    for call in calls:
        cache.status_lines(call, True)
    assert len(cache._cache) == 2


def test_the_status_cache_keeps_the_4096_calls_most_recently_asked_for():
    from sipxcc.calls.call import Call, CallRequest
    from sipxcc.users import User
    from sipxcc.web.render import StatusCache

    user = User("user1@sipx.test", "user1", (), None, None, None)
    cache = StatusCache()
    calls = [Call(CallRequest(user, "user1@sipx.test", f"u{i}@sipx.test"), 0)
             for i in range(4097)]
    for call in calls:
        cache.status_lines(call, False)
    assert len(cache._cache) == 4096
    assert calls[0].id not in cache._cache and calls[-1].id in cache._cache
