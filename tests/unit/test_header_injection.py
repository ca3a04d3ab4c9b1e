"""
The SIP message model refuses CR, LF and NUL in anything it writes (header names and
values, Request-URI, method, reason phrase, URIs, display names), and the URIs we build
follow the RFC 3261 §25.1 grammar; the web layer's user check uses the same host grammar.
"""

from __future__ import annotations

import pytest

from sipxcc.calls.context import party_address, sip_uri
from sipxcc.sip.framing import parse_datagram
from sipxcc.sip.headers import Headers
from sipxcc.sip.message import Request, Response
from sipxcc.sip.uri import (
    URI,
    Address,
    SIPParseError,
    UnsafeValue,
    build_sip_uri,
    escape_header,
    is_host,
    quote,
)
from sipxcc.users import User
from sipxcc.web.params import BadParameter, Query, parse_call_parameters

BREAKS = ["\r\nX-Injected: yes", "\nX-Injected: yes", "\rX", "a\x00b", "\r", "\n", "\x00"]


@pytest.mark.parametrize("bad", BREAKS)
@pytest.mark.parametrize("how", ["add", "set", "replace_first", "init"])
def test_headers_refuse_a_value_with_cr_lf_or_nul(bad, how):
    headers = Headers([("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")])
    with pytest.raises(UnsafeValue, match="CR, LF or NUL"):
        if how == "init":
            Headers([("Subject", "hello" + bad)])
        elif how == "replace_first":
            headers.replace_first("Via", "SIP/2.0/UDP 192.0.2.1" + bad)
        else:
            getattr(headers, how)("Subject", "hello" + bad)
    assert headers.items() == [("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")]


@pytest.mark.parametrize("name", ["X-A: b\r\nX-Injected", "X-A:", "X A", "", "X-\x00"])
def test_headers_refuse_a_name_that_is_not_a_token(name):
    with pytest.raises(UnsafeValue, match="header name"):
        Headers().add(name, "value")


@pytest.mark.parametrize("bad", BREAKS)
def test_request_refuses_a_request_uri_with_cr_lf_or_nul(bad):
    with pytest.raises(UnsafeValue, match="Request-URI"):
        Request("INVITE", "sip:user1@example.com" + bad)


@pytest.mark.parametrize("method", ["INVITE\r\nX-Injected:", "INV ITE", "", "A\x00"])
def test_request_refuses_a_method_that_is_not_a_token(method):
    with pytest.raises(UnsafeValue, match="method"):
        Request(method, "sip:user1@example.com")


@pytest.mark.parametrize("bad", BREAKS)
def test_response_refuses_a_reason_with_cr_lf_or_nul(bad):
    with pytest.raises(UnsafeValue, match="reason phrase"):
        Response(200, "OK" + bad)


@pytest.mark.parametrize("bad", BREAKS)
def test_a_display_name_with_cr_lf_or_nul_is_never_written(bad):
    address = Address("Alice" + bad, URI.parse("sip:alice@example.com"))
    with pytest.raises(UnsafeValue, match="CR, LF or NUL"):
        str(address)


@pytest.mark.parametrize("part", ["user", "host", "password", "param", "header", "opaque"])
def test_a_uri_with_cr_lf_or_nul_in_any_part_is_never_written(part):
    uri = URI.parse("sip:alice@example.com")
    evil = "x\r\nX-Injected: yes"
    if part == "param":
        uri.params["p"] = evil
    elif part == "header":
        uri.headers["h"] = evil
    elif part == "opaque":
        uri = URI("http", opaque="//example.com/" + evil)
    else:
        setattr(uri, part, evil)
    with pytest.raises(UnsafeValue, match="URI"):
        str(uri)


