"""A user agent on a fake UDP socket and a Clock, and a scripted far end to talk to it.

The far end builds what it sends as plain text from the bytes the UA put on the wire
(L{WireMessage}), never with sipxcc's own message classes or builders, so that a bug in
those cannot make the UA and its fake peer agree with each other.
"""

from __future__ import annotations

import re
import secrets

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from sipxcc.sip.framing import parse_datagram
from sipxcc.sip.transport import SIPDatagramProtocol, TransportLayer
from sipxcc.sip.useragent import UASettings, UserAgent

PROXY = ("127.0.0.1", 5080)
OURS = ("127.0.0.1", 6050)

# What the UA sent, by the id of the message parsed from it (the message is kept alive with
# it, so that its id is never reused): the far end answers from these bytes.
_RAW: dict[int, tuple[object, bytes]] = {}
_RAW_LIMIT = 20_000

# RFC 3261 §7.3.3 compact forms, for reading what the UA sent.
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type"}


def raw_fields(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The start line and (name, value) header fields of a message, by plain text splitting."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    start, *lines = head.split("\r\n")
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):  # folded continuation (§7.3.1)
            name, value = fields.pop()
            fields.append((name, value + " " + line.strip(" \t")))
            continue
        name, _, value = line.partition(":")
        fields.append((name.strip(" \t"), value.strip(" \t")))  # SP/HTAB only (§25.1 LWS)
    return start, fields


def _canonical(name: str) -> str:
    lower = name.lower()
    return _COMPACT.get(lower, lower)


class WireHeaders:
    """An ordered list of header fields with the few operations the tests use."""

    def __init__(self, fields=()):
        self.fields: list[tuple[str, str]] = list(fields)

    def get(self, name: str) -> str | None:
        return next((v for n, v in self.fields if _canonical(n) == _canonical(name)), None)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if _canonical(n) == _canonical(name)]

    def add(self, name: str, value: str) -> None:
        self.fields.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every C{name} field with one, where the first one was (else at the end)."""
        wanted = _canonical(name)
        index = next((i for i, (n, _) in enumerate(self.fields) if _canonical(n) == wanted),
                     len(self.fields))
        rest = [(n, v) for n, v in self.fields if _canonical(n) != wanted]
        rest.insert(min(index, len(rest)), (name, value))
        self.fields = rest


class WireMessage:
    """A request or response the far end sends: a start line, header fields and a body,
    serialised as RFC 3261 §7 text with Content-Length added."""

    def __init__(self, start_line: str, fields=(), body: bytes = b""):
        self.start_line = start_line
        self.headers = WireHeaders(fields)
        self.body = body

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = self.headers.get("CSeq").split()
        return int(number), method

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID")

    def to_bytes(self) -> bytes:
        lines = [self.start_line, *(f"{n}: {v}" for n, v in self.headers.fields
                                    if _canonical(n) != "content-length"),
                 f"Content-Length: {len(self.body)}", "", ""]
        return "\r\n".join(lines).encode("utf-8") + self.body


def new_tag() -> str:
    return secrets.token_hex(4)


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
        if len(_RAW) > _RAW_LIMIT:
            _RAW.clear()
        parsed = []
        for data, addr in new:
            message = parse_datagram(data)
            _RAW[id(message)] = (message, data)
            parsed.append((message, addr))
        return parsed

    def sent_messages(self) -> list:
        return [message for message, _ in self.sent()]

    def deliver(self, message, source=PROXY) -> None:
        data = message if isinstance(message, bytes) else message.to_bytes()
        self.layer.udp.datagramReceived(data, source)


def request_fields(request) -> list[tuple[str, str]]:
    """The header fields of a request the UA sent, read from its bytes on the wire."""
    known = _RAW.get(id(request))
    if known is not None and known[0] is request:
        return raw_fields(known[1])[1]
    data = request if isinstance(request, bytes) else request.to_bytes()
    return raw_fields(data)[1]


_TAG = re.compile(r";\s*tag=", re.I)


def answer(request, status: int, reason: str, to_tag: str | None = None,
           headers=(), body: bytes = b"") -> WireMessage:
    """The far end's response to C{request} (RFC 3261 §8.2.6.2: Via, From, To, Call-ID and
    CSeq copied; a To tag added when given and the To has none)."""
    fields = []
    for name, value in request_fields(request):
        canonical = _canonical(name)
        if canonical == "to" and to_tag is not None and not _TAG.search(value):
            value = f"{value};tag={to_tag}"
        if canonical in ("via", "from", "to", "call-id", "cseq"):
            fields.append((name, value))
    return WireMessage(f"SIP/2.0 {status} {reason}", [*fields, *headers], body)


class FarEnd:
    """The phone's side of a dialog we created: it can send in-dialog requests back."""

    def __init__(self, invite, contact: str = "<sip:user1@127.0.0.1:5071>"):
        self.invite = invite
        self.fields = WireHeaders(request_fields(invite))
        self.tag = new_tag()
        self.contact = contact
        self.cseq = 100

    def ok(self, body: bytes = b"", record_route: str | None = None) -> WireMessage:
        headers = [("Contact", self.contact)]
        if record_route:
            headers.append(("Record-Route", record_route))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return answer(self.invite, 200, "OK", self.tag, headers, body)

    def request(self, method: str, headers=(), body: bytes = b"") -> WireMessage:
        self.cseq += 1
        inv = self.fields
        contact_uri = inv.get("Contact").strip("<>")
        fields = [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK{secrets.token_hex(8)}"),
            ("Max-Forwards", "70"),
            ("From", f"{inv.get('To')};tag={self.tag}"),
            ("To", inv.get("From")),
            ("Call-ID", inv.get("Call-ID")),
            ("CSeq", f"{self.cseq} {method}"),
            ("Contact", self.contact),
            *headers,
        ]
        return WireMessage(f"{method} {contact_uri} SIP/2.0", fields, body)
