"""The REFER flow's deadlines and hang-ups, on a Clock, checked from both sides of each edge.

What the user sees is on the wire: a CANCEL to the ringing phone when `timeout` ends or the
call is DELETEd, a BYE when the transfer's 32-s limit passes without a final NOTIFY.
"""

from __future__ import annotations

from sipxcc.calls.refer import REFER_LIMIT
from tests.unit.sipfakes import answer
from tests.unit.test_refer_flow import connect, lines, setup

JUST_BEFORE = 0.25  # exact in binary, so the Clock lands on the deadline to the bit


def test_ringing_phone_is_not_cancelled_before_timeout():
    net, registry, call = setup(timeout=20)
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    net.clock.advance(20 - JUST_BEFORE)
    assert net.sent_messages() == []
    assert call.state == "ringing"


def test_ringing_phone_is_cancelled_exactly_at_timeout():
    net, registry, call = setup(timeout=20)
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    net.clock.advance(20 - JUST_BEFORE)
    net.clock.advance(JUST_BEFORE)
    assert net.clock.seconds() == 20
    [cancel] = net.sent_messages()
    assert (cancel.method, cancel.uri, cancel.cseq) == ("CANCEL", invite.uri,
                                                       (invite.cseq[0], "CANCEL"))
    assert call.state == "cancelling"


def transferring(net, call):
    """A call whose REFER the phone accepted: the 32-s wait for the final NOTIFY runs."""
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    assert net.sent_messages() == []
    assert call.state == "transferring"
    return phone


def test_transfer_limit_is_32_seconds():
    assert REFER_LIMIT == 32


def test_no_bye_before_the_transfer_limit():
    net, registry, call = setup()
    transferring(net, call)
    net.clock.advance(32 - JUST_BEFORE)
    assert net.sent_messages() == []
    assert call.state == "transferring"


def test_transfer_limit_hangs_up_with_reason_408():
    net, registry, call = setup()
    transferring(net, call)
    start = net.clock.seconds()
    net.clock.advance(32 - JUST_BEFORE)
    net.clock.advance(JUST_BEFORE)
    assert net.clock.seconds() == start + 32
    [bye] = net.sent_messages()
    assert bye.method == "BYE"
    assert bye.headers.get("Reason") == 'SIP;cause=408;text="Transfer timed out"'
    assert call.state == "hanging-up"
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "ended"


def test_notify_in_time_stops_the_transfer_limit():
    net, registry, call = setup()
    phone = transferring(net, call)
    net.clock.advance(31)
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "terminated"),
                                         ("Content-Type", "message/sipfrag")],
                              b"SIP/2.0 200 OK\r\n"))
    ok, bye = net.sent_messages()
    assert (ok.status, bye.method) == (200, "BYE")  # the NOTIFY's 200 OK, then our BYE
    assert bye.headers.get("Reason") == 'SIP;cause=200;text="Call transferred"'
    net.deliver(answer(bye, 200, "OK"))
    assert call.state == "ended"
    net.clock.advance(5)
    assert net.sent_messages() == []  # no second BYE when 32 s have passed


def test_delete_of_a_ringing_call_cancels_it():
    net, registry, call = setup(timeout=60)
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    registry.hangup(call)
    [cancel] = net.sent_messages()
    assert (cancel.method, cancel.cseq) == ("CANCEL", (invite.cseq[0], "CANCEL"))
    assert call.state == "cancelling"
    net.deliver(answer(cancel, 200, "OK", "t1"))
    net.deliver(answer(invite, 487, "Request Terminated", "t1"))
    [ack] = net.sent_messages()
    assert ack.method == "ACK"
    assert call.ended and call.state == "failed"
    assert lines(call)[-1] == ("INVITE", "SIP/2.0 487 Request Terminated")


def test_delete_before_any_response_cancels_once_a_provisional_arrives():
    # RFC 3261 §9.1: a CANCEL may only follow a provisional response.
    net, registry, call = setup(timeout=60)
    [invite] = net.sent_messages()
    registry.hangup(call)
    assert net.sent_messages() == []
    net.deliver(answer(invite, 100, "Trying"))
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
