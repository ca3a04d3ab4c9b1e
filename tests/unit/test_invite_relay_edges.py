"""INVITE mode's relay off the happy path: requests before the call is connected, relayed
requests that fail, retransmitted 2xx timing, and transfers to a target without SDP."""

from __future__ import annotations

from sipxcc.calls.relay import SessionFace
from sipxcc.calls.sdp import SessionDescription
from tests.unit.sipfakes import FarEnd, WireMessage, answer
from tests.unit.test_invite_flow import (
    A_ANSWER1,
    B_OFFER,
    SDP_TYPE,
    Connected,
    content,
    lines,
    methods,
    sdp,
    setup,
)


def caller_up_callee_ringing():
    """A answered (ACKed), B's INVITE out and ringing: no one to relay A's requests to."""
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1, "<sip:user1@127.0.0.1:5071>")
    net.deliver(a.ok(A_ANSWER1))
    ack, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    return net, call, a, invite2


def answer_to(net, request):
    net.deliver(request)
    [response] = [m for m in net.sent_messages() if m.cseq == request.cseq]
    return response


def test_requests_before_the_callee_answers_get_what_can_be_answered_alone():
    net, call, a, invite2 = caller_up_callee_ringing()
    for method, status in (("OPTIONS", (200, "OK")), ("INFO", (200, "OK")),
                           ("UPDATE", (491, "Request Pending"))):
        response = answer_to(net, a.request(method))
        assert (response.status, response.reason) == status
    reinvite = a.request("INVITE", [SDP_TYPE], A_ANSWER1)
    net.deliver(reinvite)
    assert [(m.status, m.reason) for m in net.sent_messages() if m.cseq == reinvite.cseq] == [
        (491, "Request Pending")]
    refused = answer_to(net, a.request("MESSAGE", [("Content-Type", "text/plain")], b"hi"))
    assert (refused.status, refused.reason) == (403, "Forbidden")
    assert refused.headers.get("Warning") == '399 sipxcc "Call not connected"'
    assert call.state == "ringing" and not call.ended


def test_prack_is_refused_as_there_is_no_reliable_provisional():
    c = Connected()
    prack = c.a.request("PRACK", [("RAck", "1 1 INVITE")])
    response = answer_to(c.net, prack)
    assert response.status == 481
    assert c.sent() == [] and c.call.state == "connected"


def test_a_second_reinvite_while_one_is_relayed_gets_500_with_retry_after():
    c = Connected()
    first = c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly"))
    c.net.deliver(first)
    trying, relayed = c.sent()
    second = c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 9, "10.0.0.2", 5000))
    response = answer_to(c.net, second)
    assert response.status == 500
    assert response.headers.get("Retry-After") == "1"


def test_a_relayed_request_that_times_out_is_answered_408_and_ends_the_call():
    c = Connected()
    info = c.a.request("INFO", [("Content-Type", "application/dtmf-relay")], b"Signal=1\r\n")
    c.net.deliver(info)
    [relayed] = c.sent()
    assert relayed.call_id == c.invite2.call_id
    c.net.clock.advance(31.5)
    assert all(getattr(m, "method", None) == "INFO" for m in c.sent())  # retransmitted
    c.net.clock.advance(0.5)
    sent = c.sent()
    [timeout] = [m for m in sent if m.cseq == info.cseq]
    assert (timeout.status, timeout.call_id) == (408, c.invite1.call_id)
    # B's dialog is gone: A is hung up, B is not asked again
    byes = [m for m in sent if getattr(m, "method", None) == "BYE"]
    assert [m.call_id for m in byes] == [c.invite1.call_id]
    assert c.call.state == "connected"  # until A answers the BYE
    c.net.deliver(answer(byes[0], 200, "OK"))
    assert c.call.ended and c.call.state == "ended"


def test_a_relayed_2xx_is_retransmitted_at_doubling_intervals_up_to_t2():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], B_OFFER))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER1))
    assert [m.status for m in c.sent()] == [200]
    for interval in (0.5, 1, 2, 4, 4, 4):  # T1 doubling, capped at T2 (§13.3.1.4)
        c.net.clock.advance(interval - 0.01)
        assert c.sent() == []
        c.net.clock.advance(0.01)
        [again] = c.sent()
        assert (again.status, again.call_id) == (200, c.invite2.call_id)


