"""
What the whole SIP codec shares: its two errors, the RFC 3261 §25.1 token characters, and
the rule for text we write (L{wire_text}, L{quote}).

Parse errors raise L{SIPParseError}, a ValueError. What we write is held to a stricter
rule than what we read: no text that reaches a SIP message may hold CR, LF or NUL.
"""

from __future__ import annotations

from typing import Any

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
"""RFC 3261 §25.1 C{token} characters, for a regular expression's character class."""


class SIPParseError(ValueError):
    """
    A SIP message, URI or header value does not follow the grammar.

    @ivar partial: a L{sipxcc.sip.message.Request} when enough of it was parsed
        (start line, Via, From, To, Call-ID, CSeq) to answer it, else None.
    @ivar status: the status code to answer with (400, or 505 for an unknown SIP version).
    """

    def __init__(self, message: str, partial: Any = None, status: int = 400):
        super().__init__(message)
        self.partial = partial
        self.status = status


class UnsafeValue(ValueError):
    """
    Text meant for a SIP message would break it: it holds CR, LF or NUL (which could end
    a header line and start another), or a URI part we build is outside the RFC 3261
    grammar. Refused, never silently stripped.
    """

    def __init__(self, what: str, text: str, why: str = "holds CR, LF or NUL"):
        super().__init__(f"{what} {why}: {text[:80]!r}")
        self.what = what


def wire_text(text: str, what: str) -> str:
    """Return C{text} if it may be written into a SIP message; else raise L{UnsafeValue}."""
    if "\r" in text or "\n" in text or "\x00" in text:  # three scans beat one regex
        raise UnsafeValue(what, text)
    return text


def quote(text: str) -> str:
    """A quoted-string (RFC 3261 §25.1): C{"} and C{\\} escaped as quoted-pairs; text
    holding CR, LF or NUL is refused (L{UnsafeValue}), since no quoted-pair may carry it."""
    wire_text(text, "quoted string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
