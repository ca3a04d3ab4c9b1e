"""Edges of the URI code (RFC 3261 §19.1, §25.1): the URIs we build, the ones we parse
with an unescaped '@' or '?', the bounds of ports and octets, and Via defaults."""

import pytest

from sipxcc.sip.grammar import UnsafeValue
from sipxcc.sip.uri import (
    URI,
    Address,
    SIPParseError,
    Via,
    build_sip_uri,
    is_host,
    is_ipv4,
    parse_params,
)


@pytest.mark.parametrize("addr_spec, error", [
    ("a b@example.com", "URI user part is not an RFC 3261 user: 'a b@example.com'"),
    ("a@b@example.com", "URI user part is not an RFC 3261 user: 'a@b@example.com'"),
    ("alice@exa mple.com", "URI host is not an RFC 3261 host: 'alice@exa mple.com'"),
    ("alice@[::1]]:5", "URI host is not an RFC 3261 host: 'alice@[::1]]:5'"),
    ("alice@example.com:0", "URI port is not a port number: 'alice@example.com:0'"),
    ("alice@example.com:65536", "URI port is not a port number: 'alice@example.com:65536'"),
    ("alice@example.com:000080", "URI port is not a port number: 'alice@example.com:000080'"),
])
def test_a_uri_we_build_refuses_each_bad_part_by_name(addr_spec, error):
    with pytest.raises(UnsafeValue) as caught:
        build_sip_uri(addr_spec)
    assert str(caught.value) == error


@pytest.mark.parametrize("addr_spec, text", [
    ("alice@example.com:1", "sip:alice@example.com:1"),
    ("alice@example.com:65535", "sip:alice@example.com:65535"),
    ("alice@example.com:08080", "sip:alice@example.com:8080"),
    ("example.com", "sip:example.com"),
    ("alice@[::1]:5060", "sip:alice@[::1]:5060"),
])
def test_a_uri_we_build_accepts_each_port_and_host_at_the_edge(addr_spec, text):
    uri = build_sip_uri(addr_spec)
    assert str(uri) == text
    assert uri.user == (None if "@" not in addr_spec else "alice")


def test_ipv4_octets_up_to_255():
    assert is_ipv4("255.255.255.255") and is_host("255.0.0.1")
    assert not is_ipv4("256.0.0.1") and not is_host("10.0.0.256")


def test_a_second_at_sign_in_a_replaces_header_with_a_question_mark_in_a_later_one():
    u = URI.parse("sip:carol@example.com?Replaces=1@10.0.0.1&Subject=why?")
    assert (u.user, u.host) == ("carol", "example.com")
    assert u.headers == {"Replaces": "1@10.0.0.1", "Subject": "why?"}


def test_a_second_at_sign_in_a_parameter_ends_no_user_part():
    u = URI.parse("sip:ab@example.com;x=a@b")
    assert (u.user, u.host, u.params) == ("ab", "example.com", {"x": "a@b"})


def test_ports_up_to_65535_outside_the_fast_path():
    u = URI.parse("sip:alice@example.com:65535?Subject=hi")
    assert (u.port, u.headers) == (65535, {"Subject": "hi"})
    assert URI.parse("sip:alice@example.com:65535;p=a=b").port == 65535
    with pytest.raises(SIPParseError):
        URI.parse("sip:alice@example.com:65536?Subject=hi")


def test_uri_repr_shows_the_uri():
    assert repr(URI.parse("sip:alice@example.com")) == "URI('sip:alice@example.com')"
    assert repr(Address.parse('"Al" <sip:alice@example.com>')) == \
        "Address('\"Al\" <sip:alice@example.com>')"


def test_parameter_names_and_values_keep_their_letters_around_blanks():
    assert parse_params(" ; XFoo = X1X ;Lr", "Via") == {"xfoo": "X1X", "lr": None}


def test_a_via_we_build_without_port_or_params():
    via = Via("UDP", "example.com")
    assert str(via) == "SIP/2.0/UDP example.com"
    assert (via.branch, via.port) == (None, None)
    assert repr(Via("TCP", "h", 5060, {"branch": "z9hG4bKx"})) == \
        "Via('SIP/2.0/TCP h:5060;branch=z9hG4bKx')"
