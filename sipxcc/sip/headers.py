"""
SIP header fields (RFC 3261 §7.3): canonical and compact names, list headers split on
commas, and the ordered, case-insensitive C{Headers} container.

C{Headers.add}, C{set} and C{replace_first} are the one way a header is written: they
refuse (L{UnsafeValue}) a name that is not a token and a value holding CR, LF or NUL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sipxcc.sip.grammar import TOKEN_CHARS, UnsafeValue, wire_text
from sipxcc.sip.uri import split_list

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
KNOWN_NAMES: dict[str, tuple[str, str]] = {}
for _name in _CANONICAL_NAMES:
    KNOWN_NAMES[_name] = KNOWN_NAMES[_name.lower()] = (_name.lower(), _name)
for _short, _name in COMPACT_FORMS.items():
    KNOWN_NAMES[_short] = KNOWN_NAMES[_short.upper()] = (_name.lower(), _name)
_NAMES_LIMIT = 4096

TOKEN = re.compile(rf"[{TOKEN_CHARS}]+\Z")


def name_key(name: str) -> tuple[str, str]:
    known = KNOWN_NAMES.get(name)
    if known is not None:
        return known
    known = KNOWN_NAMES.get(name.lower())
    if known is None:
        known = (name.lower(), name)
    if len(KNOWN_NAMES) < _NAMES_LIMIT and TOKEN.match(name):
        KNOWN_NAMES[name] = known
    return known


def checked_field(name: str, value: str) -> tuple[str, str]:
    """(lower-case key, canonical name) of a header we write, after checking both parts."""
    known = KNOWN_NAMES.get(name)
    if known is None:
        if TOKEN.match(name) is None:
            raise UnsafeValue("header name", name, "is not a token")
        known = name_key(name)
    wire_text(value, known[1])
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
        key = name_key(name)[0]
        for k, _, value in self._fields:
            if k == key:
                if key in LIST_HEADERS and "," in value:
                    return split_list(value)[0]
                return value
        return None

    def values(self, name: str) -> list[str]:
        """Every value of C{name}, in order; list headers are split at top-level commas."""
        key = name_key(name)[0]
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
        key = name_key(name)[0]
        return sum(1 for k, _, _ in self._fields if k == key)

    def add(self, name: str, value: str) -> None:
        key, canonical = checked_field(name, value)
        self._fields.append((key, canonical, value))
        self.cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every field called C{name} with one, at the place of the first."""
        key, canonical = checked_field(name, value)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields[i] = (key, canonical, value)
                self._fields[i + 1:] = [f for f in self._fields[i + 1:] if f[0] != key]
                break
        else:
            self._fields.append((key, canonical, value))
        self.cache.clear()

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of C{name} (e.g. the top Via) where it stands."""
        key = checked_field(name, value)[0]
        for i, (k, canonical, raw) in enumerate(self._fields):
            if k == key:
                rest = split_list(raw)[1:] if key in LIST_HEADERS and "," in raw else []
                self._fields[i] = (k, canonical, ", ".join([value, *rest]))
                self.cache.clear()
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = name_key(name)[0]
        self._fields = [f for f in self._fields if f[0] != key]
        self.cache.clear()

    def __contains__(self, name: str) -> bool:
        key = name_key(name)[0]
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
