"""
Inputs from fuzzing the SIP codec (bench/fuzz_codec.py, bench/FUZZING.md): whatever arrives,
the codec returns a message or raises SIPParseError, and what it parsed serialises to bytes
that parse again. The fuzzer has found no crasher yet; these are minimised inputs from its
corpus that reach the codec's odd corners (bad framing, stray CR/LF, NULs, IPv6 hosts).
A crasher it finds later goes here, inline, with the fix.
"""

from __future__ import annotations

import pytest

from sipxcc.sip.framing import StreamParser, parse_datagram
from sipxcc.sip.message import SIPParseError
from sipxcc.sip.uri import URI, Address, Via, parse_address_list

DATAGRAMS = [
    b'HNVITE sip:bobe.com SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch={9hG4bKx\r\nFrom: "A" '
    b'<sip:a@b>;tag=1\r\nTo: <siq:c@d>M\nCall-ID: x\r\nCSeq: 1 IN\r\n',
    b'INVT EKple.com SIP/1.0\r\nVia: SIP\xed:ch9hG4bK\xf8\r\n 6AMMMcontent-\xff\xff\xff\xffP/2'
    b'\x04\x04\x04.0m: \n bKx\r\nFroS:m\x00 \nI0mp:bTo: <sip\xc6/2.0m: \n bKx\r\nl\xd8\xd8',
    b"OPTIONS sip:a@[::1] SIP/2.0\r\nv: SIP/2.0/UDP [::1];branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1"
    b"\r\nt: <sip:c@d>\r\ni: x\r\nCSeq: 1 OPTIONS\r\nl: 3\r\n\r\nabcdef",
    b"\r\n\r\n\n",
    b"SIP/2.0 200\r\n\r\n",
]
STREAMS = [
    b'@NVITE viasip:bo.com SIP/2.0\r\nVia: S\x01iiI\x00/P\x00\x00:a@1\r\nContent-Length: 7\r\n'
    b'\r\n5\x00\x00\x00\x00\x00\x00IITNVE sip:bob@example.com SIP/1.0\r\nVia:: "A" <sip:a@b>;'
    b'tag=\r\nTdo: :c\nVia: SIP/ii\x01\x00\x00\x00:a@1\r\nContent-Length: 7\r\n\r\n5\x00\x00',
    b"INVITE sip:b@c SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 2\r\n\r\nab\r\n\r\n"
    b"INVITE sip:b@c SIP/2.0\r\nContent-Length: 0\r\n\r\n",
]
TEXTS = [
    (URI.parse, "sip:usXp@[::1]:4;ror:=060;tcp0h=v"),
    (URI.parse, " sip:+b@e;\x01;\x00\ufffd;8;Tpe;\x017\x00;00\x00\x00;\x00;:;:"),
    (Address.parse, 'Xb<s:x.com>;agec'),
    (Address.parse, '"b" <s:x.com>;ag=aec'),
    (parse_address_list, '<s:c\ufffdlr>, <tel:1;te>;q.'),
    (parse_address_list, '""9\x00\x00\\\\\\\\\\\ufffd\\\\\\\\H\\o,<s'),
    (Via.parse, "I/2.0/TCP [::]:54"),
    (Via.parse, "SIP/2.0/TCP [::1]:54;branch"),
]


def assert_reparses(message) -> None:
    again = parse_datagram(message.to_bytes())
    assert again.first_line == message.first_line
    assert again.body == message.body


# What each datagram is: refused with this reason, or this message (first line, body).
DATAGRAM_OUTCOMES = [
    SIPParseError("bad parameter in address: 'M'"),  # "To: <siq:c@d>M"
    SIPParseError("NUL in message head"),  # "FroS:m\x00": a NUL is refused before the lines
    ("OPTIONS sip:a@[::1] SIP/2.0", b"abc"),  # compact forms; UDP body cut to l: 3 (§18.3)
    SIPParseError("empty datagram"),
    SIPParseError("missing to"),
]


@pytest.mark.parametrize("data,outcome", list(zip(DATAGRAMS, DATAGRAM_OUTCOMES, strict=False)))
def test_a_datagram_is_a_message_or_a_parse_error(data, outcome):
    if isinstance(outcome, SIPParseError):
        with pytest.raises(SIPParseError) as refused:
            parse_datagram(data)
        assert str(refused.value) == str(outcome)
        return
    message = parse_datagram(data)
    assert (message.first_line, message.body) == outcome
    assert_reparses(message)


# What each stream gives: the messages' first lines, and the errors, raised or reported.
STREAM_OUTCOMES = [
    ([], ["raised: NUL in message head"]),  # refused before its bad request line
    (["INVITE sip:b@c SIP/2.0"], ["invalid: missing to"]),  # the second has no To
]


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("data,outcome", list(zip(STREAMS, STREAM_OUTCOMES, strict=False)))
def test_a_stream_in_any_chunks_gives_messages_or_a_parse_error(data, outcome, chunk):
    messages, errors = [], []
    parser = StreamParser(messages.append,
                          on_invalid=lambda error: errors.append(f"invalid: {error}"))
    for start in range(0, len(data), chunk):
        try:
            parser.feed(data[start:start + chunk])
        except SIPParseError as error:
            errors.append(f"raised: {error}")
            break
    assert ([m.first_line for m in messages], errors) == outcome
    for message in messages:
        assert_reparses(message)


@pytest.mark.parametrize("parse,text", TEXTS)
def test_uri_address_and_via_parse_or_refuse_and_print_what_parses(parse, text):
    try:
        value = parse(text)
    except SIPParseError:
        return
    for item in value if isinstance(value, list) else [value]:
        printed = str(item)
        assert str(type(item).parse(printed)) == printed
