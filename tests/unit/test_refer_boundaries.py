"""
REFER mode at the edges a peer can pick: 300 is the first failure wherever a status
decides (the calling user's INVITE, the REFER, the transfer's sipfrag), and every
recorded line carries the Call-ID of the dialog it came from.
"""

from __future__ import annotations

from sipxcc.sip.uri import URI
from tests.unit.sipfakes import answer
from tests.unit.test_refer_flow import connect, setup


def sent_methods(net):
    return [getattr(m, "method", None) or m.status for m in net.sent_messages()]


def test_a_300_to_the_calling_users_invite_fails_the_call():
    net, _, call = setup()
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 300, "Multiple Choices", "t1"))
    assert sent_methods(net) == ["ACK"]  # no REFER
    assert (call.ended, call.state) == (True, "failed")


def test_a_300_to_the_refer_hangs_up_with_its_cause():
    net, _, call = setup()
    _, _, _, refer = connect(net, call)
    net.deliver(answer(refer, 300, "Multiple Choices"))
    [bye] = net.sent_messages()
    assert (bye.method, bye.headers.get("Reason")) == (
        "BYE", 'SIP;cause=300;text="Multiple Choices"')


def test_a_sipfrag_of_300_is_a_failed_transfer():
    net, _, call = setup()
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active"),
                                         ("Content-Type", "message/sipfrag")],
                              b"SIP/2.0 300 Multiple Choices\r\n"))
    [bye] = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    assert bye.headers.get("Reason").startswith("SIP;cause=300;")


def test_recorded_lines_carry_the_call_id_of_their_dialog():
    net, _, call = setup()
    _, invite2, phone, refer = connect(net, call)
    net.deliver(answer(refer, 202, "Accepted"))
    net.deliver(phone.request("NOTIFY", [("Event", "refer"), ("Subscription-State", "active"),
                                         ("Content-Type", "message/sipfrag")],
                              b"SIP/2.0 180 Ringing\r\n"))
    assert {e.call_id for e in call.events} == {invite2.call_id}

    net, _, call = setup()  # the INVITE never answered: its timeout is recorded
    [invite] = net.sent_messages()
    net.clock.advance(40)
    assert [(e.call_id, e.status_line) for e in call.events] == [
        (invite.call_id, "SIP/2.0 408 Request Timeout")]

    net, _, call = setup()  # the REFER never answered: its timeout is recorded too
    _, invite2, _, refer = connect(net, call)
    net.clock.advance(40)
    assert [(e.call_id, e.method, e.status_line) for e in call.events][-1] == (
        invite2.call_id, "REFER", "SIP/2.0 408 Request Timeout")


def test_a_call_that_may_be_forwarded_asks_sipx_for_no_forwarding_limit():
    net, _, call = setup(forwarding_allowed=True)
    [invite] = net.sent_messages()
    params = URI.parse(invite.uri).params
    assert "sipx-userforward" not in params and params["sipx-noroute"] == "Voicemail"
