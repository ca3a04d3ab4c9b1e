"""The REFER flow's less travelled paths: timeouts, hang-ups, odd in-dialog requests."""

from __future__ import annotations

from sipxcc.calls.refer import REFER_LIMIT
from tests.unit.sipfakes import answer
from tests.unit.test_refer_flow import connect, lines, setup


def methods(messages):
    return [getattr(m, "method", None) or m.status for m in messages]


def only(messages, method):
    return [m for m in messages if getattr(m, "method", None) == method]


def transferring(**kw):
    net, registry, call = setup(**kw)
    invite, invite2, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    assert call.state == "transferring"
    return net, registry, call, phone, refer


def test_ringing_is_shown_only_once_the_phone_rings():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 100, "Trying"))
    assert call.state == "calling"
    net.deliver(answer(invite, 183, "Session Progress", "t1"))
    assert call.state == "ringing"


def test_a_refused_first_invite_fails_the_call():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 486, "Busy Here", "t1"))
    assert call.ended and call.state == "failed"
    assert lines(call) == [("INVITE", "SIP/2.0 486 Busy Here")]
    assert methods(net.sent_messages()) == ["ACK"]
    assert registry.active_count == 0


def test_an_unanswered_refer_is_reported_as_408_and_the_phone_is_hung_up():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    net.clock.advance(0.5)
    assert methods(net.sent_messages()) == ["REFER"]  # retransmitted over UDP
    for _ in range(100):  # at most 50 s
        if call.state != "connected":
            break
        net.clock.advance(0.5)
    assert net.clock.seconds() == 32  # Timer F, 64*T1
    assert lines(call)[-1] == ("REFER", "SIP/2.0 408 Request Timeout")
    [bye] = only(net.sent_messages(), "BYE")
    assert bye.headers.get("Reason") == 'SIP;cause=408;text="REFER failed"'
    assert bye.call_id == refer.call_id and call.state == "hanging-up"
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "ended"


def test_a_transfer_with_no_final_notify_is_hung_up_after_the_limit():
    net, registry, call, phone, refer = transferring()
    net.clock.advance(REFER_LIMIT - 1)
    assert only(net.sent_messages(), "BYE") == []
    net.clock.advance(1)
    [bye] = only(net.sent_messages(), "BYE")
    assert bye.headers.get("Reason") == 'SIP;cause=408;text="Transfer timed out"'
    assert call.state == "hanging-up"


def test_a_terminated_subscription_without_a_final_sipfrag_hangs_up():
    net, registry, call, phone, refer = transferring()
    net.deliver(phone.request("NOTIFY", [("Event", "refer"),
                                         ("Subscription-State", "Terminated;reason=timeout")]))
    sent = net.sent_messages()
    assert sent[0].status == 200
    [bye] = only(sent, "BYE")
    assert bye.headers.get("Reason") == 'SIP;cause=200;text="Subscription terminated"'


def test_a_provisional_sipfrag_keeps_the_call_up():
    net, registry, call, phone, refer = transferring()
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active"),
                                         ("Content-Type", "message/sipfrag")],
                              b"SIP/2.0 180 Ringing\r\n"))
    assert methods(net.sent_messages()) == [200]
    assert lines(call)[-1] == ("NOTIFY", "SIP/2.0 180 Ringing")
    assert call.state == "transferring"


def test_a_notify_body_that_is_no_sipfrag_is_recorded_as_its_first_line():
    net, registry, call, phone, refer = transferring()
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active"),
                                         ("Content-Type", "message/sipfrag")],
                              b"  garbage line\r\nmore\r\n"))
    assert methods(net.sent_messages()) == [200]
    assert lines(call)[-1] == ("NOTIFY", "garbage line")
    assert call.state == "transferring"


def test_hangup_while_ringing_cancels_and_after_answer_byes():
    net, registry, call = setup()
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    call.flow.hangup("deleted")
    assert call.state == "cancelling"
    assert methods(net.sent_messages()) == ["CANCEL"]

    net, registry, call, phone, refer = transferring()
    call.flow.hangup("Deleted by agent")
    [bye] = only(net.sent_messages(), "BYE")
    assert bye.headers.get("Reason") == 'SIP;cause=200;text="Deleted by agent"'
    assert call.state == "hanging-up"


def test_hangup_of_an_ended_call_sends_nothing():
    net, registry, call, phone, refer = transferring()
    flow = call.flow
    net.deliver(phone.request("BYE"))
    assert methods(net.sent_messages()) == [200]
    flow.hangup("late")
    assert net.sent_messages() == [] and call.state == "ended"


def test_an_answer_that_crosses_the_cancel_is_acked_and_hung_up():
    net, registry, call = setup(timeout=20)
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 180, "Ringing", "t1"))
    net.clock.advance(20)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    ok = answer(invite, 200, "OK", "t1", [("Contact", "<sip:user1@127.0.0.1:5071>")], b"v=0\r\n")
    net.deliver(ok)
    sent = net.sent_messages()
    assert methods(sent) == ["ACK", "BYE"]
    assert sent[1].headers.get("Reason") == 'SIP;cause=487;text="Call cancelled"'
    assert only(sent, "REFER") == []


def test_a_confpin_travels_in_the_refer_to():
    net, registry, call = setup(confpin="4711")
    _, _, phone, refer = connect(net, call)
    assert refer.headers.get("Refer-To") == "<sip:user2@sipx.test?X-ConfPin=4711>"


def test_in_dialog_requests_get_the_answer_the_flow_can_give():
    net, registry, call, phone, refer = transferring()
    for method, status in (("OPTIONS", 200), ("INFO", 200), ("INVITE", 488), ("UPDATE", 488),
                           ("MESSAGE", 405)):
        request = phone.request(method)
        net.deliver(request)
        [response] = [m for m in net.sent_messages() if m.cseq == request.cseq]
        assert response.status == status, method
        if status == 405:
            assert b"\r\nAllow: BYE, NOTIFY, OPTIONS, INFO\r\n" in response.to_bytes()
    assert call.state == "transferring"


def test_a_late_refer_answer_after_hangup_changes_nothing():
    net, registry, call = setup()
    _, _, phone, refer = connect(net, call)
    call.flow.hangup("Deleted")
    [bye] = only(net.sent_messages(), "BYE")
    net.deliver(answer(refer, 202, "Accepted"))
    assert call.state == "hanging-up"
    assert only(net.sent_messages(), "BYE") == []
