"""
The client side of HTTP Digest as SIP uses it (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760).

Answers a 401 WWW-Authenticate or 407 Proxy-Authenticate challenge from a stored HA1,
never from a clear-text password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from sipxcc.sip.grammar import quote

_SCHEME = re.compile(r"[ \t]*([A-Za-z][A-Za-z0-9\-]*)[ \t]+")
_PARAM = re.compile(
    r"[ \t]*([A-Za-z0-9_\-]+)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^,\s\"]*)[ \t]*(?:,|\Z)")
_UNESCAPE = re.compile(r"\\(.)")


def _sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


_HASHES = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": _sha512_256,
}


@dataclass(frozen=True)
class Challenge:
    """A parsed Digest challenge (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    stale: bool = False
    userhash: bool = False
    params: dict[str, str] = field(default_factory=dict, compare=False)
    scheme: str = "Digest"

    @classmethod
    def parse(cls, header_value: str) -> Challenge:
        """Parse a WWW-Authenticate / Proxy-Authenticate value; ValueError if unusable."""
        m = _SCHEME.match(header_value)
        if m is None or m.group(1).lower() != "digest":
            raise ValueError(f"not a Digest challenge: {header_value[:60]!r}")
        params: dict[str, str] = {}
        pos, text = m.end(), header_value.rstrip(" \t,")
        while pos < len(text):
            p = _PARAM.match(text, pos)
            if p is None or p.end() == pos:
                raise ValueError(f"bad Digest challenge parameter: {text[pos:pos + 40]!r}")
            value = p.group(2)
            if value.startswith('"'):
                value = _UNESCAPE.sub(r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        if "realm" not in params or not params.get("nonce"):
            raise ValueError("Digest challenge without realm or nonce")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(realm=params["realm"], nonce=params["nonce"], opaque=params.get("opaque"),
                   algorithm=params.get("algorithm") or "MD5", qop=qop,
                   stale=params.get("stale", "").lower() == "true",
                   userhash=params.get("userhash", "").lower() == "true", params=params)


@dataclass(frozen=True)
class DigestCredentials:
    """A user name and its HA1 per base algorithm ("MD5", "SHA-256"), as lowercase hex."""

    username: str
    ha1: dict[str, str]

    def ha1_for(self, algorithm: str) -> str | None:
        wanted = algorithm.upper()
        for name, value in self.ha1.items():
            if name.upper() == wanted:
                return value
        return None


def make_cnonce() -> str:
    """A fresh client nonce."""
    return secrets.token_hex(8)


def authorization(challenge: Challenge, creds: DigestCredentials, method: str, uri: str,
                  nc: int, cnonce: str) -> str | None:
    """
    The Authorization / Proxy-Authorization value answering C{challenge}, or None when
    its algorithm is unsupported, no HA1 is known for it, or it offers only auth-int.
    """
    algorithm = challenge.algorithm.upper()
    base, sess = (algorithm[:-5], True) if algorithm.endswith("-SESS") else (algorithm, False)
    digest = _HASHES.get(base)
    ha1 = creds.ha1_for(base)
    if digest is None or ha1 is None:
        return None
    if challenge.qop and "auth" not in challenge.qop:
        return None  # auth-int only: we never hash bodies

    def h(text: str) -> str:
        return digest(text.encode("utf-8"))

    try:
        if sess:  # RFC 2617 §3.2.2.2
            ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
        ha2 = h(f"{method}:{uri}")
        if challenge.qop:
            response = h(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        else:  # RFC 2069 compatibility
            response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    except ValueError:  # e.g. SHA-512-256 missing from this OpenSSL
        return None
    username = creds.username
    if challenge.userhash:  # RFC 7616 §3.4.4
        username = h(f"{username}:{challenge.realm}")
    parts = [f"username={quote(username)}", f"realm={quote(challenge.realm)}",
             f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}",
             f'response="{response}"', f"algorithm={challenge.algorithm}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f"cnonce={quote(cnonce)}"]
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)
