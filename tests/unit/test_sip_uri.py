"""URIs, addresses and Vias (RFC 3261 §19.1, §20.10, §20.42)."""

import pytest

from sipxcc.sip.uri import URI, Address, SIPParseError, Via, parse_address_list, split_list


def test_full_sip_uri():
    u = URI.parse("sips:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi&X=a%20b")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips", "alice", "secret", "Example.COM", 5061)
    assert u.params == {"transport": "tcp", "lr": None}
    assert u.headers == {"Subject": "hi", "X": "a%20b"}
    assert str(u) == "sips:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi&X=a%20b"


def test_uri_headers_without_params_and_values_with_equals():
    u = URI.parse("sip:carol@example.com?Replaces=x%3Bto-tag%3Dy&A=b=c")
    assert u.host == "example.com"
    assert u.headers == {"Replaces": "x%3Bto-tag%3Dy", "A": "b=c"}


def test_unescaped_at_in_replaces_header():
    u = URI.parse("sip:carol@example.com?Replaces=123@10.0.0.1%3Bto-tag%3D9")
    assert (u.user, u.host, u.headers["Replaces"]) == ("carol", "example.com",
                                                      "123@10.0.0.1%3Bto-tag%3D9")


@pytest.mark.parametrize("text, host, port", [
    ("sip:[2001:db8::1]:5060", "[2001:db8::1]", 5060),
    ("sip:[::1]", "[::1]", None), ("sip:192.0.2.1:5070", "192.0.2.1", 5070),
    ("sip:example.com.", "example.com.", None)])
def test_hosts(text, host, port):
    u = URI.parse(text)
    assert (u.host, u.port, u.user) == (host, port, None)
    assert str(u) == text


def test_ipv6_with_user():
    u = URI.parse("sip:bob@[2001:db8::1]:5060;transport=tcp")
    assert (u.user, u.host, u.port, u.params) == ("bob", "[2001:db8::1]", 5060,
                                                  {"transport": "tcp"})


def test_tel_and_other_schemes():
    t = URI.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (t.scheme, t.user, t.params) == ("tel", "+1-201-555-0123",
                                            {"phone-context": "example.com"})
    assert str(t) == "tel:+1-201-555-0123;phone-context=example.com"
    m = URI.parse("mailto:someone@example.com")
    assert (m.scheme, m.opaque, str(m)) == ("mailto", "someone@example.com",
                                            "mailto:someone@example.com")


def test_uri_equality_ignores_host_case():
    assert URI.parse("SIP:a@EXAMPLE.com") == URI.parse("sip:a@example.com")
    assert URI.parse("sip:a@example.com") != URI.parse("sip:b@example.com")


@pytest.mark.parametrize("text", [
    "", "sip:", "sip:@host", "nocolon", "sip:a@host:99999", "sip:a@ho st", "sip:a@[zz]",
    "sip:a@host;=x", "sip:a@host?novalue", "sip:a@<host>", "tel:", "sip:a@host;lr="])
def test_bad_uris(text):
    with pytest.raises(SIPParseError):
        URI.parse(text)


def test_name_addr_with_escaped_quotes():
    a = Address.parse('"A \\"q\\" <b>" <sip:x@y>;tag=t1;+sip.rendering')
    assert a.display == 'A "q" <b>'
    assert str(a.uri) == "sip:x@y"
    assert a.params == {"tag": "t1", "+sip.rendering": None}
    assert a.tag == "t1"
    assert Address.parse(str(a)).display == a.display


def test_addr_spec_params_belong_to_the_header():
    a = Address.parse("sip:alice@example.com;tag=abc")
    assert (a.display, a.uri.params, a.params) == (None, {}, {"tag": "abc"})
    assert str(a) == "<sip:alice@example.com>;tag=abc"


def test_spaces_around_params_and_token_display_name():
    a = Address.parse("Bob Smith  <sip:bob@h> ; tag = abc ; expires=60")
    assert (a.display, a.params) == ("Bob Smith", {"tag": "abc", "expires": "60"})


def test_quoted_param_value_and_star():
    a = Address.parse('<sip:a@h>;reason="x;y, z"')
    assert a.params == {"reason": '"x;y, z"'}
    star = Address.parse(" * ")
    assert star.uri is None and str(star) == "*"


def test_address_list():
    got = parse_address_list('<sip:a@h1>;q=0.5, "B, b" <sip:b@h2>;q=1, sip:c@h3')
    assert [(str(x.uri), x.params.get("q")) for x in got] == [
        ("sip:a@h1", "0.5"), ("sip:b@h2", "1"), ("sip:c@h3", None)]
    assert split_list('"a,b" <sip:x,y>, c') == ['"a,b" <sip:x,y>', "c"]


@pytest.mark.parametrize("text", [
    '"unterminated <sip:a@b>', "Bad, Name <sip:a@b>", "< sip:a@b >", "<sip:a@b",
    '"x" sip:a@b', "<sip:a@b>;;", "sip:a@b?x=y", "", "<sip:a@b> junk"])
def test_bad_addresses(text):
    with pytest.raises(SIPParseError):
        Address.parse(text)


def test_via_with_lws_and_params():
    v = Via.parse("SIP / 2.0 / udp 192.0.2.1 : 5060 ;branch=z9hG4bK1;received=10.0.0.1;"
                  "rport=5062;maddr=224.0.0.1;ttl=16")
    assert (v.transport, v.host, v.port) == ("UDP", "192.0.2.1", 5060)
    assert (v.branch, v.received, v.rport, v.has_rport, v.maddr, v.ttl) == (
        "z9hG4bK1", "10.0.0.1", 5062, True, "224.0.0.1", 16)
    assert str(v) == ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=10.0.0.1;"
                      "rport=5062;maddr=224.0.0.1;ttl=16")


def test_via_ipv6_and_flag_rport():
    v = Via.parse("SIP/2.0/TLS [2001:db8::10]:5061;branch=z9hG4bKx;rport")
    assert (v.host, v.port, v.has_rport, v.rport) == ("[2001:db8::10]", 5061, True, None)
    assert v.sent_by == ("[2001:db8::10]", 5061)
    assert Via.parse("SIP/2.0/TLS example.com;branch=z").port is None


@pytest.mark.parametrize("text", [
    "", "SIP/2.0 UDP host", "SIP/2.0/UDP", "SIP/2.0/UDP host;", "SIP/2.0/UDP host:70000",
    "SIP/2.0/UDP host;branch=a b", "garbage"])
def test_bad_vias(text):
    with pytest.raises(SIPParseError):
        Via.parse(text)
