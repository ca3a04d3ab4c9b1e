"""Codec edges: the sizes of the random identifiers we write (RFC 3261 §8.1.1.4, §8.1.1.7,
§19.3), the CSeq bound (§8.1.1.5), keep-alive pings on a stream (RFC 5626 §3.5.1), the
stream head limit while a head is unfinished, and exact texts: refused header values, a
sipfrag status line, a digest nonce."""

from __future__ import annotations

import re

import pytest

from sipxcc.sip.digest import Challenge, make_cnonce
from sipxcc.sip.framing import StreamParser, parse_datagram
from sipxcc.sip.grammar import UnsafeValue, quote
from sipxcc.sip.headers import Headers
from sipxcc.sip.message import SIPParseError, make_branch, make_call_id, make_tag, parse_sipfrag

OPTIONS = (b"OPTIONS sip:callcontroller@127.0.0.1:6050 SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n"
           b"From: <sip:a@sipx.test>;tag=1\r\nTo: <sip:b@sipx.test>\r\nCall-ID: c1\r\n"
           b"CSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_our_random_identifiers_have_their_documented_sizes():
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", make_branch())  # 64 bits after the cookie
    assert re.fullmatch(r"[0-9a-f]{24}@192\.0\.2\.1", make_call_id("192.0.2.1"))  # 96 bits
    assert re.fullmatch(r"[0-9a-f]{12}", make_tag())  # 48 bits
    assert re.fullmatch(r"[0-9a-f]{16}", make_cnonce())  # 64 bits


def test_a_cseq_number_must_be_below_2_to_the_31():
    assert parse_datagram(OPTIONS % (2 ** 31 - 1)).cseq == (2 ** 31 - 1, "OPTIONS")
    with pytest.raises(SIPParseError):
        parse_datagram(OPTIONS % 2 ** 31)


def stream():
    found, pings = [], []
    return StreamParser(found.append, on_ping=lambda: pings.append(True)), found, pings


def test_a_double_crlf_is_a_ping_but_a_single_one_before_a_message_is_not():
    parser, found, pings = stream()
    parser.feed(b"\r\n" + OPTIONS % 1)
    assert (len(found), pings) == (1, [])
    parser.feed(b"\r\n\r\n")
    assert pings == [True]


def test_an_unfinished_head_may_reach_the_head_limit_but_not_pass_it():
    parser = StreamParser(lambda message: None, max_head=200)
    start = b"OPTIONS sip:x@h SIP/2.0\r\nX-Pad: "
    parser.feed(start + b"p" * (200 - len(start)))  # 200 bytes, no end of head yet
    with pytest.raises(SIPParseError):
        parser.feed(b"p")


def test_replacing_a_header_that_is_not_there_adds_it():
    headers = Headers()
    headers.replace_first("Via", "SIP/2.0/UDP 192.0.2.1")
    assert list(headers.items()) == [("Via", "SIP/2.0/UDP 192.0.2.1")]


def test_a_quoted_string_with_a_line_break_is_refused_by_name_with_80_characters_shown():
    with pytest.raises(UnsafeValue) as caught:
        quote("a\r\nb")
    assert str(caught.value) == "quoted string holds CR, LF or NUL: 'a\\r\\nb'"
    assert caught.value.what == "quoted string"
    long = "x" * 100 + "\n"
    with pytest.raises(UnsafeValue) as caught:
        quote(long)
    assert str(caught.value) == f"quoted string holds CR, LF or NUL: {'x' * 80!r}"


def test_a_sipfrag_reason_ending_in_x_keeps_it():
    assert parse_sipfrag(b"SIP/2.0 200 OK via PBX\r\n") == (200, "OK via PBX",
                                                             "SIP/2.0 200 OK via PBX")


def test_an_unquoted_nonce_ending_in_x_keeps_it():
    challenge = Challenge.parse('Digest realm="sipx.test", algorithm=MD5, nonce=ABCX')
    assert (challenge.realm, challenge.nonce) == ("sipx.test", "ABCX")


def test_a_datagram_may_start_with_line_breaks_and_be_exactly_the_size_limit():
    for lead in (b"\r\n", b"\n", b"\r\n\r\n"):
        data = lead + OPTIONS % 1
        assert parse_datagram(data, len(data)).method == "OPTIONS"
    with pytest.raises(SIPParseError):
        parse_datagram(OPTIONS % 1, len(OPTIONS % 1) - 1)


def test_a_header_name_that_is_no_token_is_refused_by_name():
    with pytest.raises(UnsafeValue) as caught:
        Headers().add("Bad Name", "x")
    assert str(caught.value) == "header name is not a token: 'Bad Name'"
