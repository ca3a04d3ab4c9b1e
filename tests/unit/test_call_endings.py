"""What the calling user's phone is told when the call cannot be connected (busy, declined,
not found, no answer), and how it is parked while the called user rings; on a Clock."""

from __future__ import annotations

import pytest

from sipxcc.calls.reasons import ending_reason
from sipxcc.calls.refer import REFER_LIMIT
from sipxcc.calls.sdp import SessionDescription
from tests.unit import test_invite_flow as invite_mode
from tests.unit import test_refer_flow as refer_mode
from tests.unit.sipfakes import FarEnd, answer

REFUSALS = [  # (status, reason phrase, Q.850 cause): RFC 3398 §8.2.6.1
    (486, "Busy Here", 17),
    (603, "Decline", 21),
    (404, "Not Found", 1),
    (480, "Temporarily Unavailable", 18),
]


def reasons(message) -> list[str]:
    return message.headers.values("Reason")


def parked_caller(**kw):
    """INVITE mode with the calling user answered and the called user's INVITE out."""
    net, registry, call = invite_mode.setup(**kw)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(invite_mode.A_ANSWER1))
    ack, invite2 = net.sent_messages()
    return net, call, invite1, invite2


@pytest.mark.parametrize(("status", "phrase", "q850"), REFUSALS)
def test_invite_mode_refusal_ends_the_callers_leg_with_sip_and_q850_cause(status, phrase, q850):
    # UN-133: the calling user must hear busy (or declined, ...), not silence
    net, call, invite1, invite2 = parked_caller()
    net.deliver(answer(invite2, status, phrase, "b1"))
    [bye] = [m for m in net.sent_messages() if m.method == "BYE"]
    assert bye.call_id == invite1.call_id
    assert reasons(bye) == [f'SIP;cause={status};text="{phrase}"', f"Q.850;cause={q850}"]
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "failed"


def test_invite_mode_no_answer_is_480_with_q850_19_not_our_own_487():
    net, call, invite1, invite2 = parked_caller(timeout=40)
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(40)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    net.deliver(answer(invite2, 487, "Request Terminated", "b1"))
    [bye] = [m for m in net.sent_messages() if m.method == "BYE"]
    assert reasons(bye) == ['SIP;cause=480;text="No Answer"', "Q.850;cause=19"]


def test_a_hangup_while_the_callee_rings_is_not_reported_as_no_answer():
    net, call, invite1, invite2 = parked_caller()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    call.flow.hangup("Deleted")
    sent = net.sent_messages()
    assert sorted(m.method for m in sent) == ["BYE", "CANCEL"]
    [bye] = [m for m in sent if m.method == "BYE"]
    assert reasons(bye) == ['SIP;cause=200;text="Deleted"']


def test_the_parked_caller_is_offered_an_inactive_stream():
    net, registry, call = invite_mode.setup()
    [invite1] = net.sent_messages()
    offer = SessionDescription.parse(invite1.body)
    assert offer.direction == "inactive"
    assert [m.direction for m in offer.media] == ["inactive"]
    assert offer.connection == "IN IP4 0.0.0.0"


def test_the_parked_caller_stays_parked_through_a_long_ring_then_gets_the_callees_offer():
    net, call, invite1, invite2 = parked_caller(timeout=180)
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(170)
    assert net.sent_messages() == [] and not call.ended
    b = FarEnd(invite2, "<sip:user2@127.0.0.1:5072>")
    net.deliver(b.ok(invite_mode.B_OFFER))
    [reoffer] = net.sent_messages()
    assert (reoffer.method, reoffer.call_id) == ("INVITE", invite1.call_id)
    assert SessionDescription.parse(reoffer.body).direction == "sendrecv"


def refer_transferring():
    net, registry, call = refer_mode.setup()
    _, _, phone, refer = refer_mode.connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active"),
                                         ("Content-Type", "message/sipfrag;version=2.0")],
                              b"SIP/2.0 100 Trying\r\n"))
    assert [m.status for m in net.sent_messages()] == [200]
    return net, call, phone


@pytest.mark.parametrize(("status", "phrase", "q850"), REFUSALS)
def test_refer_mode_final_sipfrag_refusal_ends_the_callers_leg_with_its_cause(status, phrase,
                                                                              q850):
    # UN-133 in REFER mode: the calling user's phone is told why (busy -> Q.850 17)
    net, call, phone = refer_transferring()
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "terminated"),
                                         ("Content-Type", "message/sipfrag;version=2.0")],
                              f"SIP/2.0 {status} {phrase}\r\n".encode()))
    [bye] = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    assert reasons(bye) == [f'SIP;cause={status};text="{phrase}"', f"Q.850;cause={q850}"]


def test_refer_target_that_never_sends_a_final_notify_does_not_leave_the_call_hanging():
    # XX-11138
    net, call, phone = refer_transferring()
    net.clock.advance(REFER_LIMIT + 1)
    [bye] = net.sent_messages()
    assert bye.method == "BYE" and reasons(bye)[0].startswith("SIP;cause=408")
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended


def test_a_subscription_terminated_before_the_final_sipfrag_does_not_leave_the_call_hanging():
    # XX-11139
    net, call, phone = refer_transferring()
    net.deliver(phone.request("NOTIFY", [("Event", "refer"),
                                         ("Subscription-State", "terminated;reason=noresource"),
                                         ("Content-Type", "message/sipfrag;version=2.0")],
                              b"SIP/2.0 180 Ringing\r\n"))
    sent = net.sent_messages()
    assert [getattr(m, "method", None) or m.status for m in sent] == [200, "BYE"]
    net.deliver(answer(sent[1], 200, "OK"))
    assert call.ended


def test_ending_reason_quotes_peer_text_and_omits_an_unmapped_q850_cause():
    assert ending_reason(499, 'Odd "text"') == ("Reason", r'SIP;cause=499;text="Odd \"text\""')
    assert ending_reason(486, "Busy") == ("Reason", 'SIP;cause=486;text="Busy", Q.850;cause=17')
