"""What the calling user (A) hears while B rings, off the happy path: at most one ringback,
none once A hears or refused something, the early re-INVITE bound counting the ringback,
answers without usable SDP, B going back to media already offered, and A's dialog gone."""

from __future__ import annotations

import pytest

from sipxcc.calls.early import MAX_EARLY_OFFERS
from tests.unit.sipfakes import answer
from tests.unit.test_invite_early import (
    A_EARLY_ANSWER,
    A_RECVONLY,
    B_EARLY,
    Ringing,
    methods,
)
from tests.unit.test_invite_flow import content, sdp

B_LATER = sdp("bob", 222, 5, "10.0.0.2", 5100)  # B's early media, changed


def early_reinvites(r):
    return [m for m in r.sent() if getattr(m, "method", None) == "INVITE"]


def test_a_second_180_brings_no_second_ringback():
    r = Ringing()
    r.ringback_playing()
    r.b_says(180, "Ringing", tag="fork2")
    r.advance(2)
    assert early_reinvites(r) == []


def test_a_caller_hearing_the_callees_early_media_gets_no_ringback_at_a_later_180():
    r = Ringing()
    r.early_media_heard()
    r.b_says(180, "Ringing", tag="fork2")
    r.advance(2)
    assert r.sent() == [] and r.udp.attempts == 0


def test_a_caller_that_refused_early_media_gets_no_ringback_either():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.a_answers(early, b"", 488, "Not Acceptable Here")
    assert methods(r.sent()) == ["ACK"]
    r.b_says(180, "Ringing", tag="fork2")
    r.advance(2)
    assert r.sent() == [] and r.udp.attempts == 0


def test_the_ringback_counts_among_the_early_re_invites_of_the_caller():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY, tag="fork0")
    [first] = r.sent()
    r.a_answers(first, b"")  # a 200 without an answer: A hears nothing of it
    r.sent()
    r.b_says(180, "Ringing", tag="fork1")
    r.advance(1)
    [ringback] = r.sent()
    r.a_answers(ringback, A_RECVONLY)
    r.sent()
    reinvites = 2
    for n in range(3 * MAX_EARLY_OFFERS):
        r.b_says(183, "Session Progress", sdp("bob", 222, n + 1, "10.0.0.2", 6000 + 2 * n),
                 tag=f"fork{n + 2}")
        for message in early_reinvites(r):
            reinvites += 1
            r.a_answers(message, A_EARLY_ANSWER)
            r.sent()
    assert reinvites == MAX_EARLY_OFFERS


@pytest.mark.parametrize("labelled", [False, True])
def test_a_ringback_answer_without_usable_sdp_plays_nothing(labelled):
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(1)
    [ringback] = r.sent()
    if labelled:  # SDP, but sent as text/plain
        r.net.deliver(_answer_labelled(ringback, r, A_RECVONLY))
    else:
        r.a_answers(ringback, b"")
    assert methods(r.sent()) == ["ACK"]
    r.advance(1)
    assert r.rtp() == [] and r.udp.bound == {}


def _answer_labelled(reinvite, r, body):
    return answer(reinvite, 200, "OK", None,
                  [("Contact", r.a.contact), ("Content-Type", "text/plain")], body)


def test_the_ringback_plays_for_as_long_as_the_callee_may_ring():
    r = Ringing()
    r.ringback_playing()
    r.net.clock.advance(r.call.request.timeout - 5)
    before = len(r.rtp())
    r.advance(1)
    assert len(r.rtp()) > before


def test_newer_early_media_follows_the_media_the_caller_answered():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.b_says(183, "Session Progress", B_LATER, tag="fork2")
    assert r.sent() == []
    r.a_answers(early, A_EARLY_ANSWER)
    ack, later = r.sent()
    assert (ack.method, later.method) == ("ACK", "INVITE")
    assert content(later.body) == content(B_LATER)


def test_the_callee_going_back_to_the_media_in_flight_leaves_nothing_pending():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.b_says(183, "Session Progress", B_LATER, tag="fork2")
    r.b_says(183, "Session Progress", B_EARLY, tag="fork3")
    assert r.sent() == []
    r.a_answers(early, A_EARLY_ANSWER)
    assert methods(r.sent()) == ["ACK"]  # A hears what B sends now: no other re-INVITE


def test_a_caller_whose_early_re_invite_times_out_is_taken_for_gone():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.a_answers(early, b"", 408, "Request Timeout")
    assert methods(r.sent()) == ["ACK", "CANCEL"]  # RFC 3261 §12.2.1.2: no BYE to A


def test_no_ringback_once_the_early_re_invites_are_used_up():
    r = Ringing()
    for n in range(MAX_EARLY_OFFERS):  # each answered without SDP: A hears none of them
        r.b_says(183, "Session Progress", sdp("bob", 222, n + 1, "10.0.0.2", 6000 + 2 * n),
                 tag=f"fork{n}")
        [reinvite] = early_reinvites(r)
        r.a_answers(reinvite, b"")
        r.sent()
    r.b_says(180, "Ringing", tag="last")
    r.advance(2)
    assert r.sent() == [] and r.udp.attempts == 0


def test_a_caller_silent_on_the_early_re_invite_is_taken_for_gone():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.net.clock.advance(32)  # Timer B (64*T1): the re-INVITE fails with 408
    sent = [m for m in r.sent() if m.method != "INVITE"]
    assert methods(sent) == ["CANCEL"]  # no BYE into a dialog gone (RFC 3261 §12.2.1.2)
    assert sent[0].call_id == r.invite2.call_id
