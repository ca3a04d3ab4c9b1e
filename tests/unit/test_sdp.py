"""Minimal SDP (RFC 4566) and the offers of the REFER and RFC 3725 flows."""

import pytest

from sipxcc.calls.sdp import SessionDescription, black_hole_offer, no_media_offer

PHONE = (b"v=0\no=- 123 456 IN IP4 192.0.2.7\ns=call\nc=IN IP4 192.0.2.7\nt=0 0\n"
         b"a=sendrecv\nm=audio 4000 RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=ptime:20\n"
         b"m=video 0 RTP/AVP 31\nc=IN IP4 192.0.2.8\na=inactive\n")


def test_parse_keeps_lines_and_serialises_with_crlf():
    sdp = SessionDescription.parse(PHONE)
    assert sdp.to_bytes() == PHONE.replace(b"\n", b"\r\n")
    assert SessionDescription.parse(sdp.to_bytes()).lines == sdp.lines


def test_origin():
    sdp = SessionDescription.parse(PHONE)
    o = sdp.origin
    assert (o.username, o.session_id, o.version, o.net_type, o.addr_type, o.address) == (
        "-", 123, 456, "IN", "IP4", "192.0.2.7")


def test_media_and_direction():
    sdp = SessionDescription.parse(PHONE)
    audio, video = sdp.media
    assert (audio.type, audio.port, audio.proto, audio.formats) == (
        "audio", 4000, "RTP/AVP", ("0", "101"))
    assert audio.attributes == (("rtpmap", "0 PCMU/8000"), ("ptime", "20"))
    assert (audio.direction, video.direction, video.connection) == (
        None, "inactive", "IN IP4 192.0.2.8")
    assert sdp.direction == "sendrecv"


def test_no_media_offer_ipv4_and_ipv6():
    sdp = SessionDescription.parse(no_media_offer("127.0.0.1", 42, 1))
    assert sdp.connection == "IN IP4 127.0.0.1"
    assert str(sdp.origin).endswith("42 1 IN IP4 127.0.0.1")
    [audio] = sdp.media
    assert (audio.type, audio.port, audio.formats) == ("audio", 2222, ("0", "8", "101"))
    assert audio.direction == "recvonly"
    assert ("rtpmap", "101 telephone-event/8000") in audio.attributes
    v6 = SessionDescription.parse(no_media_offer("2001:db8::1", 42, 2))
    assert v6.connection == "IN IP6 2001:db8::1"
    with pytest.raises(ValueError):
        no_media_offer("not-an-address", 1, 1)


def test_black_hole_offer():
    sdp = SessionDescription.parse(black_hole_offer(7, 1))
    assert sdp.connection == "IN IP4 0.0.0.0" and sdp.direction == "inactive"
    [audio] = sdp.media
    assert audio.port != 0 and len(audio.formats) == 1
    assert sdp.origin.session_id == 7


@pytest.mark.parametrize("body, message", [
    (b"", "v=0"), (b"o=- 1 1 IN IP4 h\n", "v=0"), (b"v=0\nbogus\n", "line 2"),
    (b"v=0\n", "o="), (b"v=0\no=- x 1 IN IP4 h\n", "origin"),
    (b"v=0\no=- 1 1 IN IP4 h\nm=audio port RTP/AVP 0\n", "media"),
    (b"v=0\no=- 1 1 IN IP4 h\nm=audio\n", "media"), (b"\xff", "UTF-8")])
def test_invalid_sdp_is_a_clear_value_error(body, message):
    with pytest.raises(ValueError, match=message):
        SessionDescription.parse(body)
