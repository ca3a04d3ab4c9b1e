"""
The SIP stack against a real peer: sipp as a UAS that challenges with 401 and checks our
credentials (verifyauth), answers, and takes our ACK and BYE — over UDP and TCP, and
over a lossy UDP path where only retransmissions can carry the call through.
"""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, threads

from sipxcc.calls.sdp import no_media_offer
from sipxcc.sip.digest import DigestCredentials
from sipxcc.sip.transport import TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent


def credentials(password: str) -> DigestCredentials:
    ha1 = hashlib.md5(f"user1:sipx.test:{password}".encode()).hexdigest()
    return DigestCredentials("user1", {"MD5": ha1})


class FirstCopyDropper(protocol.DatagramProtocol):
    """
    A UDP relay between us and the phone that loses the first copy of every datagram in
    both directions, ACKs excepted (sipp cannot take an ACK that a loss delayed past the
    next request): each message gets through only if its sender retransmits it.
    """

    def __init__(self, phone_port: int):
        self.phone = ("127.0.0.1", phone_port)
        self.ours = None
        self.seen: set[bytes] = set()
        self.dropped = 0
        self.lost: list[str] = []

    def datagramReceived(self, data, addr):
        if data not in self.seen and not data.startswith(b"ACK "):
            self.seen.add(data)
            self.dropped += 1
            self.lost.append(data.split(b"\r\n", 1)[0].decode())
            return
        if addr == self.phone:
            if self.ours is not None:
                self.transport.write(data, self.ours)
        else:
            self.ours = addr
            self.transport.write(data, self.phone)


@pytest.fixture
def user_agent():
    made = []

    def make(proxy: str) -> UserAgent:
        layer = TransportLayer(reactor, "127.0.0.1", 0, ("udp", "tcp"))
        layer.start()
        ua = UserAgent(reactor, layer, UASettings(proxy, "127.0.0.1", layer.port,
                                                  realm="sipx.test"))
        made.append(ua)
        return ua
    yield make
    for ua in made:
        ua.stop()
        pytest_twisted.blockon(ua.transport.stop())


def invite(ua: UserAgent, port: int, password: str = "pass1"):
    request = ua.new_request("INVITE", f"sip:user1@127.0.0.1:{port}", "<sip:user1@sipx.test>",
                             "<sip:user1@sipx.test>", [("Content-Type", "application/sdp")],
                             no_media_offer("127.0.0.1", 1, 1))
    return ua.invite(request, credentials(password))


@pytest.mark.parametrize("transport,lossy", [("u1", False), ("t1", False), ("u1", True)])
@pytest_twisted.inlineCallbacks
def test_challenged_call_is_answered_acked_and_hung_up(phone_factory, user_agent,
                                                       transport, lossy):
    phone = phone_factory("uas_auth", transport=transport)
    suffix = ";transport=tcp" if transport == "t1" else ""
    port = phone.port
    if lossy:
        relay = FirstCopyDropper(phone.port)
        listening = reactor.listenUDP(0, relay, interface="127.0.0.1")
        port = listening.getHost().port
    ua = user_agent(f"sip:127.0.0.1:{port};lr{suffix}")
    outgoing = invite(ua, port)
    statuses = []
    outgoing.on_response = lambda r: statuses.append(r.status)
    response = yield outgoing.deferred
    assert response.status == 200
    assert 401 in statuses
    outgoing.dialog.ack()
    bye = yield outgoing.dialog.request("BYE").deferred
    assert bye.status == 200
    code = yield threads.deferToThread(phone.wait, 20)
    assert code == 0, phone.errors()
    if lossy:
        yield listening.stopListening()
        # INVITE, 401, INVITE, 200 and the BYE's 200 (the BYE goes to the phone's Contact,
        # around the relay, and sipp answers via the relay): each first copy was lost
        assert relay.dropped == 5, relay.lost
    assert any('username="user1"' in m for m in phone.received("INVITE"))


@pytest_twisted.inlineCallbacks
def test_wrong_password_is_refused(phone_factory, user_agent):
    phone = phone_factory("uas_auth")
    ua = user_agent(f"sip:127.0.0.1:{phone.port};lr")
    outgoing = invite(ua, phone.port, password="wrong")
    response = yield outgoing.deferred
    assert response.status == 403
    yield threads.deferToThread(phone.wait, 10)
