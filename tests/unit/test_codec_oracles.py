"""Properties of the SIP codec and the UA core checked against oracles outside the code:
the generator's own values, a plain-text reading of the bytes (tests.unit.sipfakes), and the
status RFC 3261 names for each fault.

A parser that refused everything, or a serialiser that lost or changed a header, fails here
(the fuzz tests elsewhere only show that nothing but SIPParseError escapes).
"""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")  # a failure under make test (tests/conftest.py)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sipxcc.sip.framing import StreamParser, parse_datagram  # noqa: E402
from tests.unit.sipfakes import FakeNetwork, raw_fields  # noqa: E402

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                min_size=1, max_size=12)
HOST = st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "h-1.example.org"])
# Header text: printable, no separators the grammar gives a meaning to at the ends.
TEXT = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF,
                                      blacklist_characters="\x7f"), min_size=1, max_size=20)
VALUE = st.lists(TEXT, min_size=1, max_size=3).map(" ".join)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def messages(draw) -> dict:
    """A valid request or response, as its parts and its bytes."""
    host = draw(HOST)
    method = draw(TOKEN).upper()
    if draw(st.booleans()):
        start = f"{method} sip:{draw(TOKEN)}@{host} SIP/2.0"
    else:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(VALUE)}"
    fields = [
        ("Via", f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {host}"
                f";branch=z9hG4bK{draw(TOKEN)}"),
        ("From", f"<sip:{draw(TOKEN)}@{host}>;tag={draw(TOKEN)}"),
        ("To", f"<sip:{draw(TOKEN)}@{host}>"),
        ("Call-ID", f"{draw(TOKEN)}@{host}"),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    fields += [(f"X-{name}", value)
               for name, value in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=5))]
    fields = draw(st.permutations(fields))
    body = draw(st.binary(max_size=80))
    length_name = draw(st.sampled_from(["Content-Length", "l", "content-length"]))
    head = "\r\n".join([start, *(f"{n}: {v}" for n, v in fields), f"{length_name}: {len(body)}"])
    return {"start": start, "fields": fields, "body": body,
            "bytes": head.encode("utf-8") + b"\r\n\r\n" + body}


def lowered(fields) -> list[tuple[str, str]]:
    return [(name.lower(), value) for name, value in fields
            if name.lower() not in ("content-length", "l")]


@SETTINGS
@given(messages())
def test_a_valid_message_parses_with_the_values_it_was_made_of(m):
    message = parse_datagram(m["bytes"])
    assert message.first_line == m["start"]
    fields = dict(m["fields"])
    assert message.call_id == fields["Call-ID"]
    number, method = fields["CSeq"].split()
    assert message.cseq == (int(number), method)
    assert message.from_tag == fields["From"].rsplit("tag=", 1)[1]
    assert message.to_tag is None
    for name, value in m["fields"]:
        assert value in message.headers.values(name), (name, value)
    assert message.body == m["body"]


@SETTINGS
@given(messages())
def test_serialised_headers_keep_their_values_and_order(m):
    data = parse_datagram(m["bytes"]).to_bytes()
    start, fields = raw_fields(data)  # read back as plain text, not with sipxcc's parser
    assert start == m["start"]
    assert lowered(fields) == lowered(m["fields"])
    lengths = [value for name, value in fields if name.lower() in ("content-length", "l")]
    assert lengths == [str(len(m["body"]))]
    assert data.split(b"\r\n\r\n", 1)[1] == m["body"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(messages(), min_size=1, max_size=3), st.data())
def test_a_stream_cut_anywhere_gives_the_messages_sent(batch, data):
    stream = b"".join(m["bytes"] for m in batch)
    cut = data.draw(st.integers(0, len(stream)))
    got = []
    parser = StreamParser(got.append)
    parser.feed(stream[:cut])
    parser.feed(stream[cut:])
    assert [(g.first_line, g.body) for g in got] == [(m["start"], m["body"]) for m in batch]
    assert [lowered(g.headers.items()) for g in got] == [lowered(m["fields"]) for m in batch]


# The UA core: a valid request is answered 200 with the RFC 3261 §8.2.6.2 copies, a faulty one
# with the status the RFC names for its fault.

def options(tag: str, call_id: str, cseq: int, branch: str, extra=()) -> list[str]:
    return ["OPTIONS sip:callcontroller@127.0.0.1:6050 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{branch}",
            "Max-Forwards: 70", f"From: <sip:a@example.com>;tag={tag}",
            "To: <sip:callcontroller@127.0.0.1>", f"Call-ID: {call_id}", f"CSeq: {cseq} OPTIONS",
            *extra]


def exchange(lines: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    net = FakeNetwork()
    net.deliver("\r\n".join([*lines, "Content-Length: 0", "", ""]).encode())
    return [raw_fields(data) for data, _ in net.socket.written]


@SETTINGS
@given(TOKEN, TOKEN.map(lambda t: t + "@192.0.2.1"), st.integers(0, 2**31 - 1), TOKEN)
def test_a_valid_options_is_answered_200_with_the_request_s_fields(tag, call_id, cseq, branch):
    request = options(tag, call_id, cseq, branch)
    [(start, fields)] = exchange(request)
    assert start == "SIP/2.0 200 OK"
    got = dict((name.lower(), value) for name, value in fields)
    assert got["via"].startswith(request[1].partition(": ")[2])  # received/rport may follow
    assert got["from"] == f"<sip:a@example.com>;tag={tag}"
    assert got["to"].startswith("<sip:callcontroller@127.0.0.1>;tag=")
    assert (got["call-id"], got["cseq"]) == (call_id, f"{cseq} OPTIONS")


@SETTINGS
@given(TOKEN, st.integers(0, 2**31 - 1), TOKEN)
def test_a_retransmitted_options_gets_the_same_answer_again(tag, cseq, branch):
    net = FakeNetwork()
    data = "\r\n".join([*options(tag, "again@x", cseq, branch), "Content-Length: 0", "", ""])
    net.deliver(data.encode())
    net.deliver(data.encode())  # RFC 3261 §17.2.2: the server transaction answers again
    first, again = net.socket.written
    assert raw_fields(first[0])[0] == "SIP/2.0 200 OK"
    assert again == first  # byte for byte, the same To tag included


@pytest.mark.parametrize("change,status", [
    (lambda r: r[:6] + ["CSeq: 7 INVITE"], "400 Bad Request"),  # CSeq method ≠ method (§8.1.1.5)
    (lambda r: r[:6] + ["CSeq: seven OPTIONS"], "400 Bad Request"),
    (lambda r: r[:3] + ["From: <sip:a@example.com;tag=1"] + r[4:], "400 Bad Request"),
    (lambda r: [r[0].replace("OPTIONS", "FOO", 1)] + r[1:6] + ["CSeq: 7 FOO"],
     "501 Not Implemented"),  # §8.2.1
    (lambda r: [r[0].replace("OPTIONS", "INVITE", 1), r[1], "Max-Forwards: 0"] + r[3:6]
     + ["CSeq: 7 INVITE"], "483 Too Many Hops"),  # §16.3 step 3, as a UAS
    (lambda r: [r[0].replace("SIP/2.0", "SIP/3.0")] + r[1:], "505 Version Not Supported"),
], ids=["cseq-method", "cseq-number", "from", "unknown-method", "max-forwards", "version"])
def test_a_faulty_request_gets_the_status_named_for_its_fault(change, status):
    [(start, _)] = exchange(change(options("1", "fault@x", 7, "fault")))
    assert start == f"SIP/2.0 {status}"