def test_an_ack_with_sdp_is_passed_on_with_the_answer_in_the_peers_session():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], B_OFFER))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER1))
    c.sent()
    ack = c.b.request("ACK", [SDP_TYPE], sdp("bob", 222, 9, "10.0.0.2", 5002))
    ack.headers.set("CSeq", f"{c.b.cseq - 1} ACK")
    c.net.deliver(ack)
    [ack_a] = c.sent()
    assert (ack_a.method, ack_a.call_id) == ("ACK", c.invite1.call_id)
    assert ack_a.headers.get("Content-Type") == "application/sdp"
    assert content(ack_a.body) == content(sdp("bob", 222, 9, "10.0.0.2", 5002))
    c.net.clock.advance(40)
    assert c.sent() == [] and c.call.state == "connected"


def test_an_ack_with_bad_sdp_still_acks_the_peer_without_a_body():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], B_OFFER))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER1))
    c.sent()
    ack = c.b.request("ACK", [SDP_TYPE], b"not sdp at all")
    ack.headers.set("CSeq", f"{c.b.cseq - 1} ACK")
    c.net.deliver(ack)
    [ack_a] = c.sent()
    assert (ack_a.method, ack_a.call_id, ack_a.body) == ("ACK", c.invite1.call_id, b"")


def test_a_stray_ack_changes_nothing():
    c = Connected()
    ack = c.b.request("ACK")
    c.net.deliver(ack)
    assert c.sent() == [] and c.call.state == "connected"


def test_a_relayed_request_with_bad_sdp_is_refused_400():
    c = Connected()
    response = answer_to(c.net, c.b.request("UPDATE", [SDP_TYPE], b"v=0\r\nnonsense\r\n"))
    assert response.status == 400
    assert response.headers.get("Warning").startswith('399 sipxcc "')
    assert c.sent() == [] and c.call.state == "connected"


def test_a_transfer_target_answering_without_sdp_is_hung_up_and_the_call_stays():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok())  # 200 OK without an answer
    sent = c.sent()
    assert methods(sent) == ["ACK", "BYE"]
    assert all(m.call_id == invite_x.call_id for m in sent)
    assert sent[1].headers.get("Reason") == 'SIP;cause=488;text="Expecting SDP answer"'
    assert c.call.state == "connected" and not c.call.ended
    c.net.deliver(answer(sent[1], 200, "OK"))
    # A and B still talk: a BYE from A reaches B
    c.net.deliver(c.a.request("BYE"))
    ok, bye_b = c.sent()
    assert (ok.status, bye_b.method, bye_b.call_id) == (200, "BYE", c.invite2.call_id)


def test_a_callee_refusing_the_targets_offer_ends_the_call():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok(sdp("xavier", 333, 1, "10.0.0.3", 6000)))
    ack_x, bye_a, reinvite_b = c.sent()
    c.net.deliver(answer(reinvite_b, 488, "Not Acceptable Here"))
    sent = c.sent()
    byes = [m for m in sent if getattr(m, "method", None) == "BYE"]
    assert sorted(m.call_id for m in byes) == sorted([invite_x.call_id, c.invite2.call_id])
    assert all(m.headers.get("Reason") == 'SIP;cause=488;text="Not Acceptable Here"'
               for m in byes)
    for bye in byes:
        c.net.deliver(answer(bye, 200, "OK"))
    c.net.deliver(answer(bye_a, 200, "OK"))
    assert c.call.ended and c.call.state == "failed"


def test_a_callee_silent_on_the_targets_offer_ends_the_call_with_408():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok(sdp("xavier", 333, 1, "10.0.0.3", 6000)))
    ack_x, bye_a, reinvite_b = c.sent()
    c.net.deliver(answer(bye_a, 200, "OK"))
    c.net.clock.advance(32)
    byes = [m for m in c.sent() if getattr(m, "method", None) == "BYE"]
    assert {m.call_id for m in byes} == {invite_x.call_id, c.invite2.call_id}
    assert all("cause=408" in m.headers.get("Reason") for m in byes)
    assert (invite_x.call_id, "SIP/2.0 200 OK") in lines(c.call)


def relayed_reinvite_answered(c, offer):
    """B re-INVITEs with C{offer}, A answers 200 with its SDP; returns B's INVITE and the
    200 relayed to B."""
    reinvite = c.b.request("INVITE", [SDP_TYPE], offer)
    c.net.deliver(reinvite)
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER1))
    [ok] = c.sent()
    return reinvite, ok


