"""Property tests of the codec: no stray exceptions, and stream framing that agrees with
datagram framing. (What must parse, and to what, is in test_codec_oracles.py.)"""

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sipxcc.sip.framing import StreamParser, parse_datagram  # noqa: E402
from sipxcc.sip.message import SIPParseError  # noqa: E402
from sipxcc.sip.uri import URI, Address, Via, parse_address_list  # noqa: E402

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                min_size=1, max_size=12)
HOST = st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "h-1.example.org"])
VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                max_size=30).map(str.strip)
BASE = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x@y\r\n"
        b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody")


def use(message):
    """Touch every lazily parsed field the way the upper layers do."""
    message.to_bytes()
    _ = (message.cseq, message.from_tag, message.to_tag, message.top_via)
    for name in ("Contact", "Route", "Record-Route"):
        for value in message.headers.values(name):
            try:
                parse_address_list(value)
            except SIPParseError:
                pass


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400))
def test_any_bytes_give_a_message_or_a_parse_error(data):
    try:
        message = parse_datagram(data)
    except SIPParseError:
        return
    use(message)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, len(BASE) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_messages_give_a_message_or_a_parse_error(position, junk):
    data = BASE[:position] + junk + BASE[position + len(junk):]
    for attempt in (lambda: parse_datagram(data), lambda: StreamParser(use).feed(data)):
        try:
            message = attempt()
        except SIPParseError:
            continue
        if message is not None:
            use(message)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=60))
def test_uri_address_via_parsers_raise_only_parse_errors(text):
    for parse in (URI.parse, Address.parse, Via.parse, parse_address_list):
        try:
            str(parse(text))
        except SIPParseError:
            pass


@st.composite
def messages(draw):
    is_request = draw(st.booleans())
    method = draw(TOKEN)
    host = draw(HOST)
    if is_request:
        start = f"{method} sip:{draw(TOKEN)}@{host} SIP/2.0"
    else:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(VALUE)}".rstrip()
    headers = [
        f"Via: SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {host}"
        f";branch=z9hG4bK{draw(TOKEN)}",
        f'From: "{draw(VALUE).replace(chr(92), "").replace(chr(34), "")}" '
        f"<sip:{draw(TOKEN)}@{host}>;tag={draw(TOKEN)}",
        f"To: <sip:{draw(TOKEN)}@{host}>",
        f"Call-ID: {draw(TOKEN)}@{host}",
        f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}",
    ]
    extra = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=5))
    headers += [f"X-{name}: {value}" for name, value in extra]
    headers = draw(st.permutations(headers))
    body = draw(st.binary(max_size=80))
    length_name = draw(st.sampled_from(["Content-Length", "l", "content-length"]))
    head = "\r\n".join([start, *headers, f"{length_name}: {len(body)}"])
    return head.encode() + b"\r\n\r\n" + body


# That a valid message parses to the values it was made of, serialises them unchanged and
# survives any cut of a stream is checked against the generator in test_codec_oracles.py.
# Here: the stream framing agrees with the datagram framing at every cut.


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages())
def test_stream_split_at_every_position(data):
    expected = parse_datagram(data).to_bytes()
    for cut in range(len(data) + 1):
        got = []
        parser = StreamParser(got.append)
        parser.feed(data[:cut])
        parser.feed(data[cut:])
        assert [m.to_bytes() for m in got] == [expected]
