"""
SDP text a peer receives from us exactly: the black-hole offer (RFC 3725 flow IV), the
quotes of a peer's bad SDP in our errors, and lines kept exactly as the peer wrote them.
"""

from __future__ import annotations

import pytest

from sipxcc.calls.sdp import MAX_SHOWN, SessionDescription, black_hole_offer, no_media_offer, shown
from tests.unit.test_invite_flow import SDP_TYPE, Connected
from tests.unit.test_invite_relay_edges import answer_to


def test_the_black_hole_offer_is_exactly_one_inactive_pcmu_stream_to_nowhere():
    assert black_hole_offer(5, 1, "192.0.2.1") == (
        b"v=0\r\no=sipxcc 5 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        b"m=audio 2222 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n")


def test_peer_text_in_an_error_is_cut_after_max_shown_characters():
    assert shown("x" * MAX_SHOWN) == "x" * MAX_SHOWN
    assert shown("x" * (MAX_SHOWN + 1)) == "x" * MAX_SHOWN + "..."
    assert shown("a\r\nb") == "a??b"


def test_our_own_address_must_be_an_ip_address():
    with pytest.raises(ValueError, match=r"^not an IP address for SDP: 'sipx\.test'$"):
        no_media_offer("sipx.test", 1, 1)


def test_a_relayed_body_that_is_not_sdp_is_refused_with_the_reason_in_a_warning():
    c = Connected()
    response = answer_to(c.net, c.b.request("UPDATE", [SDP_TYPE], b"s=-\r\nv=0\r\n"))
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.headers.get("Warning") == '399 sipxcc "SDP must start with v=0"'


def test_lines_keep_their_values_exactly_blank_lines_and_a_last_cr_aside():
    body = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=SIPX\r\ni=by sipxcc \r\n"
            b"c=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r")
    assert SessionDescription.parse(body).lines == [
        ("v", "0"), ("o", "- 1 1 IN IP4 192.0.2.1"), ("s", "SIPX"), ("i", "by sipxcc "),
        ("c", "IN IP4 192.0.2.1"),
        ("t", "0 0"), ("m", "audio 4000 RTP/AVP 0"), ("a", "rtpmap:0 PCMU/8000")]
