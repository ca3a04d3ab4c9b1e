"""The SIP message codec: headers, framing, serialisation, responses, sipfrag."""

import pytest

from sipxcc.sip.framing import StreamParser, parse_datagram
from sipxcc.sip.message import (
    MAX_MESSAGE,
    Headers,
    Request,
    SIPParseError,
    make_branch,
    make_call_id,
    make_tag,
    parse_sipfrag,
    response_to,
)

BODY = "v=0\r\ns=Café ☎\r\n".encode()


def invite(body: bytes = BODY, length: int | None = None, eol: str = "\r\n") -> bytes:
    lines = [
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
        "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKdef, SIP/2.0/UDP [2001:db8::1];"
        "branch=z9hG4bKghi",
        "Max-Forwards: 70",
        'From: "Alice, A." <sip:alice@example.com>;tag=a1',
        "To: <sip:bob@example.com>",
        "Call-ID: c1@192.0.2.1",
        "CSeq: 7 INVITE",
        "Contact: <sip:alice@192.0.2.1>;expires=60, \"Z\" <sip:z@h>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body) if length is None else length}",
    ]
    return (eol.join(lines) + eol + eol).encode() + body


def test_identifying_fields():
    m = parse_datagram(invite())
    assert (m.method, m.uri, m.version) == ("INVITE", "sip:bob@example.com", "SIP/2.0")
    assert m.call_id == "c1@192.0.2.1"
    assert m.cseq == (7, "INVITE")
    assert (m.from_tag, m.to_tag) == ("a1", None)
    assert m.branch == "z9hG4bKabc"
    assert m.top_via.has_rport and m.top_via.rport is None
    assert m.first_line == "INVITE sip:bob@example.com SIP/2.0"


def test_body_is_bytes_counted_in_bytes():
    m = parse_datagram(invite())
    assert m.body == BODY
    assert len(BODY) != len(BODY.decode())


def test_list_headers_are_split_respecting_quotes_and_angles():
    m = parse_datagram(invite())
    assert len(m.headers.values("Via")) == 3
    assert m.headers.values("Contact") == ["<sip:alice@192.0.2.1>;expires=60", '"Z" <sip:z@h>']
    assert m.headers.get("Contact") == "<sip:alice@192.0.2.1>;expires=60"
    assert m.headers.values("From") == ['"Alice, A." <sip:alice@example.com>;tag=a1']
    assert [v.host for v in m.vias] == ["192.0.2.1", "proxy.example.com", "[2001:db8::1]"]


def test_received_via_is_kept_raw():
    raw = "SIP/2.0/TLS  example.com ;branch=z9hG4bKx;received=192.0.2.9"
    data = invite().replace(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport", raw.encode())
    m = parse_datagram(data)
    assert m.headers.get("Via") == raw
    assert response_to(m, 200, "OK").headers.values("Via")[0] == raw


def test_bare_lf_line_ends():
    m = parse_datagram(invite(eol="\n"))
    assert m.cseq == (7, "INVITE") and m.body == BODY


def test_case_insensitive_and_lws_before_colon_and_folding():
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nVIA : SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"call-id:x\r\nCSEQ: 1 OPTIONS\r\nfrom: <sip:a@b>;tag=1\r\nTO :<sip:a@b>\r\n"
            b"Subject: first\r\n\tsecond line\r\nl: 0\r\n\r\n")
    m = parse_datagram(data)
    assert m.call_id == "x"
    assert m.headers.get("subject") == "first second line"
    assert [name for name, _ in m.headers.items()] == [
        "Via", "Call-ID", "CSeq", "From", "To", "Subject", "Content-Length"]


@pytest.mark.parametrize("short, long", [
    ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
    ("c", "Content-Type"), ("f", "From"), ("s", "Subject"), ("k", "Supported"), ("t", "To"),
    ("v", "Via"), ("o", "Event"), ("r", "Refer-To"), ("b", "Referred-By"),
    ("u", "Allow-Events"), ("x", "Session-Expires"), ("y", "Identity"),
    ("a", "Accept-Contact"), ("j", "Reject-Contact"), ("d", "Request-Disposition")])
def test_compact_forms(short, long):
    h = Headers([(short.upper(), "value")])
    assert h.get(long) == "value" and h.get(short) == "value"
    assert h.items() == [(long, "value")]


def test_headers_set_add_remove():
    h = Headers([("Route", "<sip:a>"), ("X-Foo", "1"), ("Route", "<sip:b>")])
    h.set("route", "<sip:c>")
    assert h.items() == [("Route", "<sip:c>"), ("X-Foo", "1")]
    h.add("Route", "<sip:d>")
    assert h.values("Route") == ["<sip:c>", "<sip:d>"] and "ROUTE" in h
    h.remove("Route")
    assert "Route" not in h and h.items() == [("X-Foo", "1")]


def test_cached_fields_follow_header_changes():
    m = parse_datagram(invite())
    assert m.to_tag is None
    m.headers.set("To", "<sip:bob@example.com>;tag=b2")
    assert m.to_tag == "b2"


def test_to_bytes_writes_content_length_from_body():
    r = Request("MESSAGE", "sip:bob@example.com")
    r.headers.add("Call-ID", "x")
    r.body = "é".encode()
    assert r.to_bytes() == (b"MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n"
                            b"Content-Length: 2\r\n\r\n\xc3\xa9")


def test_to_bytes_is_byte_exact_for_a_canonical_message():
    data = invite()
    assert parse_datagram(data).to_bytes() == data


