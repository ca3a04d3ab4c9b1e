"""The sipX user directory: ``validusers.xml`` or ``credential.xml``, re-read when it changes.

Both formats are detected by their root element. The file is parsed with a hardened lxml
parser (no network, no DTD, no entity expansion). A reload that fails keeps the users we
had and logs why, so a half-written file never empties the directory.

Names end up in SIP messages, so they are held to what a name can be: an identity that is
not C{user@host} in SIP's characters (RFC 3261 §25.1), or a user name holding white space
or control characters, makes the file unusable; such an alias is left out. Display names,
which sipX users edit themselves, are cleaned instead: every run of control (non-printable)
characters becomes one space, and the result is bounded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

VALIDUSERS_NS = "http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00"
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
MAX_DISPLAY_NAME = 128
"""Characters of a display name kept (sipX's own limit on the field is far lower)."""
# user@host[:port]: RFC 3261 user characters and escapes; a host name, IPv4 address or
# [IPv6 address] (hex digits, colons, dots: no zone ID)
_IDENTITY = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+"
                       r"@(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]+\])"
                       r"(?::[0-9]{1,5})?")


class DirectoryError(Exception):
    """The user directory cannot be used; ``str()`` is one line naming the file."""


@dataclass(frozen=True)
class User:
    """One sipX user; the tokens are lowercase hex HA1 values (None when absent)."""

    identity: str
    user_name: str
    aliases: tuple[str, ...]
    display_name: str | None
    pintoken: str | None
    passtoken: str | None

    @property
    def names(self) -> frozenset[str]:
        """Every name this user can be looked up by."""
        return frozenset((self.user_name, self.identity, *self.aliases))


class UserDirectory:
    """Users from a sipX directory file, polled on ``clock`` for changes."""

    log = Logger()

    def __init__(self, path: str, clock: IReactorTime, interval: float = 2.0):
        self.path = path
        self._clock = clock
        self._interval = interval
        self._by_name: dict[str, User] = {}
        self._users: tuple[User, ...] = ()
        self._seen: tuple[int, int, int] | None = None
        self._poller: LoopingCall | None = None

    def load(self) -> None:
        """Load the file for the first time; raise DirectoryError if it cannot be used."""
        self._seen = self._signature()
        self._install(parse_directory(self.path))

    def start(self) -> None:
        """Start polling the file's (mtime, size, inode) every ``interval`` seconds."""
        if self._poller is None:
            self._poller = LoopingCall(self.check)
            self._poller.clock = self._clock
            self._poller.start(self._interval, now=False)

    def stop(self) -> None:
        """Stop polling."""
        if self._poller is not None:
            if self._poller.running:
                self._poller.stop()
            self._poller = None

    def check(self) -> None:
        """Reload if the file changed since we last looked; keep the old users on failure."""
        try:
            signature = self._signature()
        except DirectoryError as error:
            if self._seen is not None:
                self.log.warn("keeping the previous user directory: {why}", why=str(error))
            self._seen = None
            return
        if signature == self._seen:
            return
        self._seen = signature
        try:
            users = parse_directory(self.path)
        except DirectoryError as error:
            self.log.warn("keeping the previous user directory: {why}", why=str(error))
            return
        self._install(users)
        self.log.info("reloaded {count} users from {path}", count=len(users), path=self.path)

    def lookup(self, name: str) -> User | None:
        """The user whose user name, alias or ``user@domain`` identity is ``name``."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[User]:
        return iter(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def _signature(self) -> tuple[int, int, int]:
        try:
            status = os.stat(self.path)
        except OSError as error:
            raise DirectoryError(f"{self.path}: cannot read user directory: "
                                 f"{error.strerror}") from None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def _install(self, users: list[User]) -> None:
        by_name: dict[str, User] = {}
        # User names and identities take precedence over aliases of other users.
        for user in users:
            for name in (user.user_name, user.identity):
                self._index(by_name, name, user)
        for user in users:
            for alias in user.aliases:
                self._index(by_name, alias, user)
        self._users = tuple(users)
        self._by_name = by_name

    def _index(self, by_name: dict[str, User], name: str, user: User) -> None:
        holder = by_name.setdefault(name, user)
        if holder is not user:
            self.log.warn("{path}: name {name!r} of {user} already belongs to {holder}; ignored",
                          path=self.path, name=name, user=user.identity,
                          holder=holder.identity)


def parse_directory(path: str) -> list[User]:
    """Parse a validusers.xml or credential.xml file; raise DirectoryError on any problem."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_DIRECTORY_BYTES + 1)
    except OSError as error:
        raise DirectoryError(f"{path}: cannot read user directory: {error.strerror}") from None
    if len(data) > MAX_DIRECTORY_BYTES:
        raise DirectoryError(f"{path}: user directory is larger than {MAX_DIRECTORY_BYTES} bytes")
    try:
        root = _parse_xml(data)
        kind = etree.QName(root).localname
        if kind == "validusers":
            return _parse_validusers(root)
        if kind == "items" and root.get("type") == "credential":
            return _parse_credentials(root)
        raise ValueError(f"root element <{kind}> is neither <validusers> nor "
                         "<items type=\"credential\">")
    except etree.XMLSyntaxError as error:
        raise DirectoryError(f"{path}: malformed XML: {error}") from None
    except ValueError as error:
        raise DirectoryError(f"{path}: {error}") from None


