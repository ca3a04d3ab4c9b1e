"""
Property: whatever a client puts in a POST (user names, hosts, subject, confpin, agent,
sipMethod) and whatever a sipX user puts in their display name, the SIP messages that
reach the proxy hold exactly the header lines we meant, and To, From, Refer-To, Subject
and the Request-URI parse back to what was asked for. Bad input gets a 4xx and nothing
is sent; no input gets a 500.

The real resource tree, call registry, flows and user agent, on a Clock and a fake UDP
socket (the proxy); the user directory is a real validusers.xml file.
"""

from __future__ import annotations

import os
import tempfile
from urllib.parse import quote as url_quote
from urllib.parse import unquote, urlencode

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from twisted.web.resource import getChildForRequest  # noqa: E402

from sipxcc.calls.context import FlowContext  # noqa: E402
from sipxcc.calls.invite import InviteFlow  # noqa: E402
from sipxcc.calls.refer import ReferFlow  # noqa: E402
from sipxcc.calls.registry import CallRegistry  # noqa: E402
from sipxcc.calls.store import MemoryCallStore  # noqa: E402
from sipxcc.sip.framing import parse_datagram  # noqa: E402
from sipxcc.sip.uri import URI, Address  # noqa: E402
from sipxcc.users import UserDirectory  # noqa: E402
from sipxcc.web.auth import Authenticator  # noqa: E402
from sipxcc.web.callcontroller import WebContext, install  # noqa: E402
from sipxcc.web.errors import PathResource  # noqa: E402
from tests.sipwire import head_lines  # noqa: E402
from tests.unit.sipfakes import FakeNetwork, FarEnd  # noqa: E402
from tests.unit.test_invite_flow import A_ANSWER1  # noqa: E402
from tests.unit.webfakes import WebRequest, make_config  # noqa: E402

NS = "http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00"
DOMAIN = "sipx.test"
# Every header line the daemon's INVITE and REFER may carry, and how many of each.
ALWAYS_ONCE = ("Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact",
               "Content-Length")
INVITE_ONCE = (*ALWAYS_ONCE, "Route", "Allow", "Accept")
INVITE_OPTIONAL = ("Subject", "Content-Type", "Call-Info", "Alert-Info", "Answer-Mode",
                   "P-Asserted-Identity")
REFER_ONCE = (*ALWAYS_ONCE, "Refer-To", "Referred-By")
BREAKING = ("\r", "\n", "\x00")

# Text a hostile client or user may type: line breaks, NUL, quotes, URI delimiters.
HOSTILE = st.text(st.sampled_from(list("aZ09 \t\r\n\x00\"\\<>@:;?&=,%#[]/.'+-_~*()é\u2028")),
                  max_size=12)
USER_PART = st.text(st.sampled_from(list("abcXYZ019-_.!~*'()&=+$")), min_size=1, max_size=10)
HOSTNAME = st.from_regex(r"\A(?:[a-z0-9](?:[a-z0-9-]{0,5}[a-z0-9])?\.){0,2}[a-z][a-z0-9]{0,5}\Z")
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F,
                                   blacklist_categories=("Cc",)), max_size=20)
# what a sipX user may put in a display name: anything XML 1.0 carries
DISPLAY = st.text(st.one_of(st.sampled_from(list("\t\r\n\"\\<>,;\x7f\x85\u2028\u202e")),
                            st.characters(min_codepoint=0x20, max_codepoint=0xFFFD,
                                          blacklist_categories=("Cs",))), max_size=20)


@st.composite
def mostly(draw, good, bad):
    """C{good} four times in five, else C{bad}."""
    return draw(good if draw(st.integers(0, 4)) else bad)


