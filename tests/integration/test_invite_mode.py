"""
INVITE-mode click-to-call end to end (RFC 3725 flow IV, sipMethod=INVITE): the real
daemon, Kamailio with digest auth as the sipX proxy, sipp phones, and curl as the client.
"""

from __future__ import annotations

import re

import pytest
from lxml import etree

from tests.integration.test_click_to_call import NS, Setup, curl, wait_for

CALL = "/callcontroller/user1/user2"
INVITE_MODE = CALL + "?sipMethod=INVITE"


@pytest.fixture
def setup(tmp_path, kamailio_factory, phone_factory):
    """setup(**Setup kwargs) -> a started Setup; everything is stopped at the end."""
    made = []

    def make(**kwargs) -> Setup:
        s = Setup(tmp_path, kamailio_factory, phone_factory, **kwargs)
        s.daemon.start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.daemon.stop()


def sdp_of(message: str) -> str:
    """The body of a message from a sipp trace."""
    _head, _, body = message.partition("\r\n\r\n")
    return body


def origin(sdp: str) -> tuple[str, int]:
    """(session id, version) of the o= line."""
    fields = re.search(r"^o=(\S+) (\S+) (\S+) ", sdp, re.M).groups()
    return fields[1], int(fields[2])


def media_port(sdp: str) -> int:
    return int(re.search(r"^m=audio (\d+) ", sdp, re.M).group(1))


def dialogs(s: Setup, path: str = INVITE_MODE) -> list[dict[str, str]]:
    """The <dialogs> document of the call, as a list of {field: text}."""
    code, body = curl(s.url(path))
    assert code == 200, body
    root = etree.fromstring(body.encode())
    assert root.tag == f"{NS}dialogs", body
    return [{child.tag.removeprefix(NS): child.text for child in dialog}
            for dialog in root.iter(f"{NS}dialog")]


def states(s: Setup, path: str = INVITE_MODE) -> list[str]:
    return [d["dialog-state"] for d in dialogs(s, path)]


def both_connected(s: Setup) -> list[dict[str, str]] | None:
    found = dialogs(s)
    if [d["dialog-state"] for d in found] == ["Confirmed Dialog"] * 2:
        return found
    return None


def place(s: Setup, path: str = INVITE_MODE) -> None:
    code, body = curl("-X", "POST", s.url(path))
    assert code == 200, body


def test_invite_mode_connects_both_phones_with_correct_sdp(setup):
    s = setup()
    a = s.phone("user1", "invite_a")
    b = s.phone("user2", "invite_b")
    place(s)
    found = wait_for(lambda: both_connected(s))
    assert [(d["local-party"], d["remote-party"]) for d in found] == [
        ("sip:user1@sipx.test", "sip:user1@sipx.test"),
        ("sip:user1@sipx.test", "sip:user2@sipx.test")]
    code, _ = curl("-X", "DELETE", s.url(INVITE_MODE))
    assert code == 200
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    first, second = a.received("INVITE")[0], a.received("INVITE")[-1]
    # A: first the black hole, then B's offer in the same session, one version up
    assert origin(sdp_of(first))[0] == origin(sdp_of(second))[0]
    assert origin(sdp_of(second))[1] == origin(sdp_of(first))[1] + 1
    assert re.search(r"^c=IN IP4 0\.0\.0\.0", sdp_of(first), re.M)
    assert media_port(sdp_of(second)) == b.media_port
    # B: an INVITE without SDP, and A's answer in the ACK
    assert sdp_of(b.received("INVITE")[0]) == ""
    assert media_port(sdp_of(b.received("ACK")[-1])) == a.media_port
    wait_for(lambda: states(s) == ["Terminated Dialog"] * 2)
