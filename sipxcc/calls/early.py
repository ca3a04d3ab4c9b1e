"""
What the calling user (A) hears while the called user (B) rings, in INVITE mode.

A's dialog is confirmed (A answered the black hole) before B is even called, so B's
provisional responses cannot be passed on to A's phone as such; A's own session is
changed instead, by re-INVITEs in A's dialog (RFC 3725 §5 flow IV, RFC 3960 §3):

- B's 1xx carries SDP (183 Session Progress with the far end's tones or announcements):
  A is re-offered that media. Our INVITE to B had no offer, and B's 1xx is unreliable
  (we do not support 100rel, RFC 3262), so that SDP is no offer on B's leg (RFC 3261
  §13.2.1): it is what B will offer in its 2xx. A's answer is kept; when B's 2xx offers
  the same media, that answer goes to B in the ACK, with no second re-INVITE of A.
- B's 1xx has no SDP (180 Ringing): once B has rung for the pool's C{delay}, A is
  re-offered sipxcc's ringback tone (L{sipxcc.media.ringback}), sendonly.

The flow's transition table decides; L{EarlySession} keeps the data in between.
"""

from __future__ import annotations

from typing import Any

from sipxcc.calls.sdp import content
from sipxcc.media.ringback import RingbackStream
from sipxcc.timers import TimerHandle

MAX_EARLY_OFFERS = 8
"""Early re-INVITEs of A per call at most (the ringback and each new early SDP of B's): a
called party changing its 183's SDP over and over cannot keep re-INVITEing A's phone."""


class EarlySession:
    """
    The early offers to A while B rings: what is in flight (at most one re-INVITE at a
    time, RFC 3261 §14.1), what A answered, what B sent meanwhile, and the ringback stream.
    """

    def __init__(self) -> None:
        self.offered: bytes | None = None   # B's early SDP in the re-INVITE now in flight
        self.heard: bytes | None = None     # B's early SDP A answered: what A hears
        self.answer: bytes | None = None    # A's answer to it
        self.pending: bytes | None = None   # B's newer early SDP, due once A has answered
        self.held: tuple[Any, Any] | None = None  # (leg, response): B's 2xx, held meanwhile
        self.stream: RingbackStream | None = None
        self.timer: TimerHandle | None = None
        self.ringback_asked = False  # one ringback per call, asked at B's first 180
        self.refused = False         # A refused an early offer: no other is made
        self.offers = 0              # early re-INVITEs of A so far

    def wants(self, body: bytes) -> bool:
        """Whether B's early SDP C{body} is to be offered to A: new media, A has refused
        none, and fewer than L{MAX_EARLY_OFFERS} so far."""
        return not self.refused and self.offers < MAX_EARLY_OFFERS and self.is_new(body)

    def is_new(self, body: bytes) -> bool:
        """C{body} (B's early SDP) differs from the newest early media we know of."""
        latest = self.pending or self.offered or self.heard
        return latest is None or content(body) != content(latest)

    def answers(self, offer: bytes) -> bool:
        """A's early answer also answers C{offer} (B's 2xx): the same media A hears."""
        return (self.heard is not None and self.answer is not None
                and content(offer) == content(self.heard))

    def stop(self) -> None:
        """B answered, or the call ends: no ringback, no more early offers."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.close_stream()
        self.pending = None

    def close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
