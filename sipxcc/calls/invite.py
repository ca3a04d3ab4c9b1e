"""
The INVITE flow (sipMethod=INVITE): RFC 3725 §5 flow IV with the controller staying in
the signalling path. Ring the calling user (A) with a black-hole offer; once A answers,
call the called user (B) with no SDP; while B rings, let A hear B's early media or a
ringback tone (sipxcc.calls.early); hand B's offer to A in a re-INVITE and A's answer to
B in the ACK; then relay in-dialog requests between them (sipxcc.calls.relay), tear down
one leg when the other ends, and transfer A's side to a third party (X).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from sipxcc.calls.call import Call, DialogInfo
from sipxcc.calls.context import (
    FlowContext,
    called_user_invite,
    calling_user_invite,
    credentials_for,
    now_ms,
    reason_header,
    record_failure,
    record_response,
    transfer_target_invite,
)
from sipxcc.calls.early import MAX_EARLY_OFFERS, EarlySession
from sipxcc.calls.errors import TransferNotPossible, failure_status
from sipxcc.calls.leg import Leg, LegEvent, LegState
from sipxcc.calls.reasons import NO_ANSWER, ending_reason
from sipxcc.calls.relay import CONTENT_TYPE_SDP, Relay, SessionFace, is_sdp
from sipxcc.calls.sdp import SessionDescription, ringback_offer, rtp_destination
from sipxcc.media.ringback import RingbackStreams
from sipxcc.statemachine import Table, Transition

log = Logger()

#: RFC 3261 §9.1: after a CANCEL, stop waiting for the INVITE's final response after 64*T1
CANCEL_LIMIT = 32

TRANSFERRED = ("Reason", 'SIP;cause=200;text="Call transferred"')

Headers = list[tuple[str, str]]


class Phase(enum.Enum):
    """Where an INVITE-mode call is, as a whole (its legs have their own states)."""

    CALLING_A = "calling-a"        # INVITE-1 out, A not answered yet
    CALLING_B = "calling-b"        # A up (parked, or hearing ringback or early media), B rings
    EARLY_OFFER = "early-offer"    # B rings; A re-INVITEd to ringback or B's early media
    OFFERING_A = "offering-a"      # B's 200 held un-ACKed, re-INVITE to A with B's offer
    CONNECTED = "connected"        # relaying between caller and callee
    TRANSFERRING = "transferring"  # still relaying A-B, X ringing with B's SDP
    SWAPPING = "swapping"          # X answered, A BYEd, B re-INVITEd with X's SDP
    CLOSING = "closing"            # tearing every leg down
    ENDED = "ended"


class Event(enum.Enum):
    """What happens to an INVITE-mode call."""

    CALLER_RINGING = "1xx from A"
    CALLER_ANSWERED = "2xx from A"
    CALLEE_RINGING = "1xx from B without SDP"
    RINGBACK_DUE = "B has rung for the ringback delay"
    RINGBACK_UNAVAILABLE = "no ringback stream free"
    CALLEE_EARLY_MEDIA = "1xx from B with SDP new to A"
    EARLY_ANSWERED = "2xx to our early re-INVITE"
    EARLY_REFUSED = "our early re-INVITE failed"
    CALLEE_ANSWERED = "2xx from B, with an offer"
    CALLEE_ANSWERED_AS_EARLY = "2xx from B, offering the early media A answered"
    REOFFER_ANSWERED = "2xx to our re-INVITE"
    REOFFER_REFUSED = "our re-INVITE failed"
    TRANSFER = "transfer requested"
    TARGET_ANSWERED = "2xx from X, with an answer"
    TARGET_FAILED = "X did not answer usably"
    FAILED = "a leg's INVITE failed, bad SDP, a leg never ACKed"
    CALLER_GONE = "BYE from A, or A's dialog gone"
    LEG_GONE = "BYE from B or X, or its dialog gone"
    HANGUP = "DELETE, replacement, watchdog, shutdown"
    LATE_ANSWER = "2xx from a leg while closing"
    ALL_OVER = "every leg terminated"


_P, _E, _T = Phase, Event, Transition
_LIVE = (_P.CALLING_A, _P.CALLING_B, _P.EARLY_OFFER, _P.OFFERING_A, _P.CONNECTED,
         _P.TRANSFERRING, _P.SWAPPING)

#: Every (phase, event) pair of an INVITE-mode call: a transition, an explicit no-op, or
#: (absent from both) a refusal, for events that cannot happen then.
TABLE: Table[Phase, Event] = Table(
    "invite",
    _P.CALLING_A,
    {
        (_P.CALLING_A, _E.CALLER_RINGING): _T(_P.CALLING_A, "_ringing"),
        (_P.CALLING_A, _E.CALLER_ANSWERED): _T(_P.CALLING_B, "_call_callee"),
        # while B rings (sipxcc.calls.early): one re-INVITE of A at a time
        (_P.CALLING_B, _E.CALLEE_RINGING): _T(_P.CALLING_B, "_ringback_soon"),
        (_P.CALLING_B, _E.RINGBACK_DUE): _T(_P.EARLY_OFFER, "_offer_ringback"),
        (_P.EARLY_OFFER, _E.RINGBACK_UNAVAILABLE): _T(_P.CALLING_B),
        (_P.CALLING_B, _E.CALLEE_EARLY_MEDIA): _T(_P.EARLY_OFFER, "_offer_early_media"),
        (_P.EARLY_OFFER, _E.CALLEE_EARLY_MEDIA): _T(_P.EARLY_OFFER, "_early_media_pending"),
        (_P.EARLY_OFFER, _E.EARLY_ANSWERED): _T(_P.CALLING_B, "_early_answered"),
        (_P.EARLY_OFFER, _E.EARLY_REFUSED): _T(_P.CALLING_B, "_early_refused"),
        **{(_P.EARLY_OFFER, e): _T(_P.EARLY_OFFER, "_hold_answer")
           for e in (_E.CALLEE_ANSWERED, _E.CALLEE_ANSWERED_AS_EARLY)},
        (_P.CALLING_B, _E.CALLEE_ANSWERED): _T(_P.OFFERING_A, "_offer_to_caller"),
        (_P.CALLING_B, _E.CALLEE_ANSWERED_AS_EARLY): _T(_P.CONNECTED, "_connect_early"),
        (_P.OFFERING_A, _E.REOFFER_ANSWERED): _T(_P.CONNECTED, "_connect"),
        (_P.SWAPPING, _E.REOFFER_ANSWERED): _T(_P.CONNECTED, "_swapped"),
        (_P.OFFERING_A, _E.REOFFER_REFUSED): _T(_P.CLOSING, "_teardown"),
        (_P.SWAPPING, _E.REOFFER_REFUSED): _T(_P.CLOSING, "_teardown"),
        (_P.CONNECTED, _E.TRANSFER): _T(_P.TRANSFERRING, "_call_target"),
        (_P.TRANSFERRING, _E.TARGET_ANSWERED): _T(_P.SWAPPING, "_swap"),
        (_P.TRANSFERRING, _E.TARGET_FAILED): _T(_P.CONNECTED, "_transfer_failed"),
        **{(p, e): _T(_P.CLOSING, "_teardown") for p in _LIVE
           for e in (_E.FAILED, _E.HANGUP, _E.LEG_GONE)},
        **{(p, _E.CALLER_GONE): _T(_P.CLOSING, "_teardown")
           for p in (_P.CALLING_A, _P.CALLING_B, _P.EARLY_OFFER, _P.OFFERING_A,
                     _P.CONNECTED)},
        **{(_P.CLOSING, e): _T(_P.CLOSING, "_check_done")
           for e in (_E.FAILED, _E.TARGET_FAILED, _E.CALLER_GONE, _E.LEG_GONE)},
        (_P.CLOSING, _E.LATE_ANSWER): _T(_P.CLOSING, "_drop_answer"),
        (_P.ENDED, _E.LATE_ANSWER): _T(_P.ENDED, "_drop_answer"),
        (_P.CLOSING, _E.ALL_OVER): _T(_P.ENDED, "_finish"),
    },
    ignores=[
        *((p, _E.CALLER_RINGING) for p in Phase if p is not _P.CALLING_A),
        # B rings on while A's early re-INVITE is in flight, or while B is cancelled
        *((p, e) for p in (_P.EARLY_OFFER, _P.CLOSING)
          for e in (_E.CALLEE_RINGING, _E.RINGBACK_DUE)),
        (_P.CLOSING, _E.CALLEE_EARLY_MEDIA),
        # the ringback delay's timer, late (it is cancelled when B answers)
        *((p, _E.RINGBACK_DUE) for p in (_P.OFFERING_A, _P.CONNECTED, _P.TRANSFERRING,
                                          _P.SWAPPING)),
        # A leaves while we move B to X anyway
        (_P.TRANSFERRING, _E.CALLER_GONE), (_P.SWAPPING, _E.CALLER_GONE),
        # the answer to a re-INVITE of a phase that is over
        *((p, e) for p in (_P.CONNECTED, _P.TRANSFERRING, _P.CLOSING, _P.ENDED)
          for e in (_E.REOFFER_ANSWERED, _E.REOFFER_REFUSED)),
        (_P.CLOSING, _E.EARLY_ANSWERED), (_P.CLOSING, _E.EARLY_REFUSED),
        (_P.CLOSING, _E.HANGUP),
        *((p, _E.ALL_OVER) for p in _LIVE),
        # over: what comes late changes nothing (a transfer is refused, though)
        *((_P.ENDED, e) for e in Event
          if e not in (_E.LATE_ANSWER, _E.CALLER_RINGING, _E.TRANSFER)),
    ],
    final=(_P.ENDED,),
)


class InviteFlow:
    """
    One INVITE-mode call, driven by L{TABLE}; each leg's own state follows
    L{sipxcc.calls.leg.TABLE}. C{caller} is A (X after a transfer), C{callee} is B.
    """

    def __init__(self, ctx: FlowContext, call: Call, on_end: Callable[[Call], None],
                 ringback: RingbackStreams | None = None):
        self.ctx = ctx
        self.call = call
        self.on_end = on_end
        self.ringback = ringback  # None: A hears no ringback tone (early media still)
        self.early = EarlySession()
        self.phase = Phase.CALLING_A
        self.legs: list[Leg] = []
        self.caller: Leg = self._new_leg("A")
        self.callee: Leg | None = None
        self.target: Leg | None = None
        self.connected_once = False
        self.limit_timer: Any = None  # timeLimit, once connected
        self.outcome = "failed"
        self.relay = Relay(self._peer_of, self._frozen, self._bye_received,
                           self._leg_lost, self._leg_unresponsive)
        call.set_dialog_source(self._dialogs)

    def _fire(self, event: Event, *args: Any) -> None:
        """Take the table's transition for C{event}: new phase, then its action."""
        transition = TABLE.step(self.phase, event)
        if transition is None:
            return
        self.phase = transition.target
        if transition.action is not None:
            getattr(self, transition.action)(*args)

    def _ending(self) -> str:
        return "ended" if self.connected_once else "failed"

    # Setting up

    def start(self) -> None:
        invite = calling_user_invite(self.ctx, self.call, body=self.caller.face.black_hole())
        self._send_invite(self.caller, invite, Event.CALLER_ANSWERED)

    def _new_leg(self, name: str) -> Leg:
        leg = Leg(name, SessionFace(self.ctx.address))
        self.legs.append(leg)
        return leg

    def _send_invite(self, leg: Leg, invite: Any, answered: Event,
                     timeout: int | None = None) -> None:
        """INVITE C{leg}; CANCEL it if it rings longer than C{timeout} (the call's)."""
        leg.offered = bool(invite.body)
        leg.outgoing = self.ctx.ua.invite(invite, credentials_for(self.call.request.agent),
                                          lambda response: self._progress(leg, response))
        leg.outgoing.deferred.addCallbacks(
            lambda response: self._final(leg, response, answered),
            lambda failure: self._invite_failed(leg, failure))
        leg.timer = self.ctx.timers.call_later(timeout or self.call.request.timeout,
                                               self._ring_timeout, leg)

    def _progress(self, leg: Leg, response: Any) -> None:
        record_response(self.ctx, self.call, response)
        if not 100 < response.status < 200:
            return
        if response.to_tag and leg.step(LegEvent.PROGRESS):
            leg.early_tag = response.to_tag
        if leg is self.caller:
            self._fire(Event.CALLER_RINGING)
        elif leg is self.callee and not leg.cancelled:
            self._callee_progress(response)

    def _callee_progress(self, response: Any) -> None:
        """B rings: with SDP (RFC 3960: the SDP, not the status code, means early media)
        A may hear it; without, A may hear our ringback tone."""
        if not is_sdp(response):
            self._fire(Event.CALLEE_RINGING)
            return
        try:
            SessionDescription.parse(response.body)
        except ValueError as e:
            log.info("call {id}: B's early SDP is unusable: {e}", id=self.call.id, e=e)
            self._fire(Event.CALLEE_RINGING)
            return
        if self.early.wants(response.body):
            self._fire(Event.CALLEE_EARLY_MEDIA, response.body)

    def _final(self, leg: Leg, response: Any, answered: Event) -> None:
        self._stop_timer(leg)
        if response.status >= 300:
            self._invite_rejected(leg, response.status, response.reason)
            return
        leg.dialog = leg.outgoing.dialog
        leg.needs_answer = not leg.offered and is_sdp(response)
        if is_sdp(response):
            leg.remote_sdp = response.body
        gave_up, cancelled = leg.over, leg.cancelled
        leg.step(LegEvent.ANSWERED)
        self.relay.attach(leg)
        if gave_up:  # we stopped waiting for it: ACK and BYE, nothing else to tell
            self._drop_answer(leg)
        elif cancelled:  # answered as we cancelled it (§15): ACK and BYE; it failed
            self._drop_answer(leg)
            # only a ring timeout's CANCEL is told to the others (a teardown's is closing)
            self._leg_failed(leg, *NO_ANSWER)
        elif self.phase in (Phase.CLOSING, Phase.ENDED):
            self._fire(Event.LATE_ANSWER, leg)
        else:
            self._answered(leg, response, answered)

    def _answered(self, leg: Leg, response: Any, event: Event) -> None:
        """A leg answered: check what it brought, then tell the table what that means."""
        if event is Event.CALLEE_ANSWERED:
            self._callee_answered(leg, response)
            return
        leg.dialog.ack()
        if event is not Event.TARGET_ANSWERED:
            self._fire(event)
            return
        offer = self._present(self.callee, response.body if is_sdp(response) else None,
                              "transfer target gave no usable SDP")
        if offer is None:
            self._close(leg, reason_header(488, "Expecting SDP answer"))
            self._leg_failed(leg, 488, "Expecting SDP answer")
            return
        self._fire(event, offer)

    def _callee_answered(self, callee: Leg, response: Any) -> None:
        """B must offer in its 2xx; the ACK waits for A's answer (or carries a refusal):
        the answer A gave to the same early media, or the one to a re-INVITE."""
        if not callee.needs_answer:
            callee.dialog.ack()
            self._fire(Event.FAILED, [reason_header(488, "Expecting SDP body")], "failed")
            return
        try:
            SessionDescription.parse(response.body)
        except ValueError as e:
            log.info("call {id}: bad SDP offer from B: {e}", id=self.call.id, e=e)
            self._fire(Event.FAILED, [reason_header(488, "Bad SDP")], "failed")
            return
        event = (Event.CALLEE_ANSWERED_AS_EARLY if self.early.answers(response.body)
                 else Event.CALLEE_ANSWERED)
        self._fire(event, callee, response)

    def _present(self, leg: Leg | None, body: bytes | None, what: str) -> bytes | None:
        """C{body} as the next SDP of C{leg}'s session; None (logged) if it is unusable."""
        try:
            if leg is None or body is None:
                raise ValueError("no SDP")
            return leg.face.present(body)
        except ValueError as e:
            log.info("call {id}: {what}: {e}", id=self.call.id, what=what, e=e)
            return None

    def _invite_failed(self, leg: Leg, failure: Failure) -> None:
        self._stop_timer(leg)
        status, reason = record_failure(self.ctx, self.call, leg.call_id, "INVITE", failure)
        self._invite_rejected(leg, status, reason)

    def _invite_rejected(self, leg: Leg, status: int, reason: str) -> None:
        if leg.over:
            return
        leg.step(LegEvent.REJECTED)
        if leg.no_answer and status in (408, 487):
            self._leg_failed(leg, *NO_ANSWER)
            return
        self._leg_failed(leg, status, reason)

    def _ring_timeout(self, leg: Leg) -> None:
        """The leg rang for the whole ring time: CANCEL it, and tell the others 'no
        answer' rather than the 487 our own CANCEL brings back."""
        leg.no_answer = True
        self._cancel(leg)

    def _cancel(self, leg: Leg) -> None:
        """Ring timeout or teardown: CANCEL (§9.1), and stop waiting after CANCEL_LIMIT."""
        leg.timer = None
        if not leg.step(LegEvent.CANCEL):
            return
        leg.outgoing.cancel()
        leg.timer = self.ctx.timers.call_later(CANCEL_LIMIT, self._cancel_expired, leg)

    def _cancel_expired(self, leg: Leg) -> None:
        leg.timer = None
        if leg.outgoing.final_status is None:
            self._invite_rejected(leg, 408, "Request Timeout")

    # Actions named in the table

    def _ringing(self) -> None:
        self.call.set_state("ringing")

    def _call_callee(self) -> None:
        """A is up on the black hole: call B with no SDP, for B's offer; B is shown the
        calling user (or what callerId/callerIdName ask for)."""
        self.call.set_state("ringing")
        self.callee = self._new_leg("B")
        invite = called_user_invite(self.ctx, self.call)
        self._send_invite(self.callee, invite, Event.CALLEE_ANSWERED)

    def _offer_to_caller(self, callee: Leg, response: Any) -> None:
        """B answered with an offer A has not answered yet: re-INVITE A with it."""
        self.early.stop()
        self._reoffer(self.caller, self.caller.face.present(response.body))

    # While B rings (sipxcc.calls.early)

    def _ringback_soon(self) -> None:
        """B rings without SDP: unless A hears something already, ask for the ringback
        tone once B has rung for the pool's delay (so that an answer at once costs no
        re-INVITE)."""
        early = self.early
        if self.ringback is None or early.ringback_asked or early.refused \
                or early.heard is not None or early.offers >= MAX_EARLY_OFFERS:
            return
        early.ringback_asked = True
        early.timer = self.ctx.timers.call_later(self.ringback.delay, self._fire,
                                                 Event.RINGBACK_DUE)

    def _offer_ringback(self) -> None:
        """Re-INVITE A to a ringback stream of ours (sendonly); none free: A stays parked."""
        self.early.timer = None
        assert self.ringback is not None
        stream = self.ringback.open(self.call.request.timeout + CANCEL_LIMIT)
        if stream is None:
            self._fire(Event.RINGBACK_UNAVAILABLE)
            return
        self.early.stream = stream
        self.early.offered = None
        self.early.offers += 1
        offer = ringback_offer(stream.address, stream.port)
        self._reoffer(self.caller, self.caller.face.present(offer), early=True)

    def _offer_early_media(self, body: bytes) -> None:
        """B's 1xx brought SDP: re-INVITE A with that media (in A's own session)."""
        early = self.early
        if early.timer is not None and early.timer.active():
            early.timer.cancel()  # the far end's own tones, rather than ours
        early.timer = None
        early.offered = body
        early.offers += 1
        self._reoffer(self.caller, self.caller.face.present(body), early=True)

    def _early_media_pending(self, body: bytes) -> None:
        self.early.pending = body

    def _hold_answer(self, callee: Leg, response: Any) -> None:
        """B answered while A's early re-INVITE is in flight: B's 2xx waits un-ACKed."""
        self.early.held = (callee, response)

    def _early_answered(self, caller: Leg, response: Any) -> None:
        """A took the early offer: it hears our ringback, or B's early media."""
        early = self.early
        answer = response.body if is_sdp(response) else None
        if early.offered is None:
            target = rtp_destination(answer) if answer is not None else None
            if early.stream is None or target is None or not early.stream.play(*target):
                log.info("call {id}: A's answer takes no ringback", id=self.call.id)
                early.close_stream()
        else:
            if answer is not None:
                early.heard, early.answer = early.offered, answer
                early.close_stream()  # B's media replaces our tone
            early.offered = None
        self._early_next()

    def _early_refused(self, status: int) -> None:
        """A refused the early offer: it keeps what it had (RFC 3261 §14.1) and is offered
        nothing more until B answers; a 481 or 408 means A's dialog is gone."""
        early = self.early
        log.info("call {id}: A refused the {what} with {status}", id=self.call.id,
                 what="ringback" if early.offered is None else "early media", status=status)
        if early.offered is None:
            early.close_stream()
        early.offered = early.pending = None
        early.refused = True
        if status in (408, 481):  # §12.2.1.2
            self._leg_gone(self.caller, None)
            return
        self._early_next()

    def _early_next(self) -> None:
        """The early re-INVITE is over: B's held 2xx, else its newer early media, is next."""
        early = self.early
        if early.held is not None:
            (callee, response), early.held = early.held, None
            self._callee_answered(callee, response)
        elif early.pending is not None:
            body, early.pending = early.pending, None
            if early.wants(body):
                self._fire(Event.CALLEE_EARLY_MEDIA, body)

    def _connect_early(self, callee: Leg, response: Any) -> None:
        """B's 2xx offers the media A already hears: A's early answer goes to B in the
        ACK, A is not re-INVITEd (its session does not change)."""
        answer = self.early.answer
        self.early.stop()
        self._answer_callee(answer)

    # The one re-offer routine

    def _reoffer(self, leg: Leg, offer: bytes, early: bool = False) -> None:
        """Re-INVITE C{leg} with C{offer}; its answer or refusal comes back as
        REOFFER_ANSWERED / REOFFER_REFUSED, or, for an C{early} offer to A while B
        rings, EARLY_ANSWERED / EARLY_REFUSED."""
        reinvite = leg.dialog.request("INVITE", [CONTENT_TYPE_SDP], offer)
        leg.sent_invite = reinvite
        reinvite.deferred.addCallbacks(
            lambda response: self._reoffer_answered(leg, response, early),
            lambda failure: self._reoffer_failed(leg, failure, early))

    def _reoffer_answered(self, leg: Leg, response: Any, early: bool) -> None:
        leg.sent_invite = None
        if response.status >= 300:
            leg.face.rejected()
            self._reoffer_refused(response.status, response.reason, early)
            return
        leg.dialog.ack()
        self._fire(Event.EARLY_ANSWERED if early else Event.REOFFER_ANSWERED, leg, response)

    def _reoffer_failed(self, leg: Leg, failure: Failure, early: bool) -> None:
        leg.sent_invite = None
        status, reason, _ = failure_status(failure, "re-INVITE", self.call.id)
        self._reoffer_refused(status, reason, early)

    def _reoffer_refused(self, status: int, reason: str, early: bool) -> None:
        if early:
            self._fire(Event.EARLY_REFUSED, status)
        else:
            self._fire(Event.REOFFER_REFUSED, [reason_header(status, reason)], "failed")

    def _connect(self, caller: Leg, response: Any) -> None:
        """A answered B's offer: B gets the answer in its ACK; the call is connected."""
        self._answer_callee(response.body if is_sdp(response) else None)

    def _answer_callee(self, body: bytes | None) -> None:
        """A's answer (C{body}) to B's offer goes to B in the ACK: connected."""
        callee = self.callee
        assert callee is not None
        answer = self._present(callee, body, "bad SDP answer from A")
        if answer is None:
            self._fire(Event.FAILED, [reason_header(488, "Expecting SDP answer")], "failed")
            return
        callee.needs_answer = False
        callee.dialog.ack(answer, [CONTENT_TYPE_SDP])
        self.connected_once = True
        self.call.set_state("connected")
        limit = self.call.request.time_limit
        if limit:
            self.limit_timer = self.ctx.timers.call_later(limit, self._time_up, limit)

    def _time_up(self, limit: int) -> None:
        """C{timeLimit} seconds after the call was connected: both legs are hung up, and
        the status document says why (a line on the calling user's dialog)."""
        self.limit_timer = None
        self.call.record(now_ms(self.ctx.clock), self.caller.call_id, "BYE",
                         f"Time limit of {limit} s reached")
        self._fire(Event.HANGUP, [reason_header(200, "Time limit reached")], "ended")

    def transfer(self, target: str, timeout: int | None = None) -> None:
        """Replace the calling side by C{target} (addr-spec); only while connected. The
        target rings at most C{timeout} seconds (default: the call's own timeout)."""
        if not TABLE.allows(self.phase, Event.TRANSFER):
            raise TransferNotPossible("The call is not connected; nothing to transfer")
        callee = self.callee
        assert callee is not None
        if callee.remote_sdp is None or any(
                leg.sent_invite is not None or leg.received_invite is not None
                for leg in (self.caller, callee)):
            raise TransferNotPossible("A session change is in progress; try again")
        target_leg = self._new_leg("X")
        # X is shown whom it will talk to: the called user, not the agent
        invite = transfer_target_invite(self.ctx, self.call, target,
                                        target_leg.face.present(callee.remote_sdp))
        self._fire(Event.TRANSFER, target_leg, invite, timeout)

    def _call_target(self, target: Leg, invite: Any, timeout: int | None) -> None:
        self.target = target
        self.call.set_state("transferring")
        self._send_invite(target, invite, Event.TARGET_ANSWERED, timeout)

    def _swap(self, offer: bytes) -> None:
        """X answered with B's session: A leaves, B gets X's SDP in a re-INVITE."""
        self._close(self.caller, TRANSFERRED)
        assert self.callee is not None
        self._reoffer(self.callee, offer)

    def _swapped(self, callee: Leg, response: Any) -> None:
        if is_sdp(response):
            callee.remote_sdp = response.body
        assert self.target is not None
        self.caller, self.target = self.target, None
        self.call.set_state("connected")

    def _transfer_failed(self, headers: Headers) -> None:
        self.target = None
        if self.caller.over:  # A hung up while X was ringing: B has no one left
            self._fire(Event.FAILED, headers, "ended")
        else:
            self.call.set_state("connected")

    # Relaying (sipxcc.calls.relay asks these)

    def _peer_of(self, leg: Leg) -> Leg | None:
        if self.phase not in (Phase.CONNECTED, Phase.TRANSFERRING):
            return None
        if leg is self.caller:
            return self.callee
        if leg is self.callee:
            return self.caller
        return None

    def _frozen(self) -> bool:
        """While we move sessions around ourselves, the parties may not renegotiate."""
        return self.phase in (Phase.OFFERING_A, Phase.TRANSFERRING, Phase.SWAPPING)

    def _bye_received(self, leg: Leg, request: Any, txn: Any) -> None:
        txn.respond(200, "OK")
        self._leg_gone(leg, request.headers.get("Reason"))

    def _leg_lost(self, leg: Leg) -> None:
        self._leg_gone(leg, None)

    def _leg_unresponsive(self, leg: Leg) -> None:
        """§13.3.1.4: the leg never ACKed a 2xx we relayed to it; end the session."""
        self._fire(Event.FAILED, [reason_header(408, "No ACK")], self._ending())

    def _leg_gone(self, leg: Leg, reason: str | None) -> None:
        """The far end of C{leg} hung up (or its dialog vanished): tear the rest down."""
        if leg.over:
            return
        was_closing = leg.state is LegState.CLOSING
        self.relay.close(leg)
        leg.needs_answer = False
        leg.dialog.terminate()
        leg.step(LegEvent.GONE)
        if was_closing:
            self._check_done()
            return
        event = Event.CALLER_GONE if leg is self.caller else Event.LEG_GONE
        self._fire(event, [("Reason", reason)] if reason else [], self._ending())

    # Ending

    def hangup(self, why: str) -> None:
        """DELETE, replacement, watchdog or shutdown: CANCEL what rings, BYE what is up."""
        self._fire(Event.HANGUP, [reason_header(200, why)], self._ending())

    def _leg_failed(self, leg: Leg, status: int, reason: str, q850: int | None = None) -> None:
        """C{leg}'s INVITE did not give a usable call: what that means depends on who.
        The legs still up are told why, SIP and Q.850 cause (busy, declined, not found,
        no answer: what the calling user's phone shows or plays)."""
        headers = [ending_reason(status, reason, q850)]
        if leg is self.target:
            self._fire(Event.TARGET_FAILED, headers)
        else:
            self._fire(Event.FAILED, headers, self._ending())

    def _teardown(self, headers: Headers, outcome: str) -> None:
        self.outcome = outcome
        self.early.stop()
        for leg in list(self.legs):
            self._close(leg, *headers)
        self._check_done()

    def _drop_answer(self, leg: Leg) -> None:
        """A leg answered that we no longer want: ACK (with a refusal if need be), BYE."""
        if not leg.needs_answer:  # else _close ACKs with a refusal
            leg.dialog.ack()
        self._close(leg, reason_header(487, "Call cancelled"))
        self._check_done()

    def _close(self, leg: Leg, *headers: tuple[str, str]) -> None:
        """CANCEL the leg if it still rings, else (ACK if need be and) BYE it."""
        if leg.over or leg.state is LegState.CLOSING:
            return
        self.relay.close(leg)
        if leg.dialog is None:
            if leg.outgoing is None:
                leg.step(LegEvent.DROP)
            else:
                self._cancel(leg)
            return
        leg.step(LegEvent.BYE_SENT)
        if leg.needs_answer:  # §13.2.2.4: a valid answer in the ACK, then BYE
            leg.needs_answer = False
            leg.dialog.ack(leg.face.refusal(leg.remote_sdp or b""), [CONTENT_TYPE_SDP])
        bye = leg.dialog.request("BYE", list(headers))
        bye.deferred.addBoth(lambda _: self._leg_over(leg))

    def _leg_over(self, leg: Leg) -> None:
        if leg.dialog is not None:
            leg.dialog.terminate()
        leg.step(LegEvent.BYE_DONE)
        self._check_done()

    def _check_done(self, *_: Any) -> None:
        if all(leg.over for leg in self.legs):
            self._fire(Event.ALL_OVER)

    def _finish(self) -> None:
        self.early.stop()
        for leg in self.legs:
            self._stop_timer(leg)
        if self.limit_timer is not None and self.limit_timer.active():
            self.limit_timer.cancel()
        self.limit_timer = None
        self.call.finish("failed" if self.outcome == "failed" else "ended")
        self.on_end(self.call)
        self.relay.detach()  # it holds our bound methods: let go (no cycle outlives the call)

    def _stop_timer(self, leg: Leg) -> None:
        if leg.timer is not None and leg.timer.active():
            leg.timer.cancel()
        leg.timer = None

    def _dialogs(self) -> list[DialogInfo]:
        return [info for info in (leg.info() for leg in self.legs) if info is not None]