def test_to_bytes_refuses_a_field_written_around_headers():
    request = Request("OPTIONS", "sip:example.com")
    request.headers.add("Call-ID", "abc")
    request.headers._fields.append(("subject", "Subject", "hi\r\nX-Injected: yes"))
    with pytest.raises(UnsafeValue, match="SIP message line"):
        request.to_bytes()
    request.headers._fields.pop()
    request.uri = "sip:example.com\x00"
    with pytest.raises(UnsafeValue, match="SIP message line"):
        request.to_bytes()
    request.uri = "sip:example.com"
    request.headers._fields.append(("to", "To", '"a\\\x00" <sip:b@example.com>'))
    with pytest.raises(UnsafeValue, match="SIP message line"):
        request.to_bytes()


def test_a_clean_message_still_goes_out_whole():
    request = Request("OPTIONS", "sip:example.com")
    for name, value in [("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"),
                        ("From", '"A \\"q\\"" <sip:a@example.com>;tag=1'),
                        ("To", "<sip:example.com>"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS"),
                        ("Subject", "tab\tand ünïcode")]:
        request.headers.add(name, value)
    again = parse_datagram(request.to_bytes())
    assert again.headers.items() == request.headers.items() + [("Content-Length", "0")]
    assert again.from_address.display == 'A "q"'


@pytest.mark.parametrize("where", ["reason", "to", "via", "contact", "subject"])
def test_a_nul_anywhere_in_a_received_head_is_a_parse_error(where):
    lines = {"reason": "SIP/2.0 200 OK", "via": "Via: SIP/2.0/UDP h;branch=z9hG4bKx",
             "to": 'To: "a" <sip:a@b>;tag=2', "contact": "Contact: <sip:a@b>",
             "subject": "Subject: hi"}
    lines[where] = lines[where].replace("a" if where == "to" else lines[where][-1],
                                        "\\\x00" if where == "to" else "\x00", 1)
    data = "\r\n".join([lines["reason"], lines["via"], "From: <sip:a@b>;tag=1", lines["to"],
                        "Call-ID: x", "CSeq: 1 INVITE", lines["contact"], lines["subject"],
                        "Content-Length: 0", "", ""]).encode()
    assert b"\x00" in data
    with pytest.raises(SIPParseError, match="NUL"):
        parse_datagram(data)


# The grammar of what we build


@pytest.mark.parametrize("host", [
    "example.com", "example.com.", "a-1.example", "192.0.2.1", "[::1]", "[2001:db8::1]",
    "[::ffff:192.0.2.1]", "[2001:db8:0:0:0:0:0:1]", "[fe80::1:2:3:4]"])
def test_hosts_in_the_grammar(host):
    assert is_host(host)


@pytest.mark.parametrize("host", [
    "[fe80::1%eth0]", "[fe80::1%25eth0]", "[fe80::1%\r\nX-Injected: yes]", "[::1%]",
    "[1::2::3]", "[2001:db8:0:0:0:0:0:0:1]", "[::1", "::1", "[example.com]", "256.1.1.1",
    "1.2.3", "exa mple.com", "-example.com", "example.com\r\n", "", "a" * 254, "[::g]",
    "[::1]x", "example.1com", "[::1.2.3.4.5]", "[fe80::1\x00]"])
def test_hosts_outside_the_grammar(host):
    assert not is_host(host)


@pytest.mark.parametrize("addr_spec", [
    "user1@[fe80::1%\r\nX-Injected: yes]", "user1@[fe80::1%eth0]", "us er@example.com",
    "user1@example.com\r\nX: y", "a\r\n@example.com", "user1@example.com:99999",
    "user1@example.com:5060\r\n", "user1@[::1]:x", "@example.com", "a@b@example.com"])
def test_build_sip_uri_refuses_what_is_outside_the_grammar(addr_spec):
    with pytest.raises(UnsafeValue):
        build_sip_uri(addr_spec)


def test_build_sip_uri_escapes_params_and_headers():
    uri = build_sip_uri("user2@sipx.test:5062", params={"x-a": "b c", "lr": None},
                        headers={"X-ConfPin": "12#*", "Subject": "a&b=c;d\r\n"})
    text = str(uri)
    assert text == ("sip:user2@sipx.test:5062;x-a=b%20c;lr"
                    "?X-ConfPin=12%23*&Subject=a%26b%3Dc%3Bd%0D%0A")
    assert URI.parse(text) == uri


def test_escape_header_leaves_only_hvalue_characters():
    every = "".join(chr(c) for c in range(0x20, 0x7f)) + "é\x00\r\n"
    allowed = set("[]/?:+$-_.!~*'()%" "abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    escaped = escape_header(every)
    assert set(escaped) <= allowed
    assert "%23" in escaped and "%C3%A9" in escaped and "%00%0D%0A" in escaped


def test_quote_escapes_quote_and_backslash_and_refuses_line_breaks():
    assert quote('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    with pytest.raises(UnsafeValue):
        quote("a\r\nb")


def test_a_party_address_always_quotes_the_display_name():
    user = User("user1@sipx.test", "user1", (), 'Evil" <sip:x@y>, \\', None, None)
    text = party_address(user, user.identity)
    assert text == '"Evil\\" <sip:x@y>, \\\\" <sip:user1@sipx.test>'
    assert Address.parse(text).display == 'Evil" <sip:x@y>, \\'
    plain = User("user1@sipx.test", "user1", (), "Plain", None, None)
    assert party_address(plain, plain.identity) == '"Plain" <sip:user1@sipx.test>'


def test_sip_uri_of_an_addr_spec_with_a_zone_id_is_refused():
    with pytest.raises(UnsafeValue):
        sip_uri("user1@[fe80::1%\r\nX-Injected: yes]")
    assert sip_uri("user1@[::1]:5060", params={"lr": None}) == "sip:user1@[::1]:5060;lr"


# The web layer's check of every user reference


ZONE = "[fe80::1%\r\nX-Injected: yes\r\nRefer-To: <sip:evil@attacker.example>]"


@pytest.mark.parametrize("name", ["callingUser", "calledUser", "agent", "target"])
@pytest.mark.parametrize("host", [ZONE, "[fe80::1%eth0]", "[::1%25]"])
def test_every_user_parameter_refuses_a_zone_id(name, host):
    calling, called, args = "user1", "user2", {}
    if name == "callingUser":
        calling = f"user1@{host}"
    elif name == "calledUser":
        called = f"user2@{host}"
    else:
        args[name.encode()] = [f"user3@{host}".encode()]
    with pytest.raises(BadParameter) as refused:
        parse_call_parameters(Query(args), calling, called, domain="sipx.test",
                              default_timeout=30, default_cache_time=30, callback_hosts=())
    assert refused.value.name == name
    assert "\r" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("user", ["user%0d%0aX", "a%00", "a%1B", "a%7f"])
def test_a_user_part_with_an_escaped_control_character_is_refused(user):
    with pytest.raises(BadParameter) as refused:
        parse_call_parameters(Query({}), "user1", user, domain="sipx.test",
                              default_timeout=30, default_cache_time=30, callback_hosts=())
    assert refused.value.name == "calledUser"


def test_a_user_part_with_other_escapes_is_accepted():
    wanted = parse_call_parameters(Query({}), "user1", "%2B4930%41", domain="sipx.test",
                                   default_timeout=30, default_cache_time=30, callback_hosts=())
    assert wanted.called == "%2B4930%41@sipx.test"


@pytest.mark.parametrize("text", ['"a\r\nb" <sip:x@y>', '"a\\\x00" <sip:x@y>', '"a\nb"<sip:x@y>',
                                  '"a\\\rb" <sip:x@y>'])
def test_a_parsed_display_name_with_cr_lf_or_nul_is_a_parse_error(text):
    # so whatever the codec parses it can write again (the fuzzing harness's contract)
    with pytest.raises(SIPParseError, match="quoted string"):
        Address.parse(text)
