"""CANCEL (RFC 3261 §9) as we send it and as we answer it, and how an outgoing request fails."""

from __future__ import annotations

from sipxcc.sip.message import Request, make_tag
from sipxcc.sip.outgoing import RequestFailed
from tests.unit.sipfakes import PROXY, FakeNetwork, answer


def invite(net, **kw):
    request = net.ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:agent@sipx.test>",
                                 "<sip:user1@sipx.test>", [("Content-Type", "application/sdp")],
                                 b"v=0\r\n")
    outgoing = net.ua.invite(request, **kw)
    results = []
    outgoing.deferred.addBoth(results.append)
    [sent] = net.sent_messages()
    return outgoing, sent, results


def test_cancel_copies_what_section_9_1_says_from_the_invite():
    net = FakeNetwork()
    outgoing, sent, _ = invite(net)
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    outgoing.cancel()
    [(cancel, addr)] = net.sent()
    assert addr == PROXY
    assert (cancel.method, cancel.uri) == ("CANCEL", sent.uri)
    for name in ("Via", "Route", "From", "To", "Call-ID"):
        assert cancel.headers.values(name) == sent.headers.values(name), name
    assert cancel.cseq == (sent.cseq[0], "CANCEL")
    assert cancel.headers.get("Max-Forwards") == "70"
    assert cancel.body == b"" and cancel.headers.get("Content-Type") is None


def test_cancel_waits_for_a_provisional_response():
    net = FakeNetwork()
    outgoing, sent, _ = invite(net)
    outgoing.cancel()
    assert net.sent_messages() == []
    net.deliver(answer(sent, 100, "Trying"))
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    outgoing.cancel()
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    assert net.sent_messages() == []  # one CANCEL only


def test_nothing_to_cancel_once_answered_or_for_other_methods():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    net.deliver(answer(sent, 486, "Busy Here", "t1"))
    net.sent_messages()  # the ACK
    outgoing.cancel()
    assert net.sent_messages() == []
    options = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:agent@sipx.test>",
                                 "<sip:user1@sipx.test>")
    other = net.ua.send(options, net.ua.proxy_target)
    net.sent_messages()
    other.provisional = True
    other.cancel()
    assert net.sent_messages() == []


def test_an_invite_the_cancel_does_not_end_fails_64_t1_after_the_cancel():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    net.clock.advance(5)
    outgoing.cancel()
    [cancel] = net.sent_messages()
    net.deliver(answer(cancel, 200, "OK", "t1"))
    net.clock.advance(31.9)
    assert results == []
    net.clock.advance(0.1)
    [failure] = results
    assert failure.check(RequestFailed)
    assert (failure.value.status, failure.value.reason) == (408, "Request Timeout")
    assert outgoing.final_status == 408
    net.deliver(answer(sent, 487, "Request Terminated", "t1"))  # late: changes nothing
    assert len(results) == 1


def test_an_invite_ended_by_the_cancel_is_not_failed_again():
    net = FakeNetwork()
    outgoing, sent, results = invite(net)
    net.deliver(answer(sent, 180, "Ringing", "t1"))
    outgoing.cancel()
    net.sent_messages()
    net.deliver(answer(sent, 487, "Request Terminated", "t1"))
    net.clock.advance(40)
    assert [r.status for r in results] == [487]


def test_a_transport_error_fails_the_request_with_503():
    net = FakeNetwork()

    def unreachable(data, addr):
        raise OSError(101, "Network is unreachable")

    net.layer.udp.sendto = unreachable
    request = net.ua.new_request("OPTIONS", "sip:user1@sipx.test", "<sip:agent@sipx.test>",
                                 "<sip:user1@sipx.test>")
    results = []
    net.ua.send(request, net.ua.proxy_target).deferred.addBoth(results.append)
    [failure] = results
    assert (failure.value.status, failure.value.reason) == (503, "Service Unavailable")


def cancel_for(request: Request, via: str | None = None) -> Request:
    cancel = Request("CANCEL", request.uri)
    cancel.headers.add("Via", via or request.headers.get("Via"))
    for name in ("From", "To", "Call-ID"):
        cancel.headers.add(name, request.headers.get(name))
    cancel.headers.add("CSeq", f"{request.cseq[0]} CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    return cancel


def incoming_invite() -> Request:
    request = Request("INVITE", "sip:callcontroller@127.0.0.1:6050")
    request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{make_tag()}")
    request.headers.add("Max-Forwards", "70")
    request.headers.add("From", f"<sip:user9@sipx.test>;tag={make_tag()}")
    request.headers.add("To", "<sip:callcontroller@sipx.test>")
    request.headers.add("Call-ID", f"{make_tag()}@192.0.2.9")
    request.headers.add("CSeq", "1 INVITE")
    return request


def test_a_cancel_for_an_unknown_invite_gets_481():
    net = FakeNetwork()
    net.deliver(cancel_for(incoming_invite()))
    [response] = net.sent_messages()
    assert (response.status, response.reason) == (481, "Call/Transaction Does Not Exist")
    assert response.cseq[1] == "CANCEL"


def test_a_cancel_for_an_invite_already_answered_gets_200_and_nothing_more():
    net = FakeNetwork()
    request = incoming_invite()
    net.deliver(request)
    [refused] = net.sent_messages()  # we place calls, we do not take them
    assert (refused.status, refused.cseq[1]) == (405, "INVITE")
    net.deliver(cancel_for(request))
    [ok] = net.sent_messages()
    assert (ok.status, ok.reason, ok.cseq[1]) == (200, "OK", "CANCEL")
