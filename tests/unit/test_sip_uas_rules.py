"""What a peer gets from us outside any dialog (exact status lines and headers), how our
INVITE server transaction repeats its final answer until the ACK (RFC 3261 §17.2.1), and
SIP URIs with a password, a port at its limit, or a second '@' in a header."""

from __future__ import annotations

import pytest

from sipxcc.sip.message import SIPParseError
from sipxcc.sip.uri import URI
from sipxcc.timers import SLACK
from tests.unit.sipfakes import FakeNetwork
from tests.unit.test_sip_cancel import incoming_invite

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE"


def request_of(method):
    request = incoming_invite()
    request.method = method
    request.headers.set("CSeq", f"1 {method}")
    return request


def answer_of(net, request):
    net.deliver(request)
    [response] = net.sent_messages()
    return response


@pytest.mark.parametrize("method,status,reason", [
    ("BYE", 481, "Call/Transaction Does Not Exist"), ("INVITE", 405, "Method Not Allowed"),
    ("MESSAGE", 405, "Method Not Allowed"), ("FOO", 501, "Not Implemented"),
])
def test_requests_outside_a_dialog(method, status, reason):
    response = answer_of(FakeNetwork(), request_of(method))
    assert (response.status, response.reason) == (status, reason)
    allow = f"\r\nAllow: {ALLOW}\r\n".encode()
    assert (allow in response.to_bytes()) == (status != 481)


def test_options_tells_what_we_support():
    response = answer_of(FakeNetwork(), request_of("OPTIONS"))
    assert (response.status, response.reason) == (200, "OK")
    data = response.to_bytes()
    for line in (f"Allow: {ALLOW}", "Accept: application/sdp", "Supported: ",
                 "Contact: <sip:callcontroller@127.0.0.1:6050>"):
        assert f"\r\n{line}\r\n".encode() in data, line


def test_a_refused_invite_is_repeated_until_acked_then_forgotten():
    net = FakeNetwork()
    invite = request_of("INVITE")
    first = answer_of(net, invite)
    assert first.status == 405
    net.clock.advance(0.5)  # Timer G: the final answer again
    [again] = net.sent_messages()
    assert again.to_bytes() == first.to_bytes()
    net.deliver(invite)  # a retransmitted INVITE gets the same answer
    [repeat] = net.sent_messages()
    assert repeat.to_bytes() == first.to_bytes()
    ack = request_of("ACK")
    for name in ("Via", "From", "Call-ID"):
        ack.headers.set(name, invite.headers.get(name))
    ack.headers.set("To", first.headers.get("To"))
    net.deliver(ack)
    net.clock.advance(40)
    assert net.sent_messages() == []  # Timer G and H stopped
    assert not net.ua.transactions.servers


def test_an_unacked_refusal_is_repeated_until_timer_h():
    net = FakeNetwork()
    answer_of(net, request_of("INVITE"))
    times = []
    for _ in range(160):
        net.clock.advance(0.25)
        if net.sent_messages():
            times.append(net.clock.seconds())
    assert times[:4] == [0.5, 1.5, 3.5, 7.5] and times[-1] <= 32
    net.clock.advance(SLACK)
    assert not net.ua.transactions.servers


def test_uri_user_password_and_port():
    uri = URI.parse("sip:alice:secret@host.example:65535;transport=tcp")
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "host.example",
                                                             65535)
    plain = URI.parse("sip:alice@host.example")
    assert plain.password is None and plain.port is None
    with pytest.raises(SIPParseError):
        URI.parse("sip:alice@host.example:65536")


def test_a_second_at_sign_in_a_uri_header_is_not_the_user_part():
    uri = URI.parse("sip:bob@host.example?Replaces=abc%40x@caller.example")
    assert (uri.user, uri.host) == ("bob", "host.example")
    assert uri.headers == {"Replaces": "abc%40x@caller.example"}
    odd = URI.parse("sip:a@b@host.example?X=1")  # illegal, but the last '@' before '?' wins
    assert (odd.user, odd.host, odd.headers) == ("a@b", "host.example", {"X": "1"})
    with pytest.raises(SIPParseError):
        URI.parse("sip:a@b@host.example")
    assert URI.parse("sip:host.example?X=1").user is None
