"""
Codec boundaries: the empty line that ends a head written with mixed line ends, what may
come before a start line or a sipfrag status line, the text of a refused Request-URI, and
where the userinfo of a URI with two '@' ends.
"""

from __future__ import annotations

import pytest

from sipxcc.sip.framing import StreamParser, parse_datagram
from sipxcc.sip.grammar import UnsafeValue
from sipxcc.sip.message import Request, SIPParseError, parse_sipfrag
from sipxcc.sip.uri import URI

HEAD = ("INFO sip:callcontroller@127.0.0.1:6050 SIP/2.0{eol}"
        "Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1{eol}Max-Forwards: 70{eol}"
        "From: <sip:a@sipx.test>;tag=1{eol}To: <sip:b@sipx.test>;tag=2{eol}Call-ID: c1{eol}"
        "CSeq: 2 INFO{eol}Content-Type: text/plain{eol}Content-Length: 4")


@pytest.mark.parametrize("last_eol, empty_line", [
    ("\r\n", "\n"),  # CR LF LF
    ("\n", "\r\n"),  # LF CR LF
    ("\n", "\n"),
    ("\r\n", "\r\n"),
])
def test_a_head_ended_by_any_mix_of_crlf_and_lf_frames_its_body(last_eol, empty_line):
    data = (HEAD.format(eol="\r\n") + last_eol + empty_line + "body").encode()
    message = parse_datagram(data)
    assert (message.method, message.headers.get("Content-Type"), message.body) == \
        ("INFO", "text/plain", b"body")
    framed = []
    StreamParser(framed.append).feed(data + data)
    assert [(m.cseq, m.body) for m in framed] == [((2, "INFO"), b"body")] * 2


@pytest.mark.parametrize("lead", [b" ", b"\t", b"\r\n ", b"\n\t"])
def test_only_empty_lines_are_skipped_before_a_start_line(lead):
    # RFC 3261 §7.5: a start line preceded by blanks on its line is a bad start line
    with pytest.raises(SIPParseError) as caught:
        parse_datagram(lead + HEAD.format(eol="\r\n").encode() + b"\r\n\r\nbody")
    assert str(caught.value).startswith("bad request line: ")


def test_a_start_line_after_empty_lines_is_kept_whole():
    data = b"\r\n\r\n" + HEAD.format(eol="\r\n").replace("INFO", "XINFO").encode() + \
        b"\r\n\r\nbody"
    assert parse_datagram(data).method == "XINFO"


@pytest.mark.parametrize("body", [b" SIP/2.0 200 OK", b"\tSIP/2.0 200 OK",
                                  b"\r\n SIP/2.0 200 OK", b"XSIP/2.0 200 OK"])
def test_a_sipfrag_status_line_must_start_its_line(body):
    assert parse_sipfrag(body) is None


@pytest.mark.parametrize("body, line", [
    (b"SIP/2.0 200 OK\x0c\r\n", "SIP/2.0 200 OK\x0c"),
    ("SIP/2.0 200 OK\u00a0\r\n".encode(), "SIP/2.0 200 OK\u00a0"),
    (b"SIP/2.0 200 OK \t\r\n", "SIP/2.0 200 OK"),
])
def test_a_sipfrag_line_loses_only_its_line_break_and_trailing_blanks(body, line):
    # the line is recorded as the far end wrote it; RFC 3261 §25.1 blanks are SP and HTAB
    assert parse_sipfrag(body) == (200, "OK", line)


def test_a_request_uri_with_a_space_is_refused_with_its_text():
    with pytest.raises(UnsafeValue) as caught:
        Request("INVITE", "sip:bob @sipx.test")
    assert str(caught.value) == "Request-URI holds a space, CR, LF or NUL: 'sip:bob @sipx.test'"


@pytest.mark.parametrize("text, user, host", [
    ("sip:@a@host?x=y", "@a", "host"),  # the first '@' opens the URI
    ("sip:u@@h?x=y", "u@", "h"),  # the two '@' side by side
    ("sip:u@h?Replaces=c%40h2@h3", "u", "h"),
])
def test_with_two_at_signs_the_userinfo_ends_at_the_last_one_before_the_headers(text, user,
                                                                                    host):
    uri = URI.parse(text)
    assert (uri.user, uri.host) == (user, host)
