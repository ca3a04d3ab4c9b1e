"""
The little SDP (RFC 4566, offer/answer RFC 3264) that the call flows need.

A description is kept as its ordered list of (type, value) lines so that what we relay
is what we received; only the o= line and direction attributes are ever rewritten.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

_LINE = re.compile(r"([a-z])=(.*)\Z")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
NO_MEDIA_PORT = 2222
MAX_SHOWN = 40
"""Characters of a peer's SDP quoted in an error (which is logged and sent in a Warning)."""


def shown(text: str) -> str:
    """Peer text fit for an error message: at most L{MAX_SHOWN} characters, each
    non-printable one (CR, LF, NUL, other controls) shown as C{?}."""
    short = "".join(ch if ch.isprintable() else "?" for ch in text[:MAX_SHOWN])
    return short + "..." if len(text) > MAX_SHOWN else short


class Origin(NamedTuple):
    """The o= line (RFC 4566 §5.2)."""

    username: str
    session_id: int
    version: int
    net_type: str
    addr_type: str
    address: str

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.version} {self.net_type} "
                f"{self.addr_type} {self.address}")


class Media(NamedTuple):
    """One m= section: its m= fields and its a= attributes as (name, value or None)."""

    type: str
    port: int
    proto: str
    formats: tuple[str, ...]
    attributes: tuple[tuple[str, str | None], ...]
    connection: str | None  # the section's c= value, if any

    @property
    def direction(self) -> str | None:
        """The section's own direction attribute, or None (RFC 3264 §5.1)."""
        for name, _ in self.attributes:
            if name in DIRECTIONS:
                return name
        return None


def _attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return (name, rest if colon else None)


class SessionDescription:
    """An SDP body as an ordered list of lines."""

    def __init__(self, lines: list[tuple[str, str]]):
        self.lines = lines

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        """Parse C{body}; ValueError with a clear message if it is not usable SDP (the peer's
        text in it is bounded and printable: L{shown})."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"SDP is not UTF-8: {e.reason} at byte {e.start}") from None
        lines = []
        for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
            if not raw.strip():
                continue
            m = _LINE.match(raw.rstrip("\r"))
            if m is None:
                raise ValueError(f"SDP line {number} is not 'x=value': {shown(raw)}")
            lines.append((m.group(1), m.group(2)))
        if not lines or lines[0] != ("v", "0"):
            raise ValueError("SDP must start with v=0")
        sdp = cls(lines)
        sdp.origin  # noqa: B018 -- validates the o= line
        sdp.media  # noqa: B018 -- validates the m= lines
        return sdp

    def to_bytes(self) -> bytes:
        return "".join(f"{kind}={value}\r\n" for kind, value in self.lines).encode("utf-8")

    @property
    def origin(self) -> Origin:
        for kind, value in self.lines:
            if kind == "o":
                fields = value.split()
                if len(fields) != 6 or not fields[1].isdigit() or not fields[2].isdigit():
                    raise ValueError(f"bad SDP origin line: o={shown(value)}")
                return Origin(fields[0], int(fields[1]), int(fields[2]), *fields[3:])
        raise ValueError("SDP has no o= line")

    @property
    def connection(self) -> str | None:
        """The session-level c= value, e.g. C{"IN IP4 192.0.2.1"}."""
        for kind, value in self.lines:
            if kind == "m":
                return None
            if kind == "c":
                return value
        return None

    @property
    def media(self) -> list[Media]:
        sections: list[Media] = []
        current: Media | None = None
        attributes: list[tuple[str, str | None]] = []
        connection: str | None = None

        def close() -> None:
            if current is not None:
                sections.append(current._replace(attributes=tuple(attributes),
                                                 connection=connection))

        for kind, value in self.lines:
            if kind == "m":
                close()
                fields = value.split()
                port = fields[1].split("/")[0] if len(fields) >= 3 else ""
                if len(fields) < 3 or not port.isdigit() or int(port) > 65535:
                    raise ValueError(f"bad SDP media line: m={shown(value)}")
                current = Media(fields[0], int(port), fields[2], tuple(fields[3:]), (), None)
                attributes, connection = [], None
            elif current is not None and kind == "a":
                attributes.append(_attribute(value))
            elif current is not None and kind == "c":
                connection = value
        close()
        return sections

    @property
    def direction(self) -> str:
        """The direction of the first media section, else the session's; sendrecv default."""
        sections = self.media
        if sections and sections[0].direction is not None:
            return sections[0].direction
        for kind, value in self.lines:
            if kind == "m":
                break
            if kind == "a" and value in DIRECTIONS:
                return value
        return "sendrecv"

def _addr_type(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"not an IP address for SDP: {address!r}") from None
    return "IP6" if ip.version == 6 else "IP4"


def no_media_offer(address: str, session_id: int, version: int) -> bytes:
    """
    The REFER flow's offer: audio PCMU/PCMA/telephone-event, a=recvonly, so the called
    phone sends nothing we have to handle while we transfer it.
    """
    addr = f"IN {_addr_type(address)} {address}"
    return SessionDescription([
        ("v", "0"), ("o", f"sipxcc {session_id} {version} {addr}"), ("s", "-"),
        ("c", addr), ("t", "0 0"),
        ("m", f"audio {NO_MEDIA_PORT} RTP/AVP 0 8 101"),
        ("a", "rtpmap:0 PCMU/8000"), ("a", "rtpmap:8 PCMA/8000"),
        ("a", "rtpmap:101 telephone-event/8000"), ("a", "fmtp:101 0-15"),
        ("a", "recvonly"),
    ]).to_bytes()


def black_hole_offer(session_id: int, version: int, origin_address: str = "0.0.0.0") -> bytes:
    """
    RFC 3725 §5 flow IV, step 1: one audio codec, non-zero port, c=IN IP4 0.0.0.0, and
    C{a=inactive} (RFC 3264 §5.1): the calling user is parked there for as long as the
    called user rings (up to the ring time, minutes), and a phone that ends a call after
    some seconds without RTP (linphone's nortp_timeout, baresip's rtp_timeout) only does so
    for a stream it expects to receive on; an inactive stream expects nothing.
    """
    return SessionDescription([
        ("v", "0"),
        ("o", f"sipxcc {session_id} {version} IN {_addr_type(origin_address)} "
              f"{origin_address}"),
        ("s", "-"), ("c", "IN IP4 0.0.0.0"), ("t", "0 0"),
        ("m", f"audio {NO_MEDIA_PORT} RTP/AVP 0"), ("a", "rtpmap:0 PCMU/8000"),
        ("a", "inactive"),
    ]).to_bytes()
