"""
A request sent again: over UDP after its TCP connection was refused, answering a challenge
after it moved to TCP (the Via names the transport it really goes over, RFC 3261 §18.1.1),
with every other header kept, and the BYE to an extra fork answering the proxy's challenge.
"""

from __future__ import annotations

import gc
import re

from twisted.internet.error import ConnectionRefusedError
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from sipxcc.sip.message import response_to
from sipxcc.sip.transaction import T1
from sipxcc.sip.transport import Source, Target
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer
from tests.unit.test_sip_outgoing_edges import CHALLENGE, CREDS, dialog_up, start_invite
from tests.unit.test_sip_udp_size import request_of, ua_on_a_reactor, ua_with

VIA = r"SIP/2\.0/{} 127\.0\.0\.1:6050;branch=z9hG4bK[0-9a-f]{{16}};rport"


def test_a_large_request_sent_again_over_udp_says_udp_in_its_via_whatever_the_proxy_uses():
    reactor, ua, datagrams = ua_on_a_reactor("sip:127.0.0.1:5080;lr;transport=tcp")
    outgoing = ua.send(request_of(ua, 1400), Target("UDP", "127.0.0.1", 5090))
    assert outgoing.target.transport == "TCP"
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    [(data, addr)] = datagrams
    assert addr == ("127.0.0.1", 5090)
    assert re.fullmatch(VIA.format("UDP"), outgoing.request.headers.get("Via"))
    assert data == outgoing.request.to_bytes()


def test_a_challenge_to_a_request_moved_to_tcp_is_answered_over_tcp_with_a_tcp_via():
    ua, sent = ua_with(("udp", "tcp"), realm="sipx.test")
    request = request_of(ua, 1400)
    ua.send(request, ua.proxy_target, credentials=CREDS)
    assert sent[-1][1].transport == "TCP"
    challenge = response_to(request, 407, "Proxy Authentication Required", "t1")
    challenge.headers.add("Proxy-Authenticate", CHALLENGE)
    ua.receive(challenge, Source("TCP", "127.0.0.1", 5080, None))
    data, target = sent[-1]
    assert target == ua.proxy_target._replace(transport="TCP")
    assert b"\r\nProxy-Authorization: Digest " in data
    [via] = re.findall(rb"\r\nVia: ([^\r]*)", data)
    assert re.fullmatch(VIA.format("TCP"), via.decode())


def test_a_stale_retry_in_a_dialog_replaces_its_answer_and_keeps_the_others():
    net = FakeNetwork()
    outgoing, invite, _, _ = start_invite(net, CREDS)
    stale = CHALLENGE.replace("abc", "def") + ", stale=true"
    net.deliver(answer(invite, 401, "Unauthorized", "t1", [("WWW-Authenticate", CHALLENGE)]))
    [retry] = [m for m in net.sent_messages() if m.method == "INVITE"]
    net.deliver(answer(retry, 407, "Proxy Authentication Required", "t1",
                       [("Proxy-Authenticate", stale)]))
    [retry] = [m for m in net.sent_messages() if m.method == "INVITE"]
    phone = FarEnd(retry)
    net.deliver(phone.ok(record_route="<sip:127.0.0.1:5080;lr>"))
    dialog = outgoing.dialog
    dialog.ack()
    dialog.request("INFO")  # both answers reused (RFC 3261 §22.3)
    [info] = [m for m in net.sent_messages() if m.method == "INFO"]
    assert 'nonce="abc"' in info.headers.get("Authorization")
    assert 'nonce="def"' in info.headers.get("Proxy-Authorization")
    renewed = CHALLENGE.replace("abc", "ghi") + ", stale=true"
    net.deliver(answer(info, 401, "Unauthorized", "t1", [("WWW-Authenticate", renewed)]))
    [again] = [m for m in net.sent_messages() if m.method == "INFO"]
    assert 'nonce="ghi"' in again.headers.get("Authorization")
    assert again.headers.get("Proxy-Authorization") == info.headers.get("Proxy-Authorization")
    assert sorted(n for n, _ in again.headers.items()) == sorted(n for n, _ in info.headers.items())


def test_the_bye_to_an_extra_fork_answers_the_proxys_challenge():
    net = FakeNetwork()
    outgoing, sent, phone = dialog_up(net, CREDS)
    fork = FarEnd(sent, contact="<sip:user2@127.0.0.1:5072>")
    net.deliver(fork.ok(record_route="<sip:127.0.0.1:5080;lr>"))
    [ack, bye] = net.sent_messages()
    assert (ack.method, bye.method) == ("ACK", "BYE")
    net.deliver(answer(bye, 407, "Proxy Authentication Required", fork.tag,
                       [("Proxy-Authenticate", CHALLENGE)]))
    [again] = [m for m in net.sent_messages() if m.method == "BYE"]
    assert again.to_tag == fork.tag and again.cseq[0] == bye.cseq[0] + 1
    assert 'username="user1"' in again.headers.get("Proxy-Authorization")


def test_the_bye_to_an_extra_fork_that_fails_leaves_no_unhandled_error_in_the_log():
    gc.collect()  # what earlier tests left is not this test's to judge
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        net = FakeNetwork()
        outgoing, sent, phone = dialog_up(net)
        net.deliver(FarEnd(sent, contact="<sip:user2@127.0.0.1:5072>").ok())
        assert [m.method for m in net.sent_messages()] == ["ACK", "BYE"]
        net.clock.advance(64 * T1)  # the BYE times out: 408
        del net
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [formatEvent(e) for e in events if e.get("isError")] == []
