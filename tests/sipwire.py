"""
Plain-text SIP helpers shared by the unit and integration tests: reading a message's
header lines by its bytes alone (not by sipxcc's codec), and the Digest challenges a fake
proxy sends.
"""

from __future__ import annotations


def head_lines(data: bytes, *, strict: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """(start line, [(header name, value)]) of a SIP message, split at CRLF alone.

    Lenient by default (undecodable bytes replaced, names stripped); with C{strict} the
    bytes are kept (surrogateescape) and every line must be a C{name:value} header line
    whose name has no surrounding white space (AssertionError otherwise).
    """
    errors = "surrogateescape" if strict else "replace"
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors)
    start, *lines = head.split("\r\n")
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        if strict:
            assert colon and name == name.strip() and name, f"not a header line: {line!r}"
        fields.append((name if strict else name.strip(), value.strip()))
    return start, fields


def field(fields: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header C{name} (any case) in C{fields}, or None."""
    return next((value for n, value in fields if n.lower() == name.lower()), None)


def challenge(status: int = 407, realm: str = "sipx.test", nonce: str = "n1",
              stale: bool = False) -> tuple[int, str, list]:
    """(status, reason, headers) of a Digest challenge."""
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    value = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
    if stale:
        value += ", stale=true"
    reason = "Proxy Authentication Required" if status == 407 else "Unauthorized"
    return status, reason, [(header, value)]
