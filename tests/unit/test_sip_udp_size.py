"""
RFC 3261 §18.1.1: a request larger than 1300 bytes (the path MTU unknown) goes over TCP,
not UDP, whatever makes it large: the body, or the headers (long Route sets, a long
Subject, identities). Its top Via names the transport it really goes over.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.error import ConnectionRefusedError, TCPTimedOutError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sipxcc.sip.digest import DigestCredentials
from sipxcc.sip.message import Request, response_to
from sipxcc.sip.transport import UDP_MTU_LIMIT, Source, TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent

PROXY = Source("UDP", "127.0.0.1", 5080, None)
CHALLENGE = 'Digest realm="sipx.test", nonce="n0nce", qop="auth", algorithm=MD5'


def ua_with(transports, realm=None):
    clock = Clock()
    layer = TransportLayer(clock, "127.0.0.1", 6050, transports)
    sent = []
    layer.send = lambda data, target, on_error=None, connection=None: \
        sent.append((data, target))
    ua = UserAgent(clock, layer, UASettings("sip:127.0.0.1:5080;lr", "127.0.0.1", 6050,
                                            "callcontroller", transports, realm))
    return ua, sent


def request_of(ua, size):
    """An INVITE of exactly C{size} bytes: a 10-byte body, the rest in its headers."""
    request = ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                             "<sip:user1@sipx.test>", body=b"v=0\r\no=- 1")
    request.headers.add("Route", "<sip:edge.sipx.test;lr>")
    request.headers.add("Subject", "")
    pad = size - len(request.to_bytes())
    assert pad > 200  # the headers, not the body, make it large
    request.headers.set("Subject", "s" * pad)
    assert len(request.to_bytes()) == size
    return request


def test_a_request_of_1300_bytes_with_a_small_body_goes_over_udp():
    ua, sent = ua_with(("udp", "tcp"))
    ua.send(request_of(ua, UDP_MTU_LIMIT), ua.proxy_target)
    data, target = sent[-1]
    assert target.transport == "UDP" and len(data) == 1300
    assert b"\r\nVia: SIP/2.0/UDP 127.0.0.1:6050;branch=z9hG4bK" in data


def test_a_request_of_1301_bytes_with_a_small_body_goes_over_tcp_and_its_via_says_so():
    ua, sent = ua_with(("udp", "tcp"))
    request = request_of(ua, UDP_MTU_LIMIT + 1)
    branch = request.branch
    ua.send(request, ua.proxy_target)
    data, target = sent[-1]
    assert target == ua.proxy_target._replace(transport="TCP")
    assert len(data) == 1301  # the Via's transport token kept its length
    assert f"\r\nVia: SIP/2.0/TCP 127.0.0.1:6050;branch={branch};rport\r\n".encode() in data
    assert b"SIP/2.0/UDP" not in data
    assert data == request.to_bytes()  # what went is the request as it now stands


def test_a_request_under_the_limit_is_serialised_once(monkeypatch):
    ua, sent = ua_with(("udp", "tcp"))
    request = request_of(ua, 1000)
    calls = []
    to_bytes = Request.to_bytes
    monkeypatch.setattr(Request, "to_bytes", lambda self: calls.append(1) or to_bytes(self))
    ua.send(request, ua.proxy_target)
    assert len(calls) == 1 and len(sent) == 1


def test_a_challenge_answer_that_passes_the_limit_goes_over_tcp():
    # 1250 bytes go over UDP; the answer to the proxy's 407 adds Proxy-Authorization
    ua, sent = ua_with(("udp", "tcp"), realm="sipx.test")
    request = request_of(ua, 1250)
    ua.send(request, ua.proxy_target, credentials=DigestCredentials("u", {"MD5": "0" * 32}))
    assert sent[-1][1].transport == "UDP"
    challenge = response_to(request, 407, "Proxy Authentication Required", "t1")
    challenge.headers.add("Proxy-Authenticate", CHALLENGE)
    ua.receive(challenge, PROXY)
    data, target = sent[-1]
    assert b"\r\nProxy-Authorization: Digest " in data and len(data) > 1300
    assert target.transport == "TCP"
    assert b"\r\nVia: SIP/2.0/TCP 127.0.0.1:6050;branch=z9hG4bK" in data


def test_without_tcp_a_large_request_still_goes_over_udp_and_is_counted():
    ua, sent = ua_with(("udp",))
    ua.send(request_of(ua, 1301), ua.proxy_target)
    ua.send(request_of(ua, 1300), ua.proxy_target)
    assert [t.transport for _, t in sent[-2:]] == ["UDP", "UDP"]
    assert ua.counters["udp_oversize"] == 1


def ua_on_a_reactor(proxy="sip:127.0.0.1:5080;lr"):
    """A UA over a real transport layer: TCP connects on a memory reactor, UDP datagrams
    are kept."""
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, "127.0.0.1", 6050, ("udp", "tcp"))
    datagrams = []
    layer.udp = SimpleNamespace(transport=object(),
                                sendto=lambda data, addr: datagrams.append((data, addr)))
    ua = UserAgent(reactor, layer, UASettings(proxy, "127.0.0.1", 6050))
    return reactor, ua, datagrams


def test_a_large_request_whose_tcp_connection_is_refused_goes_again_over_udp():
    reactor, ua, datagrams = ua_on_a_reactor()
    request = request_of(ua, 1400)
    outgoing = ua.send(request, ua.proxy_target)
    assert outgoing.target.transport == "TCP" and datagrams == []
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    [(data, addr)] = datagrams
    assert addr == ("127.0.0.1", 5080) and len(data) == 1400
    again = outgoing.request
    assert again.top_via.transport == "UDP" and again.branch != request.branch
    assert data == again.to_bytes()
    # a next hop that cannot take it answers 513: that is the request's final response
    ua.receive(response_to(again, 513, "Message Too Large"), PROXY)
    assert outgoing.final_status == 513
    assert len(reactor.tcpClients) == 1  # TCP was not tried again


def test_a_large_request_whose_tcp_connection_times_out_fails_with_503():
    reactor, ua, datagrams = ua_on_a_reactor()
    outgoing = ua.send(request_of(ua, 1400), ua.proxy_target)
    failures = []
    outgoing.deferred.addErrback(failures.append)
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(TCPTimedOutError()))
    assert datagrams == [] and failures[0].value.status == 503


def test_a_request_for_tcp_whose_connection_is_refused_is_not_sent_over_udp():
    reactor, ua, datagrams = ua_on_a_reactor("sip:127.0.0.1:5080;lr;transport=tcp")
    outgoing = ua.send(request_of(ua, 1400), ua.proxy_target)
    failures = []
    outgoing.deferred.addErrback(failures.append)
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert datagrams == [] and failures[0].value.status == 503



def dialog_with(ua, sent):
    """A dialog of C{ua}'s: its INVITE answered 200 by a far end."""
    from tests.unit.sipfakes import FarEnd, parse_datagram
    outgoing = ua.invite(ua.new_request("INVITE", "sip:user1@sipx.test", "<sip:u@sipx.test>",
                                        "<sip:user1@sipx.test>"))
    ok = parse_datagram(FarEnd(parse_datagram(sent[-1][0])).ok().to_bytes())
    ua.receive(ok, PROXY)
    assert outgoing.dialog is not None
    return outgoing.dialog, ok


def test_an_ack_whose_answer_passes_the_limit_goes_over_tcp_and_so_does_its_repeat():
    """The ACK of a 2xx is a request of its own (§17.1.1.3) that carries the answer to a
    late offer: a large one goes over TCP like any request, and a repeated 2xx gets the same
    bytes over the same transport."""
    ua, sent = ua_with(("udp", "tcp"))
    dialog, ok = dialog_with(ua, sent)
    answer = b"v=0\r\na=x-pad:" + b"p" * 1400 + b"\r\n"
    dialog.ack(answer)
    data, target = sent[-1]
    assert data.startswith(b"ACK ") and target.transport == "TCP"
    assert b"\r\nVia: SIP/2.0/TCP " in data and data.endswith(answer)
    dialog.retransmitted_2xx(ok)
    assert sent[-1] == (data, target)


def test_an_ack_under_the_limit_stays_on_udp():
    ua, sent = ua_with(("udp", "tcp"))
    dialog, _ = dialog_with(ua, sent)
    dialog.ack(b"v=0\r\n")
    data, target = sent[-1]
    assert data.startswith(b"ACK ") and target.transport == "UDP"
    assert b"\r\nVia: SIP/2.0/UDP " in data
