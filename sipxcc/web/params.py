"""
Query parameters and path segments of the REST interface, validated before anything is sent.

Every value that reaches a SIP message (user parts, hosts, subject, confpin, transfer
target) is checked against the RFC 3261 grammar here, so the call layer never sees a
value that could inject a header or break a URI. A bad value raises L{BadParameter},
whose text names the parameter (the original's C{Bad parameter <name> = <value>}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sipxcc.calls import events
from sipxcc.logs import shown
from sipxcc.sip.uri import is_host

if TYPE_CHECKING:
    from sipxcc.users import User

REFER = "REFER"
INVITE = "INVITE"
CALL = "call"
TRANSFER = "transfer"

MAX_TIMEOUT = 86400
"""Largest accepted C{timeout} (seconds a phone may ring): one day."""
MAX_TIME_LIMIT = 86400
"""Largest accepted C{timeLimit} (seconds a connected INVITE-mode call may last): one day."""
MAX_RESULT_CACHE_TIME = 86400
"""Largest accepted C{resultCacheTime}: one day."""
MAX_SUBJECT = 256
MAX_CONFPIN = 32
MAX_CALLER_ID_NAME = 64
MAX_USER = 128
MAX_CALLBACK_URL = 2048
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500

# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ), minus ";", "?", "/"
# and ",": legal there, but they split URIs and header lists in careless parsers, and
# no sipX user name, alias or dial string needs them.
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$]|%[0-9A-Fa-f]{2})+")
# An escaped control character (%0D%0A, %00, ...) is in the grammar, but a proxy that
# unescapes the user part would write it raw; no dial string needs one.
_ESCAPED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
_PORT = re.compile(r"[0-9]{1,5}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
_CONFPIN = re.compile(r"[0-9*#]+")


class BadParameter(ValueError):
    """A request parameter that fails validation; C{str()} names it."""

    def __init__(self, name: str, value: str | None = None, text: str | None = None):
        self.name = name
        if text is None:
            text = f"Bad parameter {name}" if value is None else f"Bad parameter {name} = {value}"
        super().__init__(text)


def _valid_host(host: str) -> bool:
    # RFC 3261 §25.1 host by its grammar: an IPv6 reference is hex digits, colons and
    # dots only, so no zone ID ("%eth0", or "%" and CR LF and a header) gets through.
    return is_host(host)


def _split_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1 and hostport[end + 1:].startswith(":"):
            return hostport[:end + 1], hostport[end + 2:]
        return hostport, None
    if hostport.count(":") == 1:
        host, port = hostport.split(":")
        return host, port
    return hostport, None


def check_user(name: str, value: str) -> str:
    """
    Check a user reference (C{user} or C{user@host}) against the SIP grammar and return it
    unchanged. RFC 3261 §19.1.1 / §25.1: the user part is C{user} (a dial string such as
    C{+4930123} fits it), the host a hostname, IPv4 address or C{[IPv6]}, with an optional
    port.
    """
    if not value or len(value) > MAX_USER + 260:
        raise BadParameter(name, shown(value))
    user, at, hostport = value.partition("@")
    if len(user) > MAX_USER or not _USER.fullmatch(user) or _ESCAPED_CONTROL.search(user):
        raise BadParameter(name, shown(value))
    if at:
        host, port = _split_port(hostport)
        if not _valid_host(host):
            raise BadParameter(name, shown(value))
        if port is not None and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
            raise BadParameter(name, shown(value))
    return value


def addr_spec(user: str, domain: str) -> str:
    """C{user} as an addr-spec without scheme: bare users get C{@domain} (as the original)."""
    return user if "@" in user else f"{user}@{domain}"


def check_subject(value: str) -> str | None:
    """
    A Subject header value: printable text only (no CR, LF, NUL, other controls). White
    space around it is dropped, as a header value's would be on the wire (RFC 3261 §7.3.1);
    nothing left means no Subject.
    """
    if len(value) > MAX_SUBJECT or not value.isprintable():
        raise BadParameter("subject", shown(value))
    return value.strip() or None


def check_confpin(value: str) -> str:
    """A conference PIN: digits, C{*} and C{#} only; it becomes a URI header value."""
    if len(value) > MAX_CONFPIN or not _CONFPIN.fullmatch(value):
        raise BadParameter("confpin", shown(value))
    return value


def parse_integer(name: str, value: str, minimum: int, maximum: int) -> int:
    """An integer as Java's C{Integer.parseInt} reads it, within C{[minimum, maximum]}."""
    if not _INTEGER.fullmatch(value):
        raise BadParameter(name, shown(value))
    number = int(value)
    if not minimum <= number <= maximum:
        raise BadParameter(name, shown(value))
    return number


def parse_boolean(value: str | None) -> bool:
    """Java's C{Boolean.parseBoolean}: only C{true}, in any case, is true."""
    return value is not None and value.lower() == "true"


def check_callback(value: str, allowed_hosts: tuple[str, ...]) -> str:
    """An absolute http(s) URL whose host is one the configuration allows."""
    if len(value) > MAX_CALLBACK_URL or not value.isprintable() or " " in value:
        raise BadParameter("statusCallback", shown(value))
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise BadParameter("statusCallback", shown(value)) from None
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        raise BadParameter("statusCallback", shown(value))
    allowed = {h.lower().strip("[]") for h in allowed_hosts}
    if host.lower() not in allowed:
        raise BadParameter("statusCallback", text=f"Bad parameter statusCallback: host {host}"
                           " is not an allowed callback host")
    return value


class Query:
    """
    The request's parameters as text: names are case-sensitive and the first occurrence
    wins (as the original's C{extractQuery(..., true)}). Values must be UTF-8.
    """

    def __init__(self, args: dict[bytes, list[bytes]]):
        self._args = args

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """Every (name, value), names sorted, each name's values in the order sent (the
        first one counts): equal for the same parameters written in another order."""
        return [(name, value) for name in sorted(self._args) for value in self._args[name]]

    def get(self, name: str) -> str | None:
        values = self._args.get(name.encode("ascii"))
        if not values:
            return None
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BadParameter(name, text=f"Bad parameter {name}: not UTF-8") from None


def decode_segment(name: str, segment: bytes) -> str:
    """A path segment (already percent-decoded once by twisted.web) as text."""
    try:
        return segment.decode("utf-8")
    except UnicodeDecodeError:
        raise BadParameter(name, text=f"Bad parameter {name}: not UTF-8") from None


def parse_method(query: Query) -> str:
    """C{sipMethod}: REFER (default) or INVITE, in any case."""
    value = query.get("sipMethod")
    if value is None:
        return REFER
    method = value.upper()
    if method not in (REFER, INVITE):
        raise BadParameter("sipMethod", shown(value))
    return method


def parse_agent(query: Query, calling_user: str) -> str:
    """C{agent}, by default the calling user exactly as typed in the URL."""
    agent = query.get("agent")
    return check_user("agent", calling_user if agent is None else agent)


def parse_limit(query: Query) -> int:
    """C{limit} of the C{/calls} list."""
    value = query.get("limit")
    if value is None:
        return DEFAULT_LIST_LIMIT
    return parse_integer("limit", value, 1, MAX_LIST_LIMIT)


@dataclass(frozen=True)
class CallParameters:
    """
    Everything a POST asks for, validated; C{calling}/C{called}/C{target} are addr-specs.
    Every field named as one of L{sipxcc.calls.call.CallRequest}'s becomes that field of
    the call (C{CallRequest.wanted_by}); C{agent} is the name the directory resolves.
    """

    agent: str
    calling: str
    called: str
    method: str
    action: str
    target: str | None
    timeout: int
    result_cache_time: int
    subject: str | None
    forwarding_allowed: bool
    confpin: str | None
    auto_answer: bool
    status_callback: str | None
    status_callback_events: frozenset[str] | None = None
    time_limit: int | None = None
    caller_id: str | None = None
    caller_id_name: str | None = None


def parse_caller_id(query: Query, *, domain: str,
                    method: str) -> tuple[str | None, str | None]:
    """
    C{callerId} and C{callerIdName}: the identity the called user is shown in INVITE mode
    (From and P-Asserted-Identity of the INVITE to it) instead of the calling user's.
    C{callerId} is a user name of the domain or a C{user@host}, held to the grammar here;
    whether the agent may present it is L{presentable_caller_id}'s to say, once the
    directory has been asked. C{callerIdName} is printable text of at most
    L{MAX_CALLER_ID_NAME} characters; it becomes a quoted display name.
    """
    caller_id, name = query.get("callerId"), query.get("callerIdName")
    if caller_id is None and name is None:
        return None, None
    if method != INVITE:
        which = "callerId" if caller_id is not None else "callerIdName"
        raise BadParameter(which, text=f"Bad parameter {which}: it needs sipMethod=INVITE "
                           "(in REFER mode the calling user's phone calls the called user)")
    if caller_id is not None:
        caller_id = addr_spec(check_user("callerId", caller_id), domain)
    if name is not None and (not name or len(name) > MAX_CALLER_ID_NAME
                             or not name.isprintable()):
        raise BadParameter("callerIdName", shown(name))
    return caller_id, name


def presentable_caller_id(caller_id: str, found: User | None, *, agent: User, calling: str,
                          calling_user: User | None) -> str:
    """
    The identity C{callerId} stands for, if the agent may present it: the agent's own or
    the calling user's, named by identity, user name or alias (C{found}: its directory
    entry), or the calling party's URI as the path gives it when the directory does not
    know that party. An agent presents no one else.
    """
    for user in (agent, calling_user):
        if found is not None and user is not None and found.identity == user.identity:
            return user.identity
    if calling_user is None and caller_id == calling:
        return caller_id
    raise BadParameter("callerId", text=f"Bad parameter callerId = {shown(caller_id)}"
                       ": only the agent's or the calling user's identity")


def parse_time_limit(query: Query, method: str) -> int | None:
    """C{timeLimit}: seconds (1..L{MAX_TIME_LIMIT}) the connected call may last; INVITE
    mode only (in REFER mode the phones talk to each other without us)."""
    value = query.get("timeLimit")
    if value is None:
        return None
    limit = parse_integer("timeLimit", value, 1, MAX_TIME_LIMIT)
    if method != INVITE:
        raise BadParameter("timeLimit", text="Bad parameter timeLimit: it needs "
                           "sipMethod=INVITE (in REFER mode the call is not ours to end)")
    return limit


def check_callback_events(value: str) -> frozenset[str]:
    """C{statusCallbackEvent}: event names (sipxcc.calls.events.NAMES), comma-separated."""
    if len(value) > 256:
        raise BadParameter("statusCallbackEvent", shown(value))
    try:
        return events.parse_names(value)
    except ValueError:
        raise BadParameter("statusCallbackEvent", text=f"Bad parameter statusCallbackEvent = "
                           f"{shown(value)} (known events: {', '.join(events.NAMES)})") from None


def parse_call_parameters(query: Query, calling_user: str, called_user: str, *,
                          domain: str, default_timeout: int, default_cache_time: int,
                          callback_hosts: tuple[str, ...]) -> CallParameters:
    """Validate a POST's path users and query parameters, each against its own rule."""
    calling = addr_spec(check_user("callingUser", calling_user), domain)
    called = addr_spec(check_user("calledUser", called_user), domain)
    agent = parse_agent(query, calling_user)
    method = parse_method(query)
    action = query.get("action") or CALL
    if action not in (CALL, TRANSFER):
        raise BadParameter("action", shown(action))
    target = query.get("target")
    if target is not None:
        target = addr_spec(check_user("target", target), domain)
    timeout = _optional_integer(query, "timeout", default_timeout, 1, MAX_TIMEOUT)
    cache_time = _optional_integer(query, "resultCacheTime", default_cache_time,
                                   0, MAX_RESULT_CACHE_TIME)
    subject = query.get("subject")
    confpin = query.get("confpin")
    callback = query.get("statusCallback")
    callback_events = query.get("statusCallbackEvent")
    caller_id, caller_id_name = parse_caller_id(query, domain=domain, method=method)
    return CallParameters(
        agent=agent, calling=calling, called=called, method=method, action=action,
        target=target, timeout=timeout, result_cache_time=cache_time,
        subject=check_subject(subject) if subject else None,
        forwarding_allowed=parse_boolean(query.get("isForwardingAllowed")),
        confpin=check_confpin(confpin) if confpin else None,
        auto_answer=parse_boolean(query.get("autoAnswer")),
        status_callback=check_callback(callback, callback_hosts) if callback else None,
        status_callback_events=(check_callback_events(callback_events)
                                if callback_events is not None else None),
        time_limit=parse_time_limit(query, method),
        caller_id=caller_id, caller_id_name=caller_id_name,
    )


def _optional_integer(query: Query, name: str, default: int, minimum: int, maximum: int) -> int:
    value = query.get(name)
    return default if value is None else parse_integer(name, value, minimum, maximum)
