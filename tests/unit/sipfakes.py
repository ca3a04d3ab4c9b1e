"""A user agent on a fake UDP socket and a Clock, and a scripted far end to talk to it."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from sipxcc.sip.framing import parse_datagram
from sipxcc.sip.message import Request, Response, make_tag, response_to
from sipxcc.sip.transport import SIPDatagramProtocol, TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent

PROXY = ("127.0.0.1", 5080)
OURS = ("127.0.0.1", 6050)


class FakeNetwork:
    """A UA bound to a fake UDP socket; C{sent()} pops what it sent, C{deliver()} feeds it."""

    def __init__(self, proxy: str = "sip:127.0.0.1:5080;lr", realm: str = "sipx.test"):
        self.clock = Clock()
        self.layer = TransportLayer(self.clock, OURS[0], OURS[1], ("udp",))
        self.layer.udp = SIPDatagramProtocol(self.layer)
        self.socket = FakeDatagramTransport()
        self.layer.udp.makeConnection(self.socket)
        self.ua = UserAgent(self.clock, self.layer, UASettings(proxy, OURS[0], OURS[1],
                                                                   realm=realm))
        self._seen = 0

    def sent(self) -> list:
        """The messages sent since the last call, parsed, with their destinations."""
        new = self.socket.written[self._seen:]
        self._seen = len(self.socket.written)
        return [(parse_datagram(data), addr) for data, addr in new]

    def sent_messages(self) -> list:
        return [message for message, _ in self.sent()]

    def deliver(self, message, source=PROXY) -> None:
        data = message if isinstance(message, bytes) else message.to_bytes()
        self.layer.udp.datagramReceived(data, source)


def answer(request: Request, status: int, reason: str, to_tag: str | None = None,
           headers=(), body: bytes = b"") -> Response:
    """The far end's response to C{request}."""
    response = response_to(request, status, reason, to_tag)
    for name, value in headers:
        response.headers.add(name, value)
    response.body = body
    return response


class FarEnd:
    """The phone's side of a dialog we created: it can send in-dialog requests back."""

    def __init__(self, invite: Request, contact: str = "<sip:user1@127.0.0.1:5071>"):
        self.invite = invite
        self.tag = make_tag()
        self.contact = contact
        self.cseq = 100

    def ok(self, body: bytes = b"", record_route: str | None = None) -> Response:
        headers = [("Contact", self.contact)]
        if record_route:
            headers.append(("Record-Route", record_route))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return answer(self.invite, 200, "OK", self.tag, headers, body)

    def request(self, method: str, headers=(), body: bytes = b"") -> Request:
        self.cseq += 1
        inv = self.invite
        contact_uri = inv.headers.get("Contact").strip("<>")
        request = Request(method, contact_uri)
        h = request.headers
        h.add("Via", f"SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK{make_tag()}")
        h.add("Max-Forwards", "70")
        h.add("From", f"{inv.headers.get('To')};tag={self.tag}")
        h.add("To", inv.headers.get("From"))
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{self.cseq} {method}")
        h.add("Contact", self.contact)
        for name, value in headers:
            h.add(name, value)
        request.body = body
        return request
