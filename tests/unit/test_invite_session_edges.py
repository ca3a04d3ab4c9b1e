"""INVITE mode: which session each leg is known to have (what a transfer target is offered),
offers crossing each other (491), SDP labelled as something else, and answers that cross
our CANCEL."""

from __future__ import annotations

import pytest

from sipxcc.calls.relay import SessionFace
from sipxcc.calls.sdp import SessionDescription
from sipxcc.sip.grammar import UnsafeValue
from tests.unit.sipfakes import FarEnd, answer
from tests.unit.test_invite_flow import (
    A_ANSWER1,
    B_OFFER,
    SDP_TYPE,
    Connected,
    content,
    methods,
    sdp,
    setup,
)

TEXT_TYPE = ("Content-Type", "text/plain")


def test_the_target_is_offered_what_the_callee_answered_the_callers_reinvite():
    c = Connected()
    c.net.deliver(c.a.request("INVITE", [SDP_TYPE], sdp("alice", 111, 3, "10.0.0.1", 4010)))
    _trying, relayed = c.sent()
    b_answer = sdp("bob", 222, 8, "10.0.0.2", 5030)
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.b.contact), SDP_TYPE],
                         b_answer))
    c.sent()
    ack = c.a.request("ACK")
    ack.headers.set("CSeq", f"{c.a.cseq - 1} ACK")
    c.net.deliver(ack)
    c.sent()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    assert content(invite_x.body) == content(b_answer)


def test_the_target_is_offered_the_answer_the_callee_gave_in_its_ack():
    c = Connected()
    c.net.deliver(c.b.request("INVITE"))  # no offer: A offers in its 2xx, B answers in the ACK
    _trying, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.a.contact), SDP_TYPE],
                         sdp("alice", 111, 3, "10.0.0.1", 4000)))
    c.sent()
    b_answer = sdp("bob", 222, 8, "10.0.0.2", 5040)
    ack = c.b.request("ACK", [SDP_TYPE], b_answer)
    ack.headers.set("CSeq", f"{c.b.cseq - 1} ACK")
    c.net.deliver(ack)
    c.sent()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    assert content(invite_x.body) == content(b_answer)


def test_an_update_offering_while_its_senders_reinvite_is_relayed_gets_491():
    c = Connected()
    c.net.deliver(c.a.request("INVITE", [SDP_TYPE], sdp("alice", 111, 3, "10.0.0.1", 4010)))
    c.sent()
    update = c.a.request("UPDATE", [SDP_TYPE], sdp("alice", 111, 4, "10.0.0.1", 4020))
    c.net.deliver(update)
    [refused] = c.sent()  # RFC 3311 §5.2: an offer is outstanding
    assert (refused.cseq, refused.status, refused.reason) == (update.cseq, 491,
                                                              "Request Pending")


def test_a_reinvite_while_the_target_rings_gets_491():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    reinvite = c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000))
    c.net.deliver(reinvite)
    [refused] = c.sent()  # we are moving B's session ourselves
    assert (refused.cseq, refused.status, refused.reason) == (reinvite.cseq, 491,
                                                              "Request Pending")


def test_a_target_without_sdp_once_the_caller_left_ends_the_call_with_488():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    c.net.deliver(c.a.request("BYE"))
    c.sent()
    c.net.deliver(FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>").ok())  # 200 without SDP
    sent = c.sent()
    [bye_b] = [m for m in sent if m.method == "BYE" and m.call_id == c.invite2.call_id]
    assert bye_b.headers.values("Reason") == ['SIP;cause=488;text="Expecting SDP answer"',
                                              "Q.850;cause=127"]
    for bye in (m for m in sent if m.method == "BYE"):
        c.net.deliver(answer(bye, 200, "OK"))
    assert (c.call.ended, c.call.state) == (True, "ended")


def test_a_target_answering_with_sdp_labelled_text_is_hung_up_and_the_call_stays():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    ok = x.ok(sdp("xavier", 333, 1, "10.0.0.3", 6000))
    ok.headers.set("Content-Type", "text/plain")
    c.net.deliver(ok)
    sent = c.sent()
    assert [(m.method, m.call_id) for m in sent] == [("ACK", invite_x.call_id),
                                                     ("BYE", invite_x.call_id)]
    assert sent[1].headers.get("Reason") == 'SIP;cause=488;text="Expecting SDP answer"'
    assert c.call.state == "connected"


def test_a_caller_answering_the_offer_with_sdp_labelled_text_ends_the_call_with_488():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1, "<sip:user1@127.0.0.1:5071>")
    net.deliver(a.ok(A_ANSWER1))
    _ack, invite2 = net.sent_messages()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok(B_OFFER))
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 200, "OK", None, [("Contact", a.contact), TEXT_TYPE],
                       sdp("alice", 111, 2, "10.0.0.1", 4002)))
    sent = net.sent_messages()
    assert sorted(methods(sent)) == ["ACK", "ACK", "BYE", "BYE"]
    assert {m.headers.get("Reason") for m in sent if m.method == "BYE"} == {
        'SIP;cause=488;text="Expecting SDP answer"'}
    [ack_b] = [m for m in sent if m.method == "ACK" and m.call_id == invite2.call_id]
    # RFC 3261 §13.2.2.4: B's offer is answered, with every stream refused
    assert ack_b.headers.get("Content-Type") == "application/sdp"
    assert b"m=audio 0 RTP/AVP" in ack_b.body
    assert call.state != "connected"


