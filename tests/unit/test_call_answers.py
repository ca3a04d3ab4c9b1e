"""What the phones are told, exactly: the first INVITE's headers and offer, the status line of
every answer the flows give, the Reason of each BYE when a session cannot be set up, and
the o= line our SDP sessions carry."""

from __future__ import annotations

import pytest

from sipxcc.calls.relay import SessionFace
from sipxcc.calls.sdp import SessionDescription
from tests.unit import test_invite_flow as inv
from tests.unit import test_refer_flow as ref
from tests.unit.sipfakes import FarEnd, answer

SDP = ("Content-Type", "application/sdp")


def test_the_first_invite_announces_what_we_accept_and_offers_a_fresh_session():
    sessions = set()
    for _ in range(40):
        net, registry, call = ref.setup()
        [invite] = net.sent_messages()
        assert invite.headers.get("Allow") == "INVITE"  # the first of a comma list
        assert b"\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n" in \
            invite.to_bytes()
        assert invite.headers.get("Accept") == "application/sdp"
        assert invite.headers.get("Content-Type") == "application/sdp"
        for name in ("Call-Info", "Alert-Info", "Answer-Mode", "Subject"):
            assert invite.headers.get(name) is None
        origin = SessionDescription.parse(invite.body).origin
        assert origin.version == 1 and 1 <= origin.session_id < 2**31
        sessions.add(origin.session_id)
    assert len(sessions) == 40


def test_auto_answer_asks_the_phone_to_pick_up_by_itself():
    net, registry, call = ref.setup(auto_answer=True)
    [invite] = net.sent_messages()
    assert invite.headers.get("Call-Info") == "<sip:sipx.test>;answer-after=0"
    assert invite.headers.get("Alert-Info") == "<sip:sipx.test>;info=alert-autoanswer"
    assert invite.headers.get("Answer-Mode") == "Auto"
    assert invite.headers.get("Accept") == "application/sdp"  # added to, not replacing


def test_the_refer_flows_in_dialog_answers_have_their_reason_phrases():
    net, registry, call = ref.setup()
    _, _, phone, refer = ref.connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    expected = {"OPTIONS": (200, "OK"), "INFO": (200, "OK"),
                "INVITE": (488, "Not Acceptable Here"), "UPDATE": (488, "Not Acceptable Here"),
                "MESSAGE": (405, "Method Not Allowed")}
    for method, status in expected.items():
        request = phone.request(method)
        net.deliver(request)
        [response] = [m for m in net.sent_messages() if m.cseq == request.cseq]
        assert (response.status, response.reason) == status
    notify = phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active")])
    net.deliver(notify)
    [ok] = [m for m in net.sent_messages() if m.cseq == notify.cseq]
    assert (ok.status, ok.reason) == (200, "OK")
    bye = phone.request("BYE")
    net.deliver(bye)
    [ok] = [m for m in net.sent_messages() if m.cseq == bye.cseq]
    assert (ok.status, ok.reason) == (200, "OK")
    assert call.state == "ended"


def test_the_relays_own_answers_have_their_reason_phrases():
    c = inv.Connected()
    prack = c.a.request("PRACK", [("RAck", "1 1 INVITE")])
    c.net.deliver(prack)
    [response] = c.sent()
    assert (response.status, response.reason) == (481, "Call/Transaction Does Not Exist")
    c.net.deliver(c.b.request("INVITE", [SDP], inv.sdp("bob", 222, 8, "10.0.0.2", 5000)))
    trying, relayed = c.sent()
    assert (trying.status, trying.reason) == (100, "Trying")
    again = c.b.request("INVITE", [SDP], inv.sdp("bob", 222, 9, "10.0.0.2", 5000))
    c.net.deliver(again)
    [busy] = c.sent()
    assert (busy.status, busy.reason) == (500, "Server Internal Error")
    glare = c.a.request("INVITE", [SDP], inv.sdp("alice", 111, 3, "10.0.0.1", 4000))
    c.net.deliver(glare)
    [pending] = c.sent()
    assert (pending.status, pending.reason) == (491, "Request Pending")