def test_non_utf8_header_bytes_survive_a_round_trip():
    data = invite().replace(b"Alice, A.", b"Ren\xe9")
    m = parse_datagram(data)
    assert m.to_bytes() == data


def test_udp_without_content_length_body_runs_to_the_end():
    data = invite().replace(b"Content-Length: %d\r\n" % len(BODY), b"")
    assert parse_datagram(data).body == BODY


def test_udp_body_longer_than_content_length_is_truncated():
    assert parse_datagram(invite(length=3)).body == BODY[:3]


def test_udp_body_shorter_than_content_length_is_an_error_with_partial():
    with pytest.raises(SIPParseError) as info:
        parse_datagram(invite(length=len(BODY) + 1))
    assert info.value.partial.call_id == "c1@192.0.2.1"


def test_oversized_datagram():
    with pytest.raises(SIPParseError):
        parse_datagram(invite(body=b"x" * 70000))
    assert parse_datagram(invite(body=b"x" * 70000), max_size=80000).body == b"x" * 70000


@pytest.mark.parametrize("data", [
    b"", b"\r\n\r\n", b"garbage\r\n\r\n", b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n", b"SIP/2.0 20 OK\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", b"\xff\xfe\x00\r\n\r\n"])
def test_garbage_is_a_parse_error(data):
    with pytest.raises(SIPParseError):
        parse_datagram(data)


def test_stream_frames_by_content_length_long_or_compact():
    got = []
    parser = StreamParser(got.append)
    compact = invite().replace(b"Content-Length:", b"l:")
    parser.feed(b"\r\n\r\n" + invite() + b"\r\n\r\n" + compact + invite()[:20])
    assert [m.body for m in got] == [BODY, BODY]
    parser.feed(invite()[20:])
    assert len(got) == 3


def test_stream_one_byte_at_a_time():
    got = []
    parser = StreamParser(got.append)
    data = invite() * 2
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
    assert [m.body for m in got] == [BODY, BODY]


def test_stream_reports_keepalive_pings():
    pings = []
    parser = StreamParser(lambda m: None, on_ping=lambda: pings.append(1))
    parser.feed(b"\r\n\r\n")
    assert pings == [1]


def test_stream_requires_content_length_and_then_stays_failed():
    parser = StreamParser(lambda m: None)
    with pytest.raises(SIPParseError):
        parser.feed(invite().replace(b"Content-Length: %d\r\n" % len(BODY), b""))
    with pytest.raises(SIPParseError):
        parser.feed(invite())


def test_stream_max_size():
    parser = StreamParser(lambda m: None, max_size=1000)
    with pytest.raises(SIPParseError):
        parser.feed(invite(body=b"x" * 2000))
    parser = StreamParser(lambda m: None, max_size=100)
    with pytest.raises(SIPParseError):
        parser.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 200)
    assert MAX_MESSAGE == 65536


def test_stream_invalid_but_framed_message_does_not_break_the_stream():
    got, bad = [], []
    parser = StreamParser(got.append, on_invalid=bad.append)
    broken = invite().replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE")
    parser.feed(broken + invite())
    assert len(got) == 1 and len(bad) == 1 and bad[0].partial is not None
    parser = StreamParser(got.append)
    with pytest.raises(SIPParseError):
        parser.feed(broken + invite())
    parser.feed(b"")
    assert len(got) == 2


def test_response_to_copies_the_dialog_fields():
    request = parse_datagram(invite())
    response = response_to(request, 180, "Ringing", to_tag="b1")
    assert response.first_line == "SIP/2.0 180 Ringing"
    assert [n for n, _ in response.headers.items()] == [
        "Via", "Via", "From", "To", "Call-ID", "CSeq"]
    assert response.headers.values("Via") == request.headers.values("Via")
    assert response.to_tag == "b1" and response.from_tag == "a1"
    assert response.cseq == (7, "INVITE")
    again = parse_datagram(response.to_bytes())
    assert again.status == 180 and again.body == b""


def test_response_to_keeps_an_existing_to_tag():
    request = parse_datagram(invite().replace(b"To: <sip:bob@example.com>",
                                              b"To: <sip:bob@example.com>;tag=old"))
    assert response_to(request, 200, "OK", to_tag="new").to_tag == "old"


@pytest.mark.parametrize("body, expected", [
    (b"SIP/2.0 200 OK\r\n", (200, "OK", "SIP/2.0 200 OK")),
    (b"SIP/2.0 180 Ringing", (180, "Ringing", "SIP/2.0 180 Ringing")),
    (b"SIP/2.0 603 Declined\n", (603, "Declined", "SIP/2.0 603 Declined")),
    (b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n", (100, "Trying", "SIP/2.0 100 Trying")),
    (b"SIP/2.0 100\r\n", (100, "", "SIP/2.0 100")),
    (b"hello", None), (b"", None), (b"\xff\xff", None), (b"SIP/2.0 2000 x", None)])
def test_parse_sipfrag(body, expected):
    assert parse_sipfrag(body) == expected


def test_generators():
    assert make_branch().startswith("z9hG4bK") and make_branch() != make_branch()
    assert make_tag() != make_tag()
    assert make_call_id("192.0.2.1").endswith("@192.0.2.1")


def test_replace_first_changes_only_the_top_value_in_place():
    headers = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
                       ("From", "<sip:x@y>;tag=1"), ("Via", "SIP/2.0/UDP c;branch=z9hG4bK3")])
    headers.replace_first("Via", "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1")
    assert headers.items() == [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1, "
                "SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("From", "<sip:x@y>;tag=1"), ("Via", "SIP/2.0/UDP c;branch=z9hG4bK3")]