HOST = mostly(
    st.one_of(HOSTNAME, st.ip_addresses(v=4).map(str),
              st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")),
    st.one_of(st.builds(lambda ip, zone: f"[{ip}%{zone}]", st.ip_addresses(v=6), HOSTILE),
              HOSTILE))
PORT = mostly(st.one_of(st.none(), st.integers(1, 65535).map(str)), HOSTILE)


@st.composite
def user_reference(draw):
    """C{user}, C{user@host} or C{user@host:port}; sometimes just hostile text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(HOSTILE.filter(bool))
    user = draw(mostly(st.one_of(USER_PART, USER_PART.map(lambda u: u + "%41%2f")),
                       USER_PART.map(lambda u: u + "%0d%0A")))
    if draw(st.booleans()):
        return user
    port = draw(PORT)
    host = draw(HOST)
    return f"{user}@{host}" + ("" if port is None else f":{port}")


def xml_text(text: str) -> str:
    """C{text} as XML character data, CR and LF kept as character references."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#9;"))


def write_users(path: str, display_name: str) -> None:
    users = "".join(
        f"<user><identity>{name}@{DOMAIN}</identity><userName>{name}</userName>"
        f"<displayName>{xml_text(display_name)}</displayName></user>"
        for name in ("user1", "user3"))
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(f'<?xml version="1.0"?><validusers xmlns="{NS}">{users}</validusers>')


class Daemon:
    """The resource tree over the real registry and flows; the UA's socket is the proxy."""

    def __init__(self, users_path: str):
        self.net = FakeNetwork()
        clock = self.net.clock
        config = make_config(agents=("user3",))
        self.directory = UserDirectory(users_path, clock)
        self.directory.load()
        ctx = FlowContext(self.net.ua, clock, DOMAIN, "127.0.0.1")
        self.registry = CallRegistry(clock, {
            "REFER": lambda call, end: ReferFlow(ctx, call, end),
            "INVITE": lambda call, end: InviteFlow(ctx, call, end)})
        self.root = PathResource()
        install(self.root, WebContext(config, self.directory, MemoryCallStore(self.registry),
                                      Authenticator(config, self.directory, clock)))

    def post(self, calling: str, called: str, args: dict[str, str]) -> int:
        path = (f"/callcontroller/{url_quote(calling, safe='')}/{url_quote(called, safe='')}"
                + ("?" + urlencode(args) if args else ""))
        request = WebRequest(b"POST", path.encode("ascii"), client="127.0.0.1")
        request.prepath = []
        request.render(getChildForRequest(self.root, request))
        assert request.finished
        return request.responseCode


def check_fields(fields, once, optional=()) -> dict[str, str]:
    names = [name for name, _ in fields]
    for name in once:
        assert names.count(name) == 1, (name, names)
    assert set(names) <= set(once) | set(optional), names
    assert len(names) == len(set(names)), names
    return dict(fields)


def addr_spec(reference: str) -> str:
    return reference if "@" in reference else f"{reference}@{DOMAIN}"


def directory_user(directory: UserDirectory, reference: str):
    """The directory's entry for C{reference}: by identity, or by name in our domain."""
    user, _, host = addr_spec(reference).partition("@")
    found = directory.lookup(addr_spec(reference))
    if found is None and host.lower() == DOMAIN:
        found = directory.lookup(user)
    return found


def same_target(uri: URI, reference: str) -> None:
    """C{uri} is C{sip:} + the addr-spec asked for, part by part."""
    user, _, hostport = addr_spec(reference).partition("@")
    host, port = hostport, None
    if hostport.startswith("[") and "]:" in hostport:
        host, _, port = hostport.rpartition(":")
    elif not hostport.startswith("[") and ":" in hostport:
        host, _, port = hostport.partition(":")
    assert (uri.scheme, uri.user, uri.host.lower(), uri.port) == (
        "sip", user, host.lower(), None if port is None else int(port))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(calling=user_reference(),
       called=st.one_of(st.sampled_from(["user1", "user3", "user3@sipx.test"]),
                        user_reference()),
       display=DISPLAY,
       subject=st.one_of(st.none(), mostly(PRINTABLE, HOSTILE)),
       confpin=st.one_of(st.none(), mostly(st.text(st.sampled_from("0123456789*#"),
                                                   min_size=1, max_size=6), HOSTILE)),
       agent=mostly(st.just("user3"), st.one_of(st.none(), user_reference())),
       method=st.sampled_from(["REFER", "INVITE"]))