def _parse_xml(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_comments=True, remove_pis=True,
    )
    root = etree.fromstring(data, parser)
    if root.getroottree().docinfo.internalDTD is not None:
        raise ValueError("a DOCTYPE is not allowed in a user directory")
    return root


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element
            if isinstance(child.tag, str) and etree.QName(child).localname == name]


def _text(element: etree._Element, name: str) -> str | None:
    found = _children(element, name)
    if not found:
        return None
    text = (found[0].text or "").strip()
    return text or None


def _required(element: etree._Element, name: str, what: str) -> str:
    value = _text(element, name)
    if value is None:
        raise ValueError(f"{what} (line {element.sourceline}) has no <{name}>")
    return value


def clean_display_name(text: str | None) -> str | None:
    """C{text} with each run of non-printable characters as one space, trimmed, bounded;
    None when nothing is left."""
    if text is None:
        return None
    out: list[str] = []
    for ch in text[:MAX_DISPLAY_NAME * 4]:
        if ch.isprintable():
            out.append(ch)
        elif out and out[-1] != " ":
            out.append(" ")
    cleaned = "".join(out).strip()[:MAX_DISPLAY_NAME].rstrip()
    return cleaned or None


def _is_name(text: str) -> bool:
    """A user name, alias or identity: printable, without white space."""
    return text.isprintable() and not any(ch.isspace() for ch in text)


def _name(element: etree._Element, name: str, what: str) -> str:
    value = _required(element, name, what)
    if not _is_name(value):
        raise ValueError(f"{what} (line {element.sourceline}) has a <{name}> with white "
                         "space or control characters")
    return value


def _identity(element: etree._Element, name: str, what: str) -> str:
    value = _required(element, name, what)
    if not _IDENTITY.fullmatch(value):
        raise ValueError(f"{what} (line {element.sourceline}) has an <{name}> that is not "
                         "user@host in SIP's characters")
    return value


def _token(value: str | None) -> str | None:
    return value.lower() if value else None


def _parse_validusers(root: etree._Element) -> list[User]:
    users = []
    for element in _children(root, "user"):
        identity = _identity(element, "identity", "<user>")
        aliases: list[str] = []
        for group in _children(element, "aliases"):
            aliases.extend((alias.text or "").strip() for alias in _children(group, "alias"))
        users.append(User(
            identity=identity,
            user_name=_name(element, "userName", "<user>"),
            aliases=tuple(alias for alias in dict.fromkeys(aliases)
                          if alias and _is_name(alias)),
            display_name=clean_display_name(_text(element, "displayName")),
            pintoken=_token(_text(element, "pintoken")),
            passtoken=_token(_text(element, "passtoken")),
        ))
    return users


def _parse_credentials(root: etree._Element) -> list[User]:
    users = []
    for element in _children(root, "item"):
        uri = _required(element, "uri", "<item>")
        users.append(User(
            identity=_identity_of(uri, _line(element)),
            user_name=_name(element, "userid", "<item>"),
            aliases=(),
            display_name=None,
            pintoken=_token(_text(element, "pintoken")),
            passtoken=_token(_text(element, "passtoken")),
        ))
    return users


def _line(element: etree._Element) -> int | None:
    """The element's line in the file, when lxml knows it."""
    line: object = element.sourceline  # lxml-stubs type it as Ellipsis: it is int or None
    return line if isinstance(line, int) else None


def _identity_of(uri: str, line: int | None) -> str:
    """``user@domain`` from ``sip:user@domain`` (also inside ``"Name"<...>``)."""
    if "<" in uri and uri.endswith(">"):
        uri = uri[uri.index("<") + 1:-1]
    scheme, _, rest = uri.partition(":")
    address = rest.split(";", 1)[0].split("?", 1)[0]
    if scheme.lower() not in ("sip", "sips") or not _IDENTITY.fullmatch(address):
        raise ValueError(f"<item> (line {line}) has a <uri> that is not sip:user@domain")
    return address
