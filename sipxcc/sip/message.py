"""
SIP messages (RFC 3261 §7, §20; RFC 3420 sipfrag): requests, responses and the helpers
that build them. Parsing and framing are in L{sipxcc.sip.framing}.

Our own codec because twisted.protocols.sip counts bodies in characters, cannot frame
compact "l:" on streams, mangles folding/IPv6/sips:/Request-URIs and leaks RuntimeError.

A message refuses (L{UnsafeValue}) a method that is not a token, a Request-URI with a
space, and CR, LF or NUL anywhere in its start line; its headers refuse them in names and
values (L{Headers}); and C{to_bytes} checks the whole head once more for a NUL, or a CR or
LF that is not a line end, so no caller can put a line break of its own onto the wire
(fields copied from a received message cannot hold one: framing refuses a NUL too).
"""

from __future__ import annotations

import re
import secrets

from sipxcc.sip.grammar import TOKEN_CHARS, SIPParseError, UnsafeValue, wire_text
from sipxcc.sip.headers import MAGIC_COOKIE, MAX_MESSAGE, TOKEN, Headers
from sipxcc.sip.uri import Address, Via

__all__ = ["MAX_MESSAGE", "Headers", "Request", "Response", "SIPParseError", "UnsafeValue",
           "make_branch", "make_call_id", "make_tag", "parse_sipfrag", "response_to"]

_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{TOKEN_CHARS}]+)[ \t]*\Z")
_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_MISSING = object()
_REQUEST_URI_SPACE = re.compile(r"[ \r\n\x00]")


class _Message:
    """What requests and responses share: headers, body and the identifying fields."""

    __slots__ = ("headers", "body", "version")

    headers: Headers
    body: bytes
    version: str

    @property
    def first_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Start line, headers in order, Content-Length from the body, blank line, body."""
        length = f"Content-Length: {len(self.body)}"
        lines = [self.first_line]
        for key, name, value in self.headers._fields:
            if key == "content-length":
                if length:
                    lines.append(length)
                    length = ""
            else:
                lines.append(f"{name}: {value}")
        if length:
            lines.append(length)
        head = "\r\n".join(lines)
        breaks = len(lines) - 1
        if head.count("\n") != breaks or head.count("\r") != breaks or "\x00" in head:
            for line in lines:  # a field written around Headers: name it
                wire_text(line, "SIP message line")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method); raises SIPParseError if missing or malformed."""
        value = self.headers.cache.get("cseq")
        if value is None:
            value = self.headers.cache["cseq"] = self._parse_cseq()
        return value  # type: ignore[return-value]  # the cache holds what _parse_cseq gave

    def _parse_cseq(self) -> tuple[int, str]:
        raw = self.headers.get("CSeq")
        m = _CSEQ.match(raw) if raw is not None else None
        if m is None or int(m.group(1)) >= 2 ** 31:
            raise SIPParseError(f"bad CSeq: {raw!r}")
        return (int(m.group(1)), m.group(2))

    @property
    def top_via(self) -> Via | None:
        """The first Via, parsed; None if there is none."""
        cache = self.headers.cache
        value = cache.get("top_via", _MISSING)
        if value is _MISSING:
            value = cache["top_via"] = self._parse_top_via()
        return value  # type: ignore[return-value]  # the cache holds what _parse_top_via gave

    def _parse_top_via(self) -> Via | None:
        raw = self.headers.get("Via")
        return None if raw is None else Via.parse(raw)

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.values("Via")]

    @property
    def branch(self) -> str | None:
        via = self.top_via
        return None if via is None else via.branch

    @property
    def from_address(self) -> Address:
        return self._address("From")

    @property
    def to_address(self) -> Address:
        return self._address("To")

    def _address(self, name: str) -> Address:
        value = self.headers.cache.get(name)
        if value is None:
            raw = self.headers.get(name)
            if raw is None:
                raise SIPParseError(f"missing {name}")
            value = self.headers.cache[name] = Address.parse(raw)
        return value  # type: ignore[return-value]  # the cache holds the parsed Address

    @property
    def from_tag(self) -> str | None:
        return self.from_address.tag

    @property
    def to_tag(self) -> str | None:
        return self.to_address.tag


class Request(_Message):
    """A SIP request; C{uri} is the Request-URI exactly as written."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None,
                 body: bytes = b"", version: str = "SIP/2.0"):
        if TOKEN.match(method) is None:
            raise UnsafeValue("SIP method", method, "is not a token")
        if _REQUEST_URI_SPACE.search(uri) is not None:
            raise UnsafeValue("Request-URI", uri, "holds a space, CR, LF or NUL")
        self.method = method
        self.uri = uri
        self.headers = Headers() if headers is None else headers
        self.body = body
        self.version = version

    is_request = True

    @property
    def first_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.first_line!r}>"


class Response(_Message):
    """A SIP response."""

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str, headers: Headers | None = None,
                 body: bytes = b"", version: str = "SIP/2.0"):
        self.status = status
        self.reason = wire_text(reason, "reason phrase")
        self.headers = Headers() if headers is None else headers
        self.body = body
        self.version = version

    is_request = False

    @property
    def first_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.first_line!r}>"


_RESPONSE_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def response_to(request: Request, status: int, reason: str,
                to_tag: str | None = None) -> Response:
    """A response with Via, From, To, Call-ID and CSeq copied from the request (§8.2.6.2)."""
    response = Response(status, reason)
    fields = response.headers._fields
    for field in request.headers._fields:
        if field[0] in _RESPONSE_COPIED:
            if field[0] == "to" and to_tag is not None and not _TAG_PARAM.search(field[2]):
                field = (field[0], field[1], f"{field[2]};tag={to_tag}")
            fields.append(field)
    return response


_SIPFRAG_STATUS = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?\Z")


def parse_sipfrag(body: bytes) -> tuple[int, str, str] | None:
    """The status line of a C{message/sipfrag} body (RFC 3420): (status, reason, line)."""
    text = body.decode("utf-8", "replace").lstrip("\r\n")
    line = text.split("\n", 1)[0].rstrip("\r").rstrip(" \t")
    m = _SIPFRAG_STATUS.match(line)
    if m is None:
        return None
    return (int(m.group(2)), (m.group(3) or "").strip(), line)


def make_branch() -> str:
    """A new RFC 3261 branch: the magic cookie then 64 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def make_tag() -> str:
    """A new From/To tag with 48 random bits (§19.3)."""
    return secrets.token_hex(6)


def make_call_id(host: str) -> str:
    """A new globally unique Call-ID, 96 random bits @ host (§8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"
