"""
SIP message codec (RFC 3261 §7, §18.3, §20; RFC 3420 sipfrag).

Our own parser because twisted.protocols.sip counts bodies in characters, cannot frame
compact "l:" on streams, mangles folding/IPv6/sips:/Request-URIs and leaks RuntimeError.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable

from sipxcc.sip.uri import TOKEN_CHARS, Address, SIPParseError, Via, split_list

__all__ = ["MAX_MESSAGE", "Headers", "Request", "Response", "SIPParseError", "StreamParser",
           "make_branch", "make_call_id", "make_tag", "parse_datagram", "parse_sipfrag",
           "response_to"]

MAX_MESSAGE = 65536
MAGIC_COOKIE = "z9hG4bK"

# RFC 3261 §7.3.3 plus the registered compact forms of later extensions.
COMPACT_FORMS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "y": "Identity", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition",
}
_CANONICAL_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "History-Info",
    "Identity", "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
    "Organization", "P-Asserted-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-Sub",
    "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires",
    "Subject", "Subscription-State", "Supported", "Target-Dialog", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)
# Headers whose values are comma-separated lists (§7.3.1); others are never split.
LIST_HEADERS = frozenset((
    "accept", "accept-contact", "accept-encoding", "accept-language", "alert-info", "allow",
    "allow-events", "call-info", "contact", "content-encoding", "content-language",
    "error-info", "history-info", "in-reply-to", "p-asserted-identity", "path",
    "proxy-require", "reason", "record-route", "reject-contact", "request-disposition",
    "require", "route", "service-route", "supported", "unsupported", "via", "warning",
))

# name as written -> (lower-case key, canonical name); grows with names seen on the wire.
_NAMES: dict[str, tuple[str, str]] = {}
for _name in _CANONICAL_NAMES:
    _NAMES[_name] = _NAMES[_name.lower()] = (_name.lower(), _name)
for _short, _name in COMPACT_FORMS.items():
    _NAMES[_short] = _NAMES[_short.upper()] = (_name.lower(), _name)
_NAMES_LIMIT = 4096

_TOKEN = re.compile(rf"[{TOKEN_CHARS}]+\Z")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rf"([{TOKEN_CHARS}]+) ([^ ]+) (SIP/[0-9]+\.[0-9]+)\Z")
_STATUS_LINE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?\Z")
_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{TOKEN_CHARS}]+)[ \t]*\Z")
_REQUEST_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>]+\Z")
_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)
_MISSING = object()


def _name_key(name: str) -> tuple[str, str]:
    known = _NAMES.get(name)
    if known is not None:
        return known
    known = _NAMES.get(name.lower())
    if known is None:
        known = (name.lower(), name)
    if len(_NAMES) < _NAMES_LIMIT and _TOKEN.match(name):
        _NAMES[name] = known
    return known


class Headers:
    """
    Ordered, case-insensitive header fields; compact names are expanded on the way in.

    Values are kept exactly as received (folded lines joined with one space).
    """

    __slots__ = ("_fields", "cache")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()):
        self._fields: list[tuple[str, str, str]] = []  # (key, canonical name, raw value)
        self.cache: dict[str, object] = {}  # parsed values, dropped on every change
        for name, value in fields:
            self.add(name, value)

    def get(self, name: str) -> str | None:
        """The first value of the first field called C{name}, or None."""
        key = _name_key(name)[0]
        for k, _, value in self._fields:
            if k == key:
                if key in LIST_HEADERS and "," in value:
                    return split_list(value)[0]
                return value
        return None

    def values(self, name: str) -> list[str]:
        """Every value of C{name}, in order; list headers are split at top-level commas."""
        key = _name_key(name)[0]
        out: list[str] = []
        split = key in LIST_HEADERS
        for k, _, value in self._fields:
            if k == key:
                if split and "," in value:
                    out.extend(v for v in split_list(value) if v)
                else:
                    out.append(value)
        return out

    def count(self, name: str) -> int:
        """How many header lines are called C{name}."""
        key = _name_key(name)[0]
        return sum(1 for k, _, _ in self._fields if k == key)

    def add(self, name: str, value: str) -> None:
        key, canonical = _name_key(name)
        self._fields.append((key, canonical, value))
        self.cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every field called C{name} with one, at the place of the first."""
        key, canonical = _name_key(name)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields[i] = (key, canonical, value)
                self._fields[i + 1:] = [f for f in self._fields[i + 1:] if f[0] != key]
                break
        else:
            self._fields.append((key, canonical, value))
        self.cache.clear()

    def remove(self, name: str) -> None:
        key = _name_key(name)[0]
        self._fields = [f for f in self._fields if f[0] != key]
        self.cache.clear()

    def __contains__(self, name: str) -> bool:
        key = _name_key(name)[0]
        return any(k == key for k, _, _ in self._fields)

    def items(self) -> list[tuple[str, str]]:
        """[(canonical name, raw value)] in order."""
        return [(name, value) for _, name, value in self._fields]

    def copy(self) -> Headers:
        new = Headers()
        new._fields = list(self._fields)
        return new

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class _Message:
    """What requests and responses share: headers, body and the identifying fields."""

    __slots__ = ("headers", "body", "version")

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
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method); raises SIPParseError if missing or malformed."""
        value = self.headers.cache.get("cseq")
        if value is None:
            value = self.headers.cache["cseq"] = self._parse_cseq()
        return value

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
        return value

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
        return value

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
        self.reason = reason
        self.headers = Headers() if headers is None else headers
        self.body = body
        self.version = version

    is_request = False

    @property
    def first_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.first_line!r}>"


def _parse_head(head: bytes) -> Request | Response:
    """Parse start line and header fields (no body, no validation)."""
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SIPParseError("bare CR in message head")
    lines = text.split("\n")
    start = lines[0]
    if start.startswith("SIP/"):
        m = _STATUS_LINE.match(start)
        if m is None:
            raise SIPParseError(f"bad status line: {start[:80]!r}")
        message: Request | Response = Response(int(m.group(2)), m.group(3) or "",
                                               version=m.group(1))
    else:
        m = _REQUEST_LINE.match(start)
        if m is None:
            raise SIPParseError(f"bad request line: {start[:80]!r}")
        message = Request(m.group(1), m.group(2), version=m.group(3))
    fields = message.headers._fields
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SIPParseError("continuation line before the first header")
            key, name, value = fields[-1]
            fields[-1] = (key, name, f"{value} {line.strip()}" if value else line.strip())
            continue
        name, colon, value = line.partition(":")
        known = _NAMES.get(name) if colon else None
        if known is None:
            name = name.rstrip(" \t")
            if not colon or not _TOKEN.match(name):
                raise SIPParseError(f"bad header line: {line[:80]!r}")
            known = _name_key(name)
        fields.append((known[0], known[1], value.strip(" \t")))
    return message


def _content_length(message: Request | Response) -> int | None:
    found = None
    for key, _, value in message.headers._fields:
        if key == "content-length":
            if not value.isdigit() or not value.isascii() or len(value) > 9:
                raise SIPParseError(f"bad Content-Length: {value[:20]!r}")
            if found is not None and int(value) != found:
                raise SIPParseError("conflicting Content-Length headers")
            found = int(value)
    return found


_SINGLE = ("to", "from", "call-id", "cseq")


def _validate(message: Request | Response) -> None:
    """The checks that make a message usable (§8.1.1, §8.2.2, RFC 4475 §3.1.2)."""
    counts = {"to": 0, "from": 0, "call-id": 0, "cseq": 0, "via": 0, "max-forwards": 0}
    for key, _, _ in message.headers._fields:
        if key in counts:
            counts[key] += 1
    is_request = message.is_request
    complete = all(counts[k] for k in _SINGLE) and counts["via"]
    partial = None
    if is_request and complete:
        try:
            message.top_via
            partial = message
        except SIPParseError:
            pass
    try:
        for key in _SINGLE:
            if counts[key] != 1:
                raise SIPParseError(f"{'missing' if not counts[key] else 'repeated'} {key}")
        if not counts["via"]:
            raise SIPParseError("missing Via")
        if message.version != "SIP/2.0":
            raise SIPParseError(f"unsupported version {message.version}", status=505)
        message.top_via
        seq, method = message.cseq
        message.from_address
        message.to_address
        if is_request:
            if method != message.method:
                raise SIPParseError(f"CSeq method {method} does not match {message.method}")
            uri = message.uri
            # no ?headers in a SIP Request-URI (§19.1.5); a '?' before the '@' is in the user
            headers_at = uri.find("?", max(uri.rfind("@"), 0))
            if not _REQUEST_URI.match(uri) or (
                    headers_at >= 0 and uri[:4].lower() in ("sip:", "sips")):
                raise SIPParseError(f"bad Request-URI: {message.uri[:80]!r}")
            if counts["max-forwards"]:
                hops = message.headers.get("Max-Forwards")
                if not hops.isdigit() or not hops.isascii() or int(hops) > 255:
                    raise SIPParseError(f"bad Max-Forwards: {hops[:20]!r}")
        elif message.status < 100:
            raise SIPParseError(f"bad status code {message.status}")
    except SIPParseError as e:
        e.partial = partial
        raise


def _find_head_end(data: bytes, start: int = 0) -> tuple[int, int] | None:
    """(end of head, start of body) at the first empty line, CRLF or bare LF; or None."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf if crlf >= 0 else len(data))
    if lf >= 0:
        return (lf - 1 if data[lf - 1:lf] == b"\r" else lf, lf + 2)
    if crlf >= 0:
        return (crlf, crlf + 4)
    m = _HEAD_END.search(data, start)  # the rare LF CR LF
    return None if m is None else (m.start(), m.end())