def test_what_reaches_the_proxy_is_what_was_asked(calling, called, display, subject, confpin,
                                                   agent, method):
    handle, users_path = tempfile.mkstemp(suffix=".xml")
    os.close(handle)
    try:
        write_users(users_path, display)
        daemon = Daemon(users_path)
    finally:
        os.unlink(users_path)
    args = {"sipMethod": method}
    for name, value in (("subject", subject), ("confpin", confpin), ("agent", agent)):
        if value is not None:
            args[name] = value
    status = daemon.post(calling, called, args)
    event(f"{method} answered {status}")
    sent = daemon.net.socket.written
    typed = (calling, called, subject or "", confpin or "", agent or "")
    if any(ch in text for text in typed for ch in BREAKING):
        assert status in (400, 404), (status, typed)  # 404: a "/" in a user name
    assert status < 500
    if status != 200:
        assert sent == []
        return

    [(data, _)] = sent
    start, fields = head_lines(data, strict=True)
    values = check_fields(fields, INVITE_ONCE, INVITE_OPTIONAL)
    method_word, request_uri, version = start.split(" ")
    assert (method_word, version) == ("INVITE", "SIP/2.0")
    same_target(URI.parse(request_uri), calling)
    same_target(Address.parse(values["To"]).uri, calling)
    # the calling user's phone is shown the called party: its directory entry, else the
    # URI asked for; P-Asserted-Identity says the same
    sender = Address.parse(values["From"])
    called_user = directory_user(daemon.directory, called)
    if called_user is None:
        assert (sender.display, sender.uri) == (None, URI.parse(f"sip:{addr_spec(called)}"))
    else:
        assert sender.display == called_user.display_name
        assert sender.uri == URI.parse(f"sip:{called_user.identity}")
    assert sender.display is None or sender.display.isprintable()
    asserted = Address.parse(values["P-Asserted-Identity"])
    assert (asserted.display, asserted.uri, asserted.params) == (sender.display, sender.uri, {})
    # white space around a header value is not part of it (RFC 3261 §7.3.1)
    assert values.get("Subject") == ((subject or "").strip() or None)

    # the phone answers; REFER mode then sends the REFER, INVITE mode the second INVITE
    phone = FarEnd(parse_datagram(data))
    daemon.net.deliver(phone.ok(A_ANSWER1 if method == "INVITE" else b""))
    later = [data for data, _ in daemon.net.socket.written[1:]]
    assert [d.split(b" ", 1)[0] for d in later] == [b"ACK", method.encode()]
    start, fields = head_lines(later[1], strict=True)
    if method == "INVITE":
        values = check_fields(fields, INVITE_ONCE, INVITE_OPTIONAL)
        # the called user is shown the calling user, whoever the agent is: its directory
        # entry, else the URI asked for; P-Asserted-Identity says the same
        sender = Address.parse(values["From"])
        calling_user = directory_user(daemon.directory, calling)
        if calling_user is None:
            assert (sender.display, sender.uri) == (None, URI.parse(f"sip:{addr_spec(calling)}"))
        else:
            assert (sender.display, sender.uri) == (calling_user.display_name,
                                                    URI.parse(f"sip:{calling_user.identity}"))
        asserted = Address.parse(values["P-Asserted-Identity"])
        assert (asserted.display, asserted.uri, asserted.params) == (sender.display,
                                                                     sender.uri, {})
        same_target(URI.parse(start.split(" ")[1]), called)
        same_target(Address.parse(values["To"]).uri, called)
        return
    values = check_fields(fields, REFER_ONCE)
    refer_to = Address.parse(values["Refer-To"]).uri
    headers = dict(refer_to.headers)
    pin = headers.pop("X-ConfPin", None)
    refer_to.headers = {}
    same_target(refer_to, called)
    assert headers == {}
    assert (None if pin is None else unquote(pin)) == (confpin or None)
    assert Address.parse(values["Referred-By"]).uri == URI.parse(f"sip:{addr_spec(calling)}")