def test_a_callee_answering_as_its_ring_timeout_cancel_goes_is_no_answer():
    net, registry, call = setup(timeout=30)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1, "<sip:user1@127.0.0.1:5071>").ok(A_ANSWER1))
    _ack, invite2 = net.sent_messages()
    b = FarEnd(invite2, "<sip:user2@127.0.0.1:5072>")
    net.deliver(answer(invite2, 180, "Ringing", b.tag))
    net.clock.advance(30)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    net.deliver(b.ok(B_OFFER))  # the 200 crossed our CANCEL (RFC 3261 §15)
    sent = net.sent_messages()
    assert sorted((m.method, m.call_id) for m in sent) == sorted([
        ("ACK", invite2.call_id), ("BYE", invite2.call_id), ("BYE", invite1.call_id)])
    [bye_a] = [m for m in sent if m.method == "BYE" and m.call_id == invite1.call_id]
    # what A's phone is told is what a ring timeout always tells it
    assert bye_a.headers.values("Reason") == ['SIP;cause=480;text="No Answer"',
                                              "Q.850;cause=19"]


def test_a_delete_between_a_ring_timeouts_cancel_and_its_487_still_ends_the_call():
    net, registry, call = setup(timeout=30)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1, "<sip:user1@127.0.0.1:5071>").ok(A_ANSWER1))
    _ack, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(30)
    [cancel] = net.sent_messages()
    call.flow.hangup("Deleted")
    [bye_a] = net.sent_messages()  # B is being cancelled already: no second CANCEL
    assert (bye_a.method, bye_a.call_id) == ("BYE", invite1.call_id)
    net.deliver(answer(cancel, 200, "OK", "b1"))
    net.deliver(answer(invite2, 487, "Request Terminated", "b1"))
    net.deliver(answer(bye_a, 200, "OK"))
    assert methods(net.sent_messages()) == ["ACK"]
    assert (call.ended, call.state) == (True, "failed")


def test_a_transfer_to_an_unusable_target_is_refused_and_a_delete_still_ends_the_call():
    c = Connected()
    with pytest.raises(UnsafeValue):
        c.registry.transfer(c.call, "bad target <>")
    assert c.sent() == [] and c.call.state == "connected"
    c.call.flow.hangup("Deleted")
    byes = c.sent()
    assert sorted(m.call_id for m in byes) == sorted([c.invite1.call_id, c.invite2.call_id])
    for bye in byes:
        c.net.deliver(answer(bye, 200, "OK"))
    assert (c.call.ended, c.call.state) == (True, "ended")


def test_the_refusal_of_an_offer_whose_stream_lists_no_format_names_format_0():
    offer = (b"v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
             b"m=audio 5000 RTP/AVP\r\n")
    refusal = SessionDescription.parse(SessionFace("127.0.0.1").refusal(offer))
    assert [m[1] for m in refusal.lines if m[0] == "m"] == ["audio 0 RTP/AVP 0"]


def test_a_targets_bye_crossing_ours_keeps_the_call():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok())  # no SDP: we ACK and BYE it
    c.sent()
    c.net.deliver(x.request("BYE"))  # X hangs up too, before our BYE is answered
    assert [m.status for m in c.sent()] == [200]
    assert c.call.state == "connected" and not c.call.ended


def test_the_callee_hanging_up_while_the_target_rings_ends_the_call():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    c.net.deliver(answer(invite_x, 180, "Ringing", "x1"))
    c.net.deliver(c.b.request("BYE"))
    sent = c.sent()
    assert sorted(methods(sent), key=str) == sorted([200, "BYE", "CANCEL"], key=str)
    requests = [(m.method, m.call_id) for m in sent if getattr(m, "method", None)]
    assert sorted(requests) == [("BYE", c.invite1.call_id), ("CANCEL", invite_x.call_id)]


def test_the_callees_late_ack_is_not_passed_to_a_caller_gone_during_a_transfer():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000)))
    _trying, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.a.contact), SDP_TYPE],
                         sdp("alice", 111, 3, "10.0.0.1", 4000)))
    [ok_to_b] = c.sent()  # B has not ACKed it yet
    c.registry.transfer(c.call, "user3@sipx.test")
    c.sent()
    c.net.deliver(c.a.request("BYE"))  # A leaves while X rings
    c.sent()
    ack = c.b.request("ACK", [SDP_TYPE], sdp("bob", 222, 9, "10.0.0.2", 5000))
    ack.headers.set("CSeq", f"{c.b.cseq - 1} ACK")
    c.net.deliver(ack)
    assert c.sent() == []  # A's dialog is over: nothing goes to it
