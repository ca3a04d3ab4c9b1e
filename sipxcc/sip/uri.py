"""
SIP URIs, name-addr/addr-spec addresses and Via values (RFC 3261 §19.1, §20.10, §20.42).

Everything here is pure string work. Parse errors raise L{SIPParseError}, a ValueError
(L{sipxcc.sip.grammar} holds it and the other tables the whole codec shares).

What we write is held to a stricter rule than what we read: no text that reaches a SIP
message may hold CR, LF or NUL (L{wire_text} refuses it with L{UnsafeValue}), and the URIs
we build ourselves (L{build_sip_uri}) have every part checked against the RFC 3261 §25.1
grammar, or %-escaped where the grammar allows escapes.
"""

from __future__ import annotations

import ipaddress
import re

from sipxcc.sip.grammar import TOKEN_CHARS, SIPParseError, UnsafeValue, quote, wire_text

__all__ = ["TOKEN_CHARS", "SIPParseError", "UnsafeValue", "quote", "wire_text"]

_TOKEN = re.compile(rf"[{TOKEN_CHARS}]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_HOSTPORT = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*[A-Za-z0-9_.])?)(?::([0-9]{1,5}))?\Z")
# One ";name[=value]" header parameter; the value is a token, host or quoted string.
_PARAM = re.compile(
    rf"[ \t]*;[ \t]*([{TOKEN_CHARS}]+)"
    r"(?:[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^;,\s\"]+))?[ \t]*")
_DISPLAY_TOKENS = re.compile(rf"[{TOKEN_CHARS}]+(?:[ \t]+[{TOKEN_CHARS}]+)*\Z")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")
_URI_FORBIDDEN = re.compile(r"[\s<>\"\x00]")
# Fast paths for the common shapes; anything else goes through the general code.
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*[A-Za-z0-9_.])?)"
_SIMPLE_SIP_URI = re.compile(
    r"([Ss][Ii][Pp][Ss]?):(?:([^@:;?\s<>\"\x00]+)(?::([^@;?\s<>\"\x00]*))?@)?" + _HOST
    + r"(?::([0-9]{1,5}))?((?:;[^;?=@\s<>\"\x00]+(?:=[^;?=@\s<>\"\x00]+)?)*)\Z")
_SIMPLE_PARAMS = re.compile(
    rf"(?:[ \t]*;[ \t]*[{TOKEN_CHARS}]+(?:[ \t]*=[ \t]*[^;,\s\"]+)?)*[ \t]*\Z")
_NAME_ADDR = re.compile(
    rf'[ \t]*(?:"((?:[^"\\]|\\.)*)"[ \t]*|([{TOKEN_CHARS}]+(?:[ \t]+[{TOKEN_CHARS}]+)*)?[ \t]*)'
    r'<([^<>\s"]*)>(.*)\Z', re.S)
