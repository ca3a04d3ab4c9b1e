"""Where a ringback answer asks us to send, at the edges of its c= line, and the attributes of
an m= section as (name, value or None)."""

from __future__ import annotations

import pytest

from sipxcc.calls.sdp import SessionDescription, rtp_destination


def answer(connection: str) -> bytes:
    return (f"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc={connection}\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n").encode()


def test_an_address_with_a_ttl_is_sent_to_without_it():
    assert rtp_destination(answer("IN IP4 224.2.1.1/127")) == ("224.2.1.1", 4000, 0)


@pytest.mark.parametrize("connection", ["XX IP4 10.0.0.1", "IN IP5 10.0.0.1", "IN IP4"])
def test_a_connection_line_that_is_not_internet_ip_takes_nothing(connection):
    assert rtp_destination(answer(connection)) is None


def test_attributes_keep_their_values_and_flags_have_none():
    [audio] = SessionDescription.parse(answer("IN IP4 10.0.0.1").replace(
        b"a=recvonly", b"a=rtpmap:0 PCMU/8000\r\na=recvonly")).media
    assert audio.attributes == (("rtpmap", "0 PCMU/8000"), ("recvonly", None))
