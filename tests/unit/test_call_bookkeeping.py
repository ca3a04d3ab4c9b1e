"""Call bookkeeping a client can observe: limits per agent as calls end, the texts of the
registry's refusals, when a finished call is forgotten, the watchdog's INVITE allowance,
CallControl's defaults; and the SDP sessions and teardown details of INVITE mode."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from sipxcc.calls.control import CallControl
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls
from sipxcc.calls.registry import WATCHDOG_GRACE, CallRegistry
from sipxcc.calls.relay import SessionFace
from sipxcc.calls.sdp import SessionDescription
from sipxcc.timers import SLACK
from tests.unit import test_invite_flow as inv
from tests.unit.sipfakes import answer
from tests.unit.test_call_control import ControlReactor
from tests.unit.test_registry import USER3, FakeFlow, req
from tests.unit.test_sip_transport_binding import ServerCreator

SDP = ("Content-Type", "application/sdp")


def registry(clock=None, **kw):
    return CallRegistry(clock or Clock(), {"REFER": FakeFlow, "INVITE": FakeFlow}, **kw)


def test_an_agents_limit_frees_up_as_its_calls_end():
    calls = registry(max_calls=10, max_calls_per_agent=2)
    first = calls.place(req(called="a@sipx.test"))
    calls.place(req(called="b@sipx.test"))
    with pytest.raises(AgentLimit) as caught:
        calls.place(req(called="c@sipx.test"))
    assert str(caught.value) == "Too many calls in progress for user1@sipx.test"
    calls.place(req(agent=USER3, calling="user3@sipx.test", called="c@sipx.test"))
    first.flow.end()
    assert active_per_owner(calls) == {"user1@sipx.test": 1, "user3@sipx.test": 1}
    calls.place(req(called="c@sipx.test"))
    for call in list(calls.active):
        call.flow.end()
    # an owner's record stays while its finished calls are retained, with nothing active
    assert active_per_owner(calls) == {"user1@sipx.test": 0, "user3@sipx.test": 0}
    assert calls.active_count == 0
    calls.place(req(called="d@sipx.test"))
    calls.place(req(called="e@sipx.test"))


def active_per_owner(calls):
    return {agent: owner.active for agent, owner in calls.owners.items()}


def test_the_registrys_refusals_say_why():
    calls = registry(max_calls=1)
    calls.place(req(method="INVITE"))
    with pytest.raises(CallInProgress) as caught:
        calls.place(req())
    assert str(caught.value) == "Call in progress for user1@sipx.test to user2@sipx.test"
    with pytest.raises(TooManyCalls) as caught:
        calls.place(req(called="other@sipx.test"))
    assert str(caught.value) == "Too many calls in progress"


def test_an_invite_call_is_not_replaced_by_a_refer_nor_the_other_way():
    calls = registry()
    calls.place(req())  # REFER in progress
    with pytest.raises(CallInProgress):
        calls.place(req(method="INVITE"))


def test_a_call_records_when_it_was_placed():
    clock = Clock()
    clock.advance(1234.5)
    assert registry(clock).place(req()).created == 1234.5


def test_finished_calls_are_forgotten_each_at_its_own_time():
    clock = Clock()
    calls = registry(clock)
    first = calls.place(req(called="a@sipx.test", result_cache_time=100))
    first.flow.end()
    clock.advance(10)
    second = calls.place(req(called="b@sipx.test", result_cache_time=100))
    second.flow.end()
    clock.advance(90 + SLACK)
    assert calls.get(first.id) is None and calls.get(second.id) is second
    clock.advance(10 - SLACK - 0.01)
    assert calls.get(second.id) is second
    clock.advance(2 * SLACK)
    assert calls.get(second.id) is None


def test_the_watchdog_gives_an_invite_call_two_ring_times():
    class Stuck(FakeFlow):
        ends_on_hangup = False

    clock = Clock()
    calls = CallRegistry(clock, {"INVITE": Stuck, "REFER": Stuck})
    call = calls.place(req(method="INVITE", timeout=10))
    clock.advance(10 + WATCHDOG_GRACE + 1)
    assert not call.ended and call.flow.hangups == []
    clock.advance(10)
    assert call.ended and call.state == "failed"


def test_call_control_defaults():
    reactor = ControlReactor()
    cc = CallControl(reactor, domain="sipx.test", proxy="sip:192.0.2.5;lr",
                     address="192.0.2.10", port=5070)
    assert (cc.registry.max_calls, cc.registry.max_calls_per_agent) == (2000, 10)
    assert cc.shutdown_timeout == 5.0 and cc.callbacks.clock is reactor
    cc.listen()
    assert [kind for kind, *_ in reactor.listened] == ["UDP", "TCP"]
    assert cc.ua.settings.transports == ("udp", "tcp")


def test_call_control_with_tls_and_one_transport():
    reactor = ControlReactor()
    context = ServerCreator()
    cc = CallControl(reactor, domain="sipx.test", proxy="sip:192.0.2.5;lr",
                     address="192.0.2.10", port=5070, transports=("udp", "tls"),
                     tls_context=context)
    cc.listen()
    # TLS listens as TCP wrapped in the server's TLS options, on the next port
    assert [(kind, port) for kind, port, *_ in reactor.listened] == [("UDP", 5070), ("TCP", 5071)]
    tls = reactor.listened[-1][3].buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
    tls.makeConnection(StringTransport())
    assert context.used == [tls] and tls.wrappedProtocol.transport_name == "TLS"
    assert cc.ua.settings.transports == ("udp", "tls")
    assert cc.ua.settings.port == 5070


def test_a_session_keeps_its_version_until_the_content_changes():
    face = SessionFace("192.0.2.10", session_id=5)
    offer = inv.sdp("bob", 1, 1, "10.0.0.2", 5000)
    first = SessionDescription.parse(face.present(offer))
    same = SessionDescription.parse(face.present(inv.sdp("bob", 1, 9, "10.0.0.2", 5000)))
    moved = SessionDescription.parse(face.present(inv.sdp("bob", 1, 9, "10.0.0.2", 5002)))
    assert [s.origin.version for s in (first, same, moved)] == [1, 1, 2]
    assert str(first.origin) == "sipxcc 5 1 IN IP4 192.0.2.10"
    assert [line for line in first.lines if line[0] != "o"] == [
        line for line in SessionDescription.parse(offer).lines if line[0] != "o"]
    face.rejected()
    again = SessionDescription.parse(face.present(inv.sdp("bob", 1, 9, "10.0.0.2", 5002)))
    assert again.origin.version == 3


def test_a_refusal_answers_every_stream_with_port_zero():
    face = SessionFace("192.0.2.10", session_id=5)
    offer = (b"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
             b"m=audio 4000 RTP/AVP 0 8\r\nm=video 4002 RTP/AVP 96\r\n")
    assert face.refusal(offer) == (
        b"v=0\r\no=sipxcc 5 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0 8\r\nm=video 0 RTP/AVP 96\r\n")
    assert face.refusal(b"garbage") == (
        b"v=0\r\no=sipxcc 5 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n")


def test_a_relayed_2xx_never_acked_ends_the_call_for_want_of_an_ack():
    c = inv.Connected()
    c.net.deliver(c.b.request("INVITE", [SDP], inv.B_OFFER))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP], inv.A_ANSWER2))
    c.net.clock.advance(33)
    byes = [m for m in c.sent() if getattr(m, "method", None) == "BYE"]
    assert {m.headers.get("Reason") for m in byes} == {'SIP;cause=408;text="No ACK"'}
    for bye in byes:
        c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.state == "ended"  # it had been connected


def test_a_party_leaving_while_its_reinvite_is_relayed_gets_487_for_it():
    c = inv.Connected()
    reinvite = c.a.request("INVITE", [SDP], inv.sdp("alice", 111, 3, "10.0.0.1", 4000))
    c.net.deliver(reinvite)
    trying, relayed = c.sent()
    c.net.deliver(c.a.request("BYE"))
    sent = c.sent()
    [terminated] = [m for m in sent if getattr(m, "cseq", None) == reinvite.cseq]
    assert (terminated.status, terminated.reason) == (487, "Request Terminated")


def test_a_party_leaving_before_acking_our_2xx_lets_the_other_be_acked():
    c = inv.Connected()
    c.net.deliver(c.a.request("INVITE", [SDP], inv.sdp("alice", 111, 3, "10.0.0.1", 4000)))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.b.contact), SDP],
                         inv.sdp("bob", 222, 8, "10.0.0.2", 5000)))
    assert [m.status for m in c.sent()] == [200]
    c.net.deliver(c.a.request("BYE"))
    sent = c.sent()
    assert ("ACK", c.invite2.call_id) in [(getattr(m, "method", None), m.call_id)
                                          for m in sent]
    c.net.clock.advance(40)
    assert not any(getattr(m, "status", None) == 200 and m.call_id == c.invite1.call_id
                   for m in c.sent())  # no more retransmissions to A


def test_an_answer_that_crosses_our_cancel_is_byed_as_cancelled():
    net, registry_, call = inv.setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 180, "Ringing", "a1"))
    call.flow.hangup("Deleted")
    [cancel] = net.sent_messages()
    net.deliver(answer(invite1, 200, "OK", "a1", [("Contact", "<sip:user1@127.0.0.1:5071>"),
                                                  SDP], inv.A_ANSWER1))
    byes = [m for m in net.sent_messages() if m.method == "BYE"]
    assert [m.headers.get("Reason") for m in byes] == ['SIP;cause=487;text="Call cancelled"']


def test_a_300_to_our_first_invite_fails_the_call():
    net, registry_, call = inv.setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 300, "Multiple Choices", "a1"))
    assert call.ended and call.state == "failed"


def test_only_a_tagged_ringing_makes_an_early_dialog_and_a_ringing_call():
    net, registry_, call = inv.setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 100, "Trying"))
    assert call.state == "calling" and call.dialogs() == []
    net.deliver(answer(invite1, 101, "Odd", None))
    assert call.state == "ringing" and call.dialogs() == []  # untagged: no dialog
    net.deliver(answer(invite1, 183, "Session Progress", "a1"))
    [dialog] = call.dialogs()
    assert dialog.state == "Early Dialog" and dialog.dialog_id.endswith(":a1")
    net.deliver(answer(invite1, 180, "Ringing", "a2"))  # another fork rings: shown instead
    [dialog] = call.dialogs()
    assert dialog.dialog_id.endswith(":a2")


def test_an_early_dialog_then_answered_is_confirmed():
    net, registry_, call = inv.setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 180, "Ringing", "a1"))
    a = inv.FarEnd(invite1)
    a.tag = "a1"
    net.deliver(a.ok(inv.A_ANSWER1))
    assert call.dialogs()[0].state == "Confirmed Dialog"