_VIA = re.compile(
    rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?")


# RFC 3261 §25.1 host = hostname / IPv4address / IPv6reference. No IPv6 zone ID: "%"
# is not in the grammar (and a zone is meaningless to any other host).
_HEX4 = "[0-9A-Fa-f]{1,4}"
_HEXSEQ = f"{_HEX4}(?::{_HEX4})*"
_IPV4ADDRESS = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_IPV4_GRAMMAR = re.compile(_IPV4ADDRESS)
_IPV6_GRAMMAR = re.compile(
    f"(?:{_HEXSEQ}(?:::(?:{_HEXSEQ})?)?|::(?:{_HEXSEQ})?)(?::{_IPV4ADDRESS})?")
_HOSTNAME_GRAMMAR = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?")
MAX_HOSTNAME = 253
# RFC 3261 §25.1 user = 1*( unreserved / escaped / user-unreserved )
USER_CHARS = r"A-Za-z0-9\-_.!~*'()&=+$,;?/"
_USER_GRAMMAR = re.compile(rf"(?:[{USER_CHARS}]|%[0-9A-Fa-f]{{2}})+")
# paramchar = param-unreserved / unreserved / escaped;  hnv-unreserved for URI headers
_PARAM_SAFE = frozenset("[]/:&+$" "-_.!~*'()" "abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEADER_SAFE = frozenset("[]/?:+$" "-_.!~*'()" "abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def is_ipv4(text: str) -> bool:
    """RFC 3261 IPv4address with every octet at most 255."""
    return _IPV4_GRAMMAR.fullmatch(text) is not None and all(
        int(octet) <= 255 for octet in text.split("."))


def is_ipv6(text: str) -> bool:
    """RFC 3261 IPv6address (RFC 4291 §2.2 forms, no zone ID), without brackets."""
    if _IPV6_GRAMMAR.fullmatch(text) is None:
        return False
    try:  # the grammar does not count groups; the address must also be a real one
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_host(text: str) -> bool:
    """RFC 3261 §25.1 C{host}: a hostname, an IPv4 address or C{[IPv6 address]}."""
    if text.startswith("[") and text.endswith("]"):
        return is_ipv6(text[1:-1])
    if _IPV4_GRAMMAR.fullmatch(text):
        return is_ipv4(text)
    return len(text) <= MAX_HOSTNAME and _HOSTNAME_GRAMMAR.fullmatch(text) is not None


def is_user(text: str) -> bool:
    """RFC 3261 §25.1 C{user}: unreserved, user-unreserved and %-escaped characters."""
    return _USER_GRAMMAR.fullmatch(text) is not None


def _escape(text: str, safe: frozenset[str]) -> str:
    return "".join(ch if ch in safe else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
                   for ch in text)


def escape_param(text: str) -> str:
    """A URI parameter name or value: %-escape everything but RFC 3261 C{paramchar}."""
    return _escape(text, _PARAM_SAFE)


def escape_header(text: str) -> str:
    """A URI header name or value (C{hname}/C{hvalue}): %-escape every other character,
    so C{#} becomes C{%23} and C{&}, C{=}, C{;}, C{@} cannot end the header (§19.1.1)."""
    return _escape(text, _HEADER_SAFE)


def build_sip_uri(addr_spec: str, *, params: dict[str, str | None] | None = None,
                  headers: dict[str, str] | None = None, scheme: str = "sip") -> URI:
    """
    Our own SIP URI for C{user@host[:port]} (or just C{host[:port]}), each part checked
    against the RFC 3261 §25.1 grammar; C{params} and C{headers} are %-escaped here.
    Raises L{UnsafeValue} for a part outside the grammar.
    """
    written_user, at, hostport = addr_spec.rpartition("@")
    user: str | None = written_user if at else None
    if user is not None and not is_user(user):
        raise UnsafeValue("URI user part", addr_spec, "is not an RFC 3261 user")
    host, port = hostport, None
    if hostport.startswith("["):
        end = hostport.find("]") + 1  # 0 when unterminated: then is_host refuses it
        if end and hostport[end:end + 1] == ":":
            host, port = hostport[:end], hostport[end + 1:]
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    if not is_host(host):
        raise UnsafeValue("URI host", addr_spec, "is not an RFC 3261 host")
    if port is not None and not (port.isdigit() and port.isascii() and len(port) <= 5
                                 and 0 < int(port) < 65536):
        raise UnsafeValue("URI port", addr_spec, "is not a port number")
    return URI(scheme, user, None, host, None if port is None else int(port),
               {escape_param(k): None if v is None else escape_param(v)
                for k, v in (params or {}).items()},
               {escape_header(k): escape_header(v) for k, v in (headers or {}).items()})


def split_list(text: str) -> list[str]:
    """Split a comma-joined header value, ignoring commas inside quotes and <> (§7.3.1)."""
    if "," not in text:
        return [text.strip()]
    parts, start, in_quote, in_angle, i = [], 0, False, False, 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ';name=value;flag' header parameters; names are lower-cased, values kept."""
    params: dict[str, str | None] = {}
    if _SIMPLE_PARAMS.match(text):
        for field in text.split(";")[1:]:
            name, eq, value = field.partition("=")
            params[name.strip(" \t").lower()] = value.strip(" \t") if eq else None
        return params
    pos, n = 0, len(text)
    while pos < n:
        m = _PARAM.match(text, pos)
        if m is None or m.end() == pos:
            raise SIPParseError(f"bad parameter in {what}: {text[pos:pos + 40]!r}")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_userinfo(rest: str, text: str) -> tuple[str | None, str | None, str]:
    """(user, password, what follows the '@') of a SIP URI after its scheme; the user
    and password are None when absent."""
    at = rest.find("@")
    if at >= 0 and rest.find("@", at + 1) >= 0:
        # A second, unescaped '@' is illegal but common in ?Replaces=callid@host:
        # the userinfo ends at the last '@' before the headers.
        query = rest.find("?")
        before = rest.rfind("@", 0, query) if query >= 0 else -1
        at = before if before >= 0 else at
    if at < 0:
        return None, None, rest
    user, colon, password = rest[:at].partition(":")
    if not user:
        raise SIPParseError(f"empty user part in URI: {text[:60]!r}")
    return user, password if colon else None, rest[at + 1:]


def _parse_uri_headers(query: str, text: str) -> dict[str, str]:
    """The C{?name=value&...} headers of a SIP URI (RFC 3261 §19.1.1)."""
    headers: dict[str, str] = {}
    for field in query.split("&"):
        name, eq, value = field.partition("=")
        if not name or not eq:
            raise SIPParseError(f"bad URI header {field!r} in {text[:60]!r}")
        headers[name] = value
    return headers


class URI:
    """
    A sip:, sips: or tel: URI (RFC 3261 §19.1.1, RFC 3966); other schemes are kept opaque.

    Parameter names are lower-cased; values and %-escapes are kept as written.
    A flag parameter (";lr") has the value None.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(self, scheme: str, user: str | None = None, password: str | None = None,
                 host: str = "", port: int | None = None,
                 params: dict[str, str | None] | None = None,
                 headers: dict[str, str] | None = None, opaque: str | None = None):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers
        self.opaque = opaque

    @classmethod
    def parse(cls, text: str) -> URI:
        m = _SIMPLE_SIP_URI.match(text)
        if m is not None:
            scheme, user, password, host, port, param_text = m.groups()
            params: dict[str, str | None] = {}
            if param_text:
                for field in param_text.split(";")[1:]:
                    name, eq, value = field.partition("=")
                    params[name.lower()] = value if eq else None
            if port is not None:
                port = int(port)
                if port > 65535:
                    raise SIPParseError(f"bad port in URI: {text[:60]!r}")
            return cls(scheme.lower(), user, password, host, port, params)
        m = _SCHEME.match(text)
        if m is None:
            raise SIPParseError(f"not a URI: {text[:60]!r}")
        if _URI_FORBIDDEN.search(text):
            raise SIPParseError(f"illegal character in URI: {text[:60]!r}")
        scheme = m.group(1).lower()
        rest = text[m.end():]
        if scheme == "tel":
            number, _, tel_params = rest.partition(";")
            if not number:
                raise SIPParseError(f"empty tel: URI: {text[:60]!r}")
            return cls("tel", user=number,
                       params=parse_params(";" + tel_params, "URI") if tel_params else {})
        if scheme not in ("sip", "sips"):
            if not rest:
                raise SIPParseError(f"empty URI: {text[:60]!r}")
            return cls(scheme, opaque=rest)
        return cls._parse_sip(scheme, rest, text)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str, text: str) -> URI:
        user, password, rest = _split_userinfo(rest, text)
        query = rest.find("?")
        headers: dict[str, str] = {}
        if query >= 0:
            headers = _parse_uri_headers(rest[query + 1:], text)
            rest = rest[:query]
        hostport, semi, param_text = rest.partition(";")
        hp = _HOSTPORT.match(hostport)
        if hp is None:
            raise SIPParseError(f"bad host in URI: {text[:60]!r}")
        port = None
        if hp.group(2) is not None:
            port = int(hp.group(2))
            if port > 65535:
                raise SIPParseError(f"bad port in URI: {text[:60]!r}")
        params: dict[str, str | None] = {}
        if semi:
            for field in param_text.split(";"):
                name, eq, value = field.partition("=")
                if not name or (eq and not value):
                    raise SIPParseError(f"bad URI parameter {field!r} in {text[:60]!r}")
                params[name.lower()] = value if eq else None
        return cls(scheme, user, password, hp.group(1), port, params, headers)

    def __str__(self) -> str:
        if self.opaque is not None:
            return wire_text(f"{self.scheme}:{self.opaque}", "URI")
        if self.scheme == "tel":
            return wire_text(f"tel:{self.user}{format_params(self.params)}", "URI")
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return wire_text("".join(out), "URI")

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        # Scheme and host compare case-insensitively (§19.1.4); the rest as written.
        return (self.scheme, self.user, self.password, self.host.lower(), self.port,
                tuple(sorted(self.params.items(), key=lambda kv: kv[0])),
                tuple(sorted(self.headers.items())), self.opaque)

    @property
    def address(self) -> str:
        """C{user@host} (or just the host), the form used for AOR comparisons."""
        return f"{self.user}@{self.host}" if self.user is not None else self.host


def _unquote(quoted: str, text: str) -> str:
    """The text of a quoted-string's inside; CR and LF are in neither qdtext nor a
    quoted-pair (RFC 3261 §25.1), and a NUL is never one of ours: SIPParseError."""
    if "\r" in quoted or "\n" in quoted or "\x00" in quoted:
        raise SIPParseError(f"CR, LF or NUL in a quoted string: {text[:60]!r}")
    return _UNESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted


class Address:
    """
    A name-addr or addr-spec with header parameters (RFC 3261 §20.10, §25.1).

    C{display} is unquoted (escapes resolved); None when absent. C{uri} is None only for
    the Contact wildcard C{*}.
    """

    __slots__ = ("display", "uri", "params")

    def __init__(self, display: str | None, uri: URI | None,
                 params: dict[str, str | None] | None = None):
        self.display = display
        self.uri = uri
        self.params = {} if params is None else params

    @classmethod
    def parse(cls, text: str) -> Address:
        m = _NAME_ADDR.match(text)
        if m is not None:
            quoted, display, uri_text, tail = m.groups()
            if quoted is not None:
                display = _unquote(quoted, text)
            params = parse_params(tail, "address") if tail.strip() else {}
            return cls(display, URI.parse(uri_text), params)
        text = text.strip()
        if text == "*":
            return cls(None, None)
        display = None
        if text.startswith('"'):
            m = _QUOTED.match(text)
            if m is None:
                raise SIPParseError(f"unterminated quoted string: {text[:60]!r}")
            display = _unquote(m.group(1), text)
            rest = text[m.end():].lstrip(" \t")
            if not rest.startswith("<"):
                raise SIPParseError(f"quoted display name without <URI>: {text[:60]!r}")
        else:
            lt = text.find("<")
            if lt < 0:
                # addr-spec: header parameters start at the first ';' (§20.10)
                uri_text, semi, param_text = text.partition(";")
                uri_text = uri_text.rstrip(" \t")
                if "?" in uri_text or "," in uri_text:
                    raise SIPParseError(f"URI with '?' or ',' must be in <>: {text[:60]!r}")
                uri = URI.parse(uri_text)
                params = parse_params(semi + param_text, "address") if semi else {}
                return cls(None, uri, params)
            name = text[:lt].strip()
            if name:
                if not _DISPLAY_TOKENS.match(name):
                    raise SIPParseError(f"display name must be quoted: {name[:60]!r}")
                display = name
            rest = text[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SIPParseError(f"missing '>': {text[:60]!r}")
        uri = URI.parse(rest[1:gt])
        tail = rest[gt + 1:]
        params = parse_params(tail, "address") if tail.strip() else {}
        return cls(display, uri, params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.uri is None:
            return "*"
        prefix = "" if self.display is None else quote(self.display) + " "
        return f"{prefix}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"


def parse_address_list(text: str) -> list[Address]:
    """Parse a comma-joined list of addresses (Contact, Route, Record-Route, ...)."""
    return [Address.parse(part) for part in split_list(text)]


class Via:
    """
    One Via value (RFC 3261 §20.42): C{SIP/2.0/UDP host:port;params}.

    C{port} is None when absent; C{host} keeps the brackets of an IPv6 reference.
    Received Vias are echoed from the raw header text, never from C{str(via)}.
    """

    __slots__ = ("transport", "host", "port", "params", "protocol")

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: dict[str, str | None] | None = None, protocol: str = "SIP/2.0"):
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.protocol = protocol

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA.match(text)
        if m is None:
            raise SIPParseError(f"bad Via: {text[:60]!r}")
        port = None
        if m.group(5) is not None:
            port = int(m.group(5))
            if port > 65535:
                raise SIPParseError(f"bad port in Via: {text[:60]!r}")
        tail = text[m.end():]
        params = parse_params(tail, "Via") if tail.strip() else {}
        return cls(m.group(3).upper(), m.group(4), port, params,
                   f"{m.group(1)}/{m.group(2)}")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """True when the rport parameter is present, as a flag or with a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The rport value, or None when absent or a bare flag (see L{has_rport})."""
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host, self.port)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"
