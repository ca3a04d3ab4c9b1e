"""
INVITE mode: what the phones get back and what the status document records, exactly —
the 200 OK a hanging-up phone receives, the time-limit line on the calling user's dialog,
and an unanswered INVITE recorded as that INVITE's 408.
"""

from __future__ import annotations

from sipxcc.timers import SLACK
from tests.unit.sipfakes import answer
from tests.unit.test_invite_flow import Connected, setup


def test_a_phone_hanging_up_gets_200_ok_and_the_call_ends():
    c = Connected()
    bye = c.a.request("BYE")
    c.net.deliver(bye)
    sent = c.sent()
    [ok] = [m for m in sent if m.cseq == bye.cseq]
    assert (ok.status, ok.reason) == (200, "OK")
    [bye_b] = [m for m in sent if getattr(m, "method", None) == "BYE"]
    c.net.deliver(answer(bye_b, 200, "OK"))
    assert (c.call.ended, c.call.state) == (True, "ended")


def test_the_time_limit_line_is_a_bye_line_at_the_time_it_was_reached():
    c = Connected(time_limit=60)
    start_ms = int(c.net.clock.seconds() * 1000)
    c.net.clock.advance(60 + SLACK)
    [line] = [e for e in c.call.events if "Time limit" in e.status_line]
    assert (line.call_id, line.method, line.status_line) == (
        c.invite1.call_id, "BYE", "Time limit of 60 s reached")
    assert line.timestamp == start_ms + int((60 + SLACK) * 1000)


def test_an_unanswered_invite_is_recorded_as_its_own_408():
    net, _, call = setup()
    [invite1] = net.sent_messages()
    net.clock.advance(40)  # Timer B: 64*T1
    assert [(e.call_id, e.method, e.status_line) for e in call.events] == [
        (invite1.call_id, "INVITE", "SIP/2.0 408 Request Timeout")]
    assert (call.ended, call.state) == (True, "failed")


def test_a_callee_answering_our_ring_timeout_cancel_with_408_is_still_no_answer():
    from tests.unit.sipfakes import FarEnd
    from tests.unit.test_invite_flow import A_ANSWER1
    net, _, call = setup(timeout=30)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(30)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    net.deliver(answer(invite2, 408, "Request Timeout", "b1"))
    bye = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    assert [m.headers.values("Reason") for m in bye] == [
        ['SIP;cause=480;text="No Answer"', "Q.850;cause=19"]]


def test_a_phone_answering_without_ringing_first_is_shown_as_a_confirmed_dialog():
    from tests.unit.sipfakes import FarEnd
    from tests.unit.test_invite_flow import A_ANSWER1
    net, _, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1)
    net.deliver(a.ok(A_ANSWER1))  # no 180: there never was an early dialog
    [dialog] = [d for d in call.dialogs() if d.dialog_id.startswith(invite1.call_id)]
    assert dialog.dialog_id.endswith(":" + a.tag)
    assert dialog.state == "Confirmed Dialog"