def _strip_leading_crlf(data: bytes) -> bytes:
    # §7.5: empty lines before the start line are ignored
    return data.lstrip(b"\r\n") if data[:1] in (b"\r", b"\n") else data


def parse_datagram(data: bytes, max_size: int = MAX_MESSAGE) -> Request | Response:
    """Parse one message from a UDP datagram (RFC 3261 §18.3)."""
    if len(data) > max_size:
        raise SIPParseError(f"message larger than {max_size} bytes")
    data = _strip_leading_crlf(data)
    if not data:
        raise SIPParseError("empty datagram")
    bounds = _find_head_end(data)
    if bounds is None:
        head, body = data.rstrip(b"\r\n"), b""
    else:
        head, body = data[:bounds[0]], data[bounds[1]:]
    message = _parse_head(head)
    length = _content_length(message)
    if length is not None:
        if len(body) < length:
            message.body = body
            error = SIPParseError(f"body shorter ({len(body)}) than Content-Length {length}")
            try:
                _validate(message)
            except SIPParseError as e:
                error.partial = e.partial
            else:
                error.partial = message if message.is_request else None
            raise error
        body = body[:length]
    message.body = body
    _validate(message)
    return message


class StreamParser:
    """
    Frames SIP messages on a TCP/TLS byte stream by Content-Length (RFC 3261 §18.3).

    Calls C{on_message} for each valid message. Framing errors (garbage, no
    Content-Length, too large) raise L{SIPParseError} and the parser refuses further
    data. A well-framed but invalid message is consumed, then passed to C{on_invalid}
    if given, else raised (the next C{feed} resumes after it).
    C{on_ping} is called for each CRLFCRLF keep-alive (RFC 5626 §4.4.1).
    """

    def __init__(self, on_message: Callable[[Request | Response], object],
                 max_size: int = MAX_MESSAGE,
                 on_invalid: Callable[[SIPParseError], object] | None = None,
                 on_ping: Callable[[], object] | None = None):
        self.on_message = on_message
        self.on_invalid = on_invalid
        self.on_ping = on_ping
        self.max_size = max_size
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self._pending: Request | Response | None = None
        self._body_start = 0
        self._body_length = 0
        self.failed: SIPParseError | None = None

    def feed(self, data: bytes) -> None:
        if self.failed is not None:
            raise SIPParseError("stream already failed: " + str(self.failed))
        self._buffer += data
        while True:
            try:
                if not self._step():
                    return
            except SIPParseError as e:
                if self._pending is None:  # framing is lost for good
                    self.failed = e
                    self._buffer = bytearray()
                    raise
                self._pending = None
                if self.on_invalid is None:
                    raise
                self.on_invalid(e)

    def _step(self) -> bool:
        """Make progress on the buffer; False when more data is needed."""
        if self._pending is not None:
            return self._finish_body()
        buf = self._buffer
        if buf[:1] in (b"\r", b"\n"):
            skipped = len(buf) - len(buf.lstrip(b"\r\n"))
            if self.on_ping is not None and b"\r\n\r\n" in buf[:skipped]:
                self.on_ping()
            del buf[:skipped]
            self._scanned = 0
        if not buf:
            return False
        bounds = _find_head_end(buf, max(0, self._scanned - 3))
        if bounds is None:
            if len(buf) > self.max_size:
                raise SIPParseError(f"message head larger than {self.max_size} bytes")
            self._scanned = len(buf)
            return False
        message = _parse_head(bytes(buf[:bounds[0]]))
        length = _content_length(message)
        if length is None:
            raise SIPParseError("Content-Length is required on a stream")
        if bounds[1] + length > self.max_size:
            raise SIPParseError(f"message larger than {self.max_size} bytes")
        self._pending, self._body_start, self._body_length = message, bounds[1], length
        return self._finish_body()

    def _finish_body(self) -> bool:
        end = self._body_start + self._body_length
        if len(self._buffer) < end:
            return False
        message = self._pending
        message.body = bytes(self._buffer[self._body_start:end])
        del self._buffer[:end]
        self._scanned = 0
        _validate(message)
        self._pending = None
        self.on_message(message)
        return True


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
