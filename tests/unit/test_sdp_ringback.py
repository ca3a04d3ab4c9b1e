"""The ringback offer we write, and where an answer to it asks us to send."""

from __future__ import annotations

import pytest

from sipxcc.calls.sdp import content, ringback_offer, rtp_destination


def test_the_ringback_offer_byte_for_byte():
    assert ringback_offer("192.0.2.10", 24000) == (
        b"v=0\r\no=sipxcc 0 0 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 24000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=ptime:20\r\na=sendonly\r\n")
    assert b"c=IN IP6 2001:db8::1\r\n" in ringback_offer("2001:db8::1", 24002)


def answer(*lines: str) -> bytes:
    return ("v=0\r\no=phone 1 2 IN IP4 192.0.2.7\r\ns=-\r\n" + "".join(
        line + "\r\n" for line in lines)).encode()


@pytest.mark.parametrize("body, expected", [
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 8", "a=recvonly"),
     ("192.0.2.7", 4000, 8)),
    # the section's own c= wins over the session's; the first of our formats is taken
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 18 0 8",
            "c=IN IP4 192.0.2.8", "a=sendrecv"), ("192.0.2.8", 4000, 0)),
    (answer("c=IN IP6 2001:db8::7", "t=0 0", "m=audio 4000 RTP/AVP 0"), ("2001:db8::7", 4000, 0)),
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 0 RTP/AVP 0"), None),  # refused
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=inactive"), None),
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=sendonly"), None),
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 18"), None),
    (answer("t=0 0", "m=audio 4000 RTP/AVP 0"), None),  # no address
    (answer("c=IN IP4 192.0.2.7", "t=0 0", "m=video 4000 RTP/AVP 0"), None),
    (b"not sdp", None),
])
def test_where_an_answer_asks_the_ringback_to_go(body, expected):
    assert rtp_destination(body) == expected


def test_content_ignores_the_origin_only():
    one, two = answer("c=IN IP4 192.0.2.7"), answer("c=IN IP4 192.0.2.7").replace(b" 2 ", b" 3 ")
    assert one != two and content(one) == content(two)
    assert content(answer("c=IN IP4 192.0.2.8")) != content(one)
    assert content(b"junk") is None