@pytest.mark.parametrize("method,pending", [("UPDATE", True), ("INFO", False)])
def test_only_an_update_with_an_offer_waits_for_a_pending_reinvite(method, pending):
    c = inv.Connected()
    c.net.deliver(c.b.request("INVITE", [SDP], inv.sdp("bob", 222, 8, "10.0.0.2", 5000)))
    c.sent()
    request = c.a.request(method, [SDP], inv.sdp("alice", 111, 3, "10.0.0.1", 4000))
    c.net.deliver(request)
    sent = c.sent()
    if pending:
        assert [(m.status, m.call_id) for m in sent] == [(491, c.invite1.call_id)]
    else:
        assert [(m.method, m.call_id) for m in sent] == [(method, c.invite2.call_id)]
    plain = c.a.request("UPDATE")  # no offer: nothing to collide with
    c.net.deliver(plain)
    assert [(m.method, m.call_id) for m in c.sent()] == [("UPDATE", c.invite2.call_id)]


def up_to_b_answer():
    net, registry, call = inv.setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(inv.A_ANSWER1))
    _, invite2 = net.sent_messages()
    return net, call, invite1, invite2


def byes(sent):
    return [m for m in sent if getattr(m, "method", None) == "BYE"]


def finish(net, call, sent):
    for bye in byes(sent):
        net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "failed"


def test_a_callee_answer_without_sdp_is_refused_as_expecting_sdp():
    net, call, invite1, invite2 = up_to_b_answer()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok())
    sent = net.sent_messages()
    assert {m.headers.get("Reason") for m in byes(sent)} == {
        'SIP;cause=488;text="Expecting SDP body"'}
    finish(net, call, sent)


def test_a_callee_offer_that_is_no_sdp_is_refused_as_bad_sdp():
    net, call, invite1, invite2 = up_to_b_answer()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok(b"v=0\r\nbroken\r\n"))
    sent = net.sent_messages()
    assert {m.headers.get("Reason") for m in byes(sent)} == {'SIP;cause=488;text="Bad SDP"'}
    assert sorted((m.method, m.call_id) for m in sent) == sorted([
        ("ACK", invite2.call_id), ("BYE", invite1.call_id), ("BYE", invite2.call_id)])
    finish(net, call, sent)


@pytest.mark.parametrize("body,headers", [(b"", ()), (b"v=0\r\nbroken\r\n", (SDP,))])
def test_a_caller_answering_the_offer_without_usable_sdp_ends_the_call(body, headers):
    net, call, invite1, invite2 = up_to_b_answer()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok(inv.B_OFFER))
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 200, "OK", None,
                       [("Contact", "<sip:user1@127.0.0.1:5071>"), *headers], body))
    sent = net.sent_messages()
    assert ("ACK", invite1.call_id) in [(m.method, m.call_id) for m in sent]
    assert {m.headers.get("Reason") for m in byes(sent)} == {
        'SIP;cause=488;text="Expecting SDP answer"'}
    finish(net, call, sent)


def test_a_caller_refusing_the_offer_with_300_ends_the_call_with_that_reason():
    net, call, invite1, invite2 = up_to_b_answer()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok(inv.B_OFFER))
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 300, "Multiple Choices"))
    sent = net.sent_messages()
    assert {m.headers.get("Reason") for m in byes(sent)} == {
        'SIP;cause=300;text="Multiple Choices"'}
    finish(net, call, sent)


@pytest.mark.parametrize("address,origin", [
    ("192.0.2.10", ("IP4", "192.0.2.10")), ("2001:db8::1", ("IP6", "2001:db8::1")),
    ("[2001:db8::2]", ("IP6", "2001:db8::2")), ("host.example", ("IP4", "0.0.0.0")),
])
def test_our_sessions_o_line_names_our_address(address, origin):
    face = SessionFace(address, session_id=77)
    sdp = SessionDescription.parse(face.black_hole())
    assert (sdp.origin.username, sdp.origin.session_id, sdp.origin.version) == ("sipxcc", 77, 1)
    assert (sdp.origin.addr_type, sdp.origin.address) == origin