def ack_from_b(c, reinvite):
    ack = c.b.request("ACK")
    ack.headers.set("CSeq", f"{reinvite.cseq[0]} ACK")
    c.net.deliver(ack)
    return c.sent()


def test_after_a_relayed_reinvite_completes_the_next_one_is_relayed_too():
    c = Connected()
    first, ok = relayed_reinvite_answered(c, sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly"))
    assert ok.status == 200
    [ack_a] = ack_from_b(c, first)
    assert (ack_a.method, ack_a.call_id) == ("ACK", c.invite1.call_id)
    second, ok = relayed_reinvite_answered(c, sdp("bob", 222, 9, "10.0.0.2", 5000))
    assert (ok.status, ok.cseq) == (200, second.cseq)
    assert content(ok.body) == content(A_ANSWER1)


def test_a_retransmitted_ack_is_not_passed_on_twice():
    c = Connected()
    reinvite, _ = relayed_reinvite_answered(c, B_OFFER)
    [ack_a] = ack_from_b(c, reinvite)
    assert ack_a.method == "ACK"
    assert ack_from_b(c, reinvite) == []
    assert c.call.state == "connected"


def test_sdp_with_content_type_parameters_is_still_mapped_into_the_peers_session():
    c = Connected()
    update = c.b.request("UPDATE", [("Content-Type", "application/sdp;charset=utf-8")],
                         B_OFFER)
    c.net.deliver(update)
    [relayed] = c.sent()
    assert relayed.method == "UPDATE"
    origin = [v for k, v in SessionDescription.parse(relayed.body).lines if k == "o"]
    assert origin[0].startswith("sipxcc ")  # our session towards A, not bob's


def test_every_leg_gets_its_own_session_id_that_fits_a_signed_64_bit_integer():
    ids = {SessionFace("127.0.0.1").session_id for _ in range(64)}
    assert len(ids) == 64
    assert all(0 < session_id < 2**63 for session_id in ids)  # how SDP stacks read it


def test_a_2xx_that_crosses_the_senders_cancel_is_still_acked():
    c = Connected()
    reinvite = c.b.request("INVITE", [SDP_TYPE], B_OFFER)
    c.net.deliver(reinvite)
    _, relayed = c.sent()
    method_uri = reinvite.start_line.split()[1]
    cancel = WireMessage(f"CANCEL {method_uri} SIP/2.0", [
        (name, reinvite.headers.get(name)) for name in ("Via", "From", "To", "Call-ID")
    ] + [("CSeq", f"{reinvite.cseq[0]} CANCEL"), ("Max-Forwards", "70")])
    c.net.deliver(cancel)
    sent = c.sent()
    assert sorted((getattr(m, "method", None) or m.status) for m in sent
                  if m.call_id == reinvite.call_id) == [200, 487]
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER1))
    acks = [m for m in c.sent() if getattr(m, "method", None) == "ACK"]
    assert [(m.call_id, m.cseq[0]) for m in acks] == [(relayed.call_id, relayed.cseq[0])]


def test_a_fault_of_ours_while_relaying_is_answered_500_and_ends_the_call(monkeypatch):
    from twisted.internet import defer

    class Broken:
        """What relaying gets back when something of ours fails (not the network)."""

        def __init__(self):
            self.deferred = defer.fail(RuntimeError("a bug of ours"))

    c = Connected()
    caller = c.call.flow.caller
    monkeypatch.setattr(caller.dialog, "request", lambda *args, **kw: Broken())
    info = c.b.request("INFO", [("Content-Type", "application/dtmf-relay")], b"Signal=1\r\n")
    c.net.deliver(info)
    sent = c.sent()
    [error] = [m for m in sent if m.cseq == info.cseq]
    assert (error.status, error.reason) == (500, "Server Internal Error")
    byes = [m for m in sent if getattr(m, "method", None) == "BYE"]
    assert [m.call_id for m in byes] == [c.invite2.call_id]  # A is taken for lost: B is hung up


def test_a_relayed_reinvite_the_peer_never_answers_is_answered_408():
    c = Connected()
    reinvite = c.b.request("INVITE", [SDP_TYPE], B_OFFER)
    c.net.deliver(reinvite)
    trying, relayed = c.sent()
    assert (trying.status, relayed.method) == (100, "INVITE")
    c.net.clock.advance(32 + 1)  # Timer B of the relayed INVITE
    [timeout] = [m for m in c.sent() if m.cseq == reinvite.cseq]
    assert (timeout.status, timeout.reason) == (408, "Request Timeout")
