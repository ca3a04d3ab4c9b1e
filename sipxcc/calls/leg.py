"""
One leg of an INVITE-mode call (RFC 3725): the INVITE that creates it, the dialog once
answered, the SDP its far end last gave us, the transactions in flight on it, and its
state, driven by L{TABLE}.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from sipxcc.calls.call import CONFIRMED, EARLY, TERMINATED, DialogInfo
from sipxcc.statemachine import Table, Transition

if TYPE_CHECKING:
    from sipxcc.calls.relay import SessionFace


class LegState(enum.Enum):
    """Where one leg's dialog is."""

    NEW = "new"                # INVITE sent (or about to be), nothing tagged back yet
    EARLY = "early"            # a tagged provisional response: an early dialog
    CANCELLING = "cancelling"  # CANCEL sent; waiting for the INVITE's final response
    CONFIRMED = "confirmed"    # answered: a dialog we can send requests in
    CLOSING = "closing"        # BYE sent, not answered yet
    TERMINATED = "terminated"  # over


class LegEvent(enum.Enum):
    """What happens to one leg."""

    PROGRESS = "tagged 1xx to its INVITE"
    ANSWERED = "2xx to its INVITE"
    REJECTED = "INVITE failed, or no final response after CANCEL"
    CANCEL = "ring timeout or teardown before the answer"
    DROP = "closed before its INVITE was sent"
    BYE_SENT = "we hang it up"
    GONE = "its BYE, or its dialog found gone (408/481)"
    BYE_DONE = "our BYE answered or failed"


_L, _V = LegState, LegEvent
_RINGING = (_L.NEW, _L.EARLY, _L.CANCELLING)

#: Every (state, event) pair of a leg: a transition, an explicit no-op, or a refusal.
TABLE: Table[LegState, LegEvent] = Table(
    "leg",
    _L.NEW,
    {
        (_L.NEW, _V.PROGRESS): Transition(_L.EARLY),
        (_L.EARLY, _V.PROGRESS): Transition(_L.EARLY),
        (_L.CANCELLING, _V.PROGRESS): Transition(_L.CANCELLING),
        **{(s, _V.ANSWERED): Transition(_L.CONFIRMED) for s in _RINGING},
        # answered after we gave up waiting: confirmed, so that it can be BYEd (§15)
        (_L.TERMINATED, _V.ANSWERED): Transition(_L.CONFIRMED),
        **{(s, _V.REJECTED): Transition(_L.TERMINATED) for s in _RINGING},
        (_L.NEW, _V.CANCEL): Transition(_L.CANCELLING),
        (_L.EARLY, _V.CANCEL): Transition(_L.CANCELLING),
        (_L.NEW, _V.DROP): Transition(_L.TERMINATED),
        (_L.CONFIRMED, _V.BYE_SENT): Transition(_L.CLOSING),
        (_L.CONFIRMED, _V.GONE): Transition(_L.TERMINATED),
        (_L.CLOSING, _V.GONE): Transition(_L.TERMINATED),
        (_L.CLOSING, _V.BYE_DONE): Transition(_L.TERMINATED),
    },
    ignores=[
        (_L.CONFIRMED, _V.PROGRESS), (_L.CLOSING, _V.PROGRESS),
        (_L.CANCELLING, _V.CANCEL),
        *((_L.TERMINATED, e) for e in LegEvent if e is not _V.ANSWERED),
    ],
    final=(),
)


class Leg:
    """
    One of an INVITE-mode call's dialogs. C{state} moves along L{TABLE} through
    L{step}; the rest is data: the INVITE that made it (C{outgoing}), its dialog, the SDP
    the far end last gave us, and the transactions in flight on it.
    """

    def __init__(self, name: str, face: SessionFace):
        self.name = name
        self.face = face
        self.state = LegState.NEW
        self.outgoing: Any = None      # OutgoingRequest of the INVITE that makes this leg
        self.dialog: Any = None
        self.early_tag: str | None = None
        self.remote_sdp: bytes | None = None
        self.offered = False           # our INVITE carried an offer
        self.needs_answer = False      # its 2xx carried an offer the ACK must answer
        self.sent_invite: Any = None      # an INVITE we sent in this dialog, not yet final
        self.received_invite: Any = None  # a server transaction for an INVITE it sent us
        self.awaiting_ack: Any = None  # (peer, timer): we relayed a 2xx; peer waits for ACK
        self.timer: Any = None         # ring timeout or CANCEL guard
        self.no_answer = False         # CANCELled because it rang for the whole ring time

    def step(self, event: LegEvent) -> bool:
        """Take C{event}; False when the table ignores it in this state."""
        transition = TABLE.step(self.state, event)
        if transition is None:
            return False
        self.state = transition.target
        return True

    @property
    def call_id(self) -> str:
        return str(self.outgoing.call_id)

    @property
    def over(self) -> bool:
        return self.state is LegState.TERMINATED

    @property
    def up(self) -> bool:
        return self.state is LegState.CONFIRMED

    @property
    def cancelled(self) -> bool:
        return self.state is LegState.CANCELLING

    def info(self) -> DialogInfo | None:
        """The leg as the original's C{<dialogs>} document shows it; None before any tag."""
        remote_tag = self.dialog.remote_tag if self.dialog is not None else self.early_tag
        if self.outgoing is None or remote_tag is None:
            return None
        request = self.outgoing.request
        label = {LegState.EARLY: EARLY, LegState.CANCELLING: EARLY,
                 LegState.TERMINATED: TERMINATED}.get(self.state, CONFIRMED)
        return DialogInfo(f"{request.call_id}:{request.from_tag}:{remote_tag}",
                          str(request.from_address.uri), str(request.to_address.uri), label)
