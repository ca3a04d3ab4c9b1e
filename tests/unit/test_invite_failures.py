"""INVITE mode when the network fails rather than a phone refusing: INVITEs and re-INVITEs
with no answer at all, and a CANCEL whose INVITE never ends."""

from __future__ import annotations

from sipxcc.calls.invite import CANCEL_LIMIT
from tests.unit.sipfakes import FarEnd, answer
from tests.unit.test_invite_flow import A_ANSWER1, B_OFFER, lines, methods, setup


def test_a_caller_that_never_answers_at_all_fails_the_call_with_408():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.clock.advance(31.9)
    assert not call.ended
    net.clock.advance(0.1)  # Timer B
    assert call.ended and call.state == "failed"
    assert lines(call)[-1] == (invite1.call_id, "SIP/2.0 408 Request Timeout")
    assert [m.method for m in net.sent_messages() if m.method != "INVITE"] == []


def test_a_callee_that_never_answers_at_all_hangs_up_the_caller_with_408():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1)
    net.deliver(a.ok(A_ANSWER1))
    ack, invite2 = net.sent_messages()
    net.clock.advance(32)
    sent = [m for m in net.sent_messages() if m.method != "INVITE"]
    assert [(m.method, m.call_id) for m in sent] == [("BYE", invite1.call_id)]
    assert sent[0].headers.get("Reason") == 'SIP;cause=408;text="Request Timeout"'
    assert lines(call)[-1] == (invite2.call_id, "SIP/2.0 408 Request Timeout")
    net.deliver(answer(sent[0], 200, "OK"))
    assert call.ended and call.state == "failed"


def test_a_cancel_whose_invite_never_ends_gives_up_after_its_limit():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 180, "Ringing", "a1"))
    call.flow.hangup("Deleted")
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    net.deliver(answer(cancel, 200, "OK", "a1"))
    net.clock.advance(CANCEL_LIMIT - 0.1)
    assert not call.ended
    net.clock.advance(0.1)
    assert call.ended and call.state == "failed"


def test_a_caller_silent_on_the_callees_offer_ends_the_call_with_408():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1)
    net.deliver(a.ok(A_ANSWER1))
    ack, invite2 = net.sent_messages()
    b = FarEnd(invite2, "<sip:user2@127.0.0.1:5072>")
    net.deliver(b.ok(B_OFFER))
    [reinvite_a] = net.sent_messages()
    assert reinvite_a.method == "INVITE" and reinvite_a.call_id == invite1.call_id
    net.clock.advance(32)
    sent = [m for m in net.sent_messages() if m.method != "INVITE"]
    assert sorted(methods(sent)) == ["ACK", "BYE", "BYE"]
    [ack_b] = [m for m in sent if m.method == "ACK"]
    assert ack_b.call_id == invite2.call_id and b" 0 RTP/AVP" in ack_b.body  # a refusal
    assert all(m.headers.get("Reason") == 'SIP;cause=408;text="Request Timeout"'
               for m in sent if m.method == "BYE")
    for bye in (m for m in sent if m.method == "BYE"):
        net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "failed"
