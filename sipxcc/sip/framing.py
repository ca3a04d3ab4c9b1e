"""
SIP framing and parsing (RFC 3261 §7, §18.3): one message per datagram, or messages on a
stream framed by Content-Length; validation of what makes a message usable.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sipxcc.sip.grammar import TOKEN_CHARS, SIPParseError
from sipxcc.sip.headers import KNOWN_NAMES, MAX_MESSAGE, TOKEN, name_key
from sipxcc.sip.message import Request, Response

MAX_HEAD = 16384
"""Largest start line plus header fields accepted on a stream, in bytes (the body is
bounded by the message size)."""

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rf"([{TOKEN_CHARS}]+) ([^ ]+) (SIP/[0-9]+\.[0-9]+)\Z")
_STATUS_LINE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?\Z")
_REQUEST_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>]+\Z")


def _parse_head(head: bytes) -> Request | Response:
    """Parse start line and header fields (no body, no validation)."""
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SIPParseError("bare CR in message head")
    if "\x00" in text:
        # Only a quoted-pair may carry one (RFC 3261 §25.1); we never write a NUL, so a
        # message with one could not be answered, relayed or ACKed: refused whole.
        raise SIPParseError("NUL in message head")
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
        known = KNOWN_NAMES.get(name) if colon else None
        if known is None:
            name = name.rstrip(" \t")
            if not colon or not TOKEN.match(name):
                raise SIPParseError(f"bad header line: {line[:80]!r}")
            known = name_key(name)
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
    partial = _answerable(message, counts)
    try:
        _check_counts(counts)
        if message.version != "SIP/2.0":
            raise SIPParseError(f"unsupported version {message.version}", status=505)
        _ = message.top_via  # parsed now: raises SIPParseError if malformed
        seq, method = message.cseq
        if isinstance(message, Request):
            _validate_request(message, method, counts["max-forwards"] > 0)
        elif message.status < 100:
            raise SIPParseError(f"bad status code {message.status}")
    except SIPParseError as e:
        e.partial = partial
        raise


def _answerable(message: Request | Response, counts: dict[str, int]) -> Request | None:
    """The request, if it has what a 400 answer to it needs (the single headers and a
    parseable top Via); else None."""
    if not isinstance(message, Request) or not counts["via"] \
            or not all(counts[k] for k in _SINGLE):
        return None
    try:
        _ = message.top_via  # parsed now: raises SIPParseError if malformed
    except SIPParseError:
        return None
    return message


def _check_counts(counts: dict[str, int]) -> None:
    for key in _SINGLE:
        if counts[key] != 1:
            raise SIPParseError(f"{'missing' if not counts[key] else 'repeated'} {key}")
    if not counts["via"]:
        raise SIPParseError("missing Via")


def _validate_request(message: Request, method: str, has_max_forwards: bool) -> None:
    # a response's From/To are parsed when (rarely) needed: a transaction matches it
    # by Via branch and CSeq alone (§17.1.3)
    _ = message.from_address, message.to_address  # parsed now, or SIPParseError
    if method != message.method:
        raise SIPParseError(f"CSeq method {method} does not match {message.method}")
    uri = message.uri
    # no ?headers in a SIP Request-URI (§19.1.5); a '?' before the '@' is in the user
    headers_at = uri.find("?", max(uri.rfind("@"), 0))
    if not _REQUEST_URI.match(uri) or (
            headers_at >= 0 and uri[:4].lower() in ("sip:", "sips")):
        raise SIPParseError(f"bad Request-URI: {message.uri[:80]!r}")
    if has_max_forwards:
        hops = message.headers.get("Max-Forwards") or ""
        if not hops.isdigit() or not hops.isascii() or int(hops) > 255:
            raise SIPParseError(f"bad Max-Forwards: {hops[:20]!r}")


def _find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
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
    Content-Length, a head over C{max_head} bytes, a message over C{max_size}) raise
    L{SIPParseError} and the parser refuses further data. A well-framed but invalid
    message is consumed, then passed to C{on_invalid} if given, else raised (the next
    C{feed} resumes after it).
    C{on_ping} is called for each CRLFCRLF keep-alive (RFC 5626 §4.4.1).
    """

    def __init__(self, on_message: Callable[[Request | Response], object],
                 max_size: int = MAX_MESSAGE,
                 on_invalid: Callable[[SIPParseError], object] | None = None,
                 on_ping: Callable[[], object] | None = None, max_head: int = MAX_HEAD):
        self.on_message = on_message
        self.on_invalid = on_invalid
        self.on_ping = on_ping
        self.max_size = max_size
        self.max_head = min(max_head, max_size)
        self.completed = 0  # messages framed so far, valid or not
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for the end of the head
        self._pending: Request | Response | None = None
        self._body_start = 0
        self._body_length = 0
        self.failed: SIPParseError | None = None

    @property
    def in_message(self) -> bool:
        """True while part of a message (beyond keep-alive CRLFs) waits for the rest."""
        return self._pending is not None or bool(self._buffer)

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
                    # a copy: the raised one's traceback holds this frame (and C{data}), and
                    # keeping it would make a cycle only the garbage collector frees
                    self.failed = SIPParseError(str(e))
                    self._buffer = bytearray()
                    raise
                self._pending = None
                self.completed += 1
                if self.on_invalid is None:
                    raise
                self.on_invalid(e)

    def _step(self) -> bool:
        """Make progress on the buffer; False when more data is needed."""
        if self._pending is not None:
            return self._finish_body()
        buf = self._buffer
        if buf.startswith((b"\r", b"\n")):
            skipped = len(buf) - len(buf.lstrip(b"\r\n"))
            if self.on_ping is not None and buf.find(b"\r\n\r\n", 0, skipped) >= 0:
                self.on_ping()
            del buf[:skipped]
            self._scanned = 0
        if not buf:
            return False
        bounds = _find_head_end(buf, max(0, self._scanned - 3))
        if bounds is None:
            if len(buf) > self.max_head:
                raise SIPParseError(f"message head larger than {self.max_head} bytes")
            self._scanned = len(buf)
            return False
        if bounds[0] > self.max_head:
            raise SIPParseError(f"message head larger than {self.max_head} bytes")
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
        assert message is not None
        message.body = bytes(self._buffer[self._body_start:end])
        del self._buffer[:end]
        self._scanned = 0
        _validate(message)
        self._pending = None
        self.completed += 1
        self.on_message(message)
        return True
