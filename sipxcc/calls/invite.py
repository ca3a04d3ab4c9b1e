"""
The INVITE flow (SPEC §4, sipMethod=INVITE): RFC 3725 §5 flow IV with the controller
staying in the signalling path. Ring the calling user (A) with a black-hole offer; once A
answers, call the called user (B) with no SDP; hand B's offer to A in a re-INVITE and A's
answer to B in the ACK; then relay in-dialog requests between them (sipxcc.calls.relay),
tear down one leg when the other ends, and transfer A's side to a third party (X).
"""

from __future__ import annotations

from twisted.logger import Logger

from sipxcc.calls.errors import TransferNotPossible, failure_status
from sipxcc.calls.leg import (
    FlowContext,
    credentials_for,
    first_invite,
    reason_header,
    record_failure,
    record_response,
)
from sipxcc.calls.relay import CONTENT_TYPE_SDP, Leg, Relay, SessionFace, is_sdp

log = Logger()

#: §9.1: after a CANCEL, stop waiting for the INVITE's final response after 64*T1
CANCEL_LIMIT = 32

CALLING_A = "calling-a"        # INVITE-1 out, A not answered yet
CALLING_B = "calling-b"        # A up on the black hole, INVITE-2 out
OFFERING_A = "offering-a"      # B's 200 held un-ACKed, re-INVITE to A with B's offer
CONNECTED = "connected"        # relaying between caller and callee
TRANSFERRING = "transferring"  # still relaying A-B, X ringing with B's SDP
SWAPPING = "swapping"          # X answered, A BYEd, B re-INVITEd with X's SDP
CLOSING = "closing"            # tearing every leg down
ENDED = "ended"

TRANSFERRED = ("Reason", 'SIP;cause=200;text="Call transferred"')


class InviteFlow:
    """
    One INVITE-mode call. C{caller} is A (X after a transfer), C{callee} is B. Phases
    (phase, event → phase):

      CALLING_A    --2xx (ACK)--> CALLING_B (INVITE-2, no SDP)   --failure/timeout--> end
      CALLING_B    --2xx with offer, held--> OFFERING_A (re-INVITE A with the offer)
      CALLING_B    --failure/timeout, or 2xx without SDP--> CLOSING (BYE A)
      OFFERING_A   --2xx with answer--> CONNECTED (ACK A, ACK B with the answer)
      OFFERING_A   --refused--> CLOSING (ACK B, BYE both)
      CONNECTED    --transfer(X)--> TRANSFERRING --X 2xx (ACK, BYE A)--> SWAPPING
      TRANSFERRING --X failed--> CONNECTED;  SWAPPING --B 2xx (ACK)--> CONNECTED (X-B)
      any          --BYE from a leg / hangup / a leg lost--> CLOSING --all legs over--> ENDED
    """

    def __init__(self, ctx: FlowContext, call, on_end):
        self.ctx = ctx
        self.call = call
        self.on_end = on_end
        self.phase = CALLING_A
        self.legs: list[Leg] = []
        self.caller: Leg | None = None
        self.callee: Leg | None = None
        self.target: Leg | None = None
        self.connected_once = False
        self.outcome = "failed"
        self.relay = Relay(ctx.clock, self._peer_of, self._frozen, self._bye_received,
                           self._leg_lost, self._leg_unresponsive)
        call.set_dialog_source(self._dialogs)

    # Setting up

    def start(self) -> None:
        request = self.call.request
        self.caller = self._new_leg("A")
        invite = first_invite(self.ctx, self.call, request.calling,
                              forwarding_allowed=request.forwarding_allowed,
                              subject=request.subject, auto_answer=request.auto_answer,
                              body=self.caller.face.black_hole())
        self._send_invite(self.caller, invite, self._caller_answered)

    def _new_leg(self, name: str) -> Leg:
        leg = Leg(name, SessionFace(self.ctx.address))
        self.legs.append(leg)
        return leg

    def _send_invite(self, leg: Leg, invite, answered, timeout: int | None = None) -> None:
        """INVITE C{leg}; CANCEL it if it rings longer than C{timeout} (the call's)."""
        leg.offered = bool(invite.body)
        leg.outgoing = self.ctx.ua.invite(invite, credentials_for(self.call.request.agent),
                                          lambda response: self._progress(leg, response))
        leg.outgoing.deferred.addCallbacks(
            lambda response: self._final(leg, response, answered),
            lambda failure: self._invite_failed(leg, failure))
        leg.timer = self.ctx.timers.call_later(timeout or self.call.request.timeout,
                                               self._cancel, leg)

    def _progress(self, leg: Leg, response) -> None:
        record_response(self.ctx, self.call, response)
        status = response.status
        if 100 < status < 200 and leg.state in ("new", "early") and response.to_tag:
            leg.state = "early"
            leg.early_tag = response.to_tag
        if 100 < status < 200 and leg is self.caller and self.phase == CALLING_A:
            self.call.set_state("ringing")

    def _final(self, leg: Leg, response, answered) -> None:
        self._stop_timer(leg)
        if response.status >= 300:
            self._invite_rejected(leg, response.status, response.reason)
            return
        leg.dialog = leg.outgoing.dialog
        leg.needs_answer = not leg.offered and is_sdp(response)
        if is_sdp(response):
            leg.remote_sdp = response.body
        gave_up = leg.over
        leg.state = "confirmed"
        self.relay.attach(leg)
        if gave_up or leg.cancelled or self.phase in (CLOSING, ENDED):
            # answered as we cancelled it (§15): ACK and BYE
            if not leg.needs_answer:  # else _close ACKs with a refusal
                leg.dialog.ack()
            self._close(leg, reason_header(487, "Call cancelled"))
            if not gave_up:
                self._leg_failed(leg, 487, "Request Terminated")
            return
        answered(leg, response)

    def _invite_failed(self, leg: Leg, failure) -> None:
        self._stop_timer(leg)
        status, reason = record_failure(self.ctx, self.call, leg.call_id, "INVITE", failure)
        self._invite_rejected(leg, status, reason)

    def _invite_rejected(self, leg: Leg, status: int, reason: str) -> None:
        if leg.over:
            return
        leg.state = "terminated"
        self._leg_failed(leg, status, reason)

    def _cancel(self, leg: Leg) -> None:
        """Ring timeout or teardown: CANCEL (§9.1), and stop waiting after CANCEL_LIMIT."""
        leg.timer = None
        if leg.cancelled or leg.over:
            return
        leg.cancelled = True
        leg.outgoing.cancel()
        leg.timer = self.ctx.timers.call_later(CANCEL_LIMIT, self._cancel_expired, leg)

    def _cancel_expired(self, leg: Leg) -> None:
        leg.timer = None
        if leg.outgoing.final_status is None:
            self._invite_rejected(leg, 408, "Request Timeout")

    def _caller_answered(self, caller: Leg, response) -> None:
        caller.dialog.ack()
        self.phase = CALLING_B
        self.call.set_state("ringing")
        self.callee = self._new_leg("B")
        invite = first_invite(self.ctx, self.call, self.call.request.called,
                              forwarding_allowed=False, body=b"")
        self._send_invite(self.callee, invite, self._callee_answered)

    def _callee_answered(self, callee: Leg, response) -> None:
        if not callee.needs_answer:
            callee.dialog.ack()
            self._teardown([reason_header(488, "Expecting SDP body")], "failed")
            return
        try:
            offer = self.caller.face.present(response.body)
        except ValueError as e:
            log.info("call {id}: bad SDP offer from B: {e}", id=self.call.id, e=e)
            self._teardown([reason_header(488, "Bad SDP")], "failed")
            return
        self.phase = OFFERING_A
        reinvite = self.caller.dialog.request("INVITE", [CONTENT_TYPE_SDP], offer)
        self.caller.sent_invite = reinvite
        reinvite.deferred.addCallbacks(self._caller_reanswered, self._caller_refused)

    def _caller_reanswered(self, response) -> None:
        caller, callee = self.caller, self.callee
        caller.sent_invite = None
        if response.status >= 300:
            caller.face.rejected()
            if self.phase == OFFERING_A:
                self._teardown([reason_header(response.status, response.reason)], "failed")
            return
        caller.dialog.ack()
        if self.phase != OFFERING_A:
            return
        try:
            if not is_sdp(response):
                raise ValueError("no SDP answer")
            answer = callee.face.present(response.body)
        except ValueError as e:
            log.info("call {id}: bad SDP answer from A: {e}", id=self.call.id, e=e)
            self._teardown([reason_header(488, "Expecting SDP answer")], "failed")
            return
        caller.remote_sdp = response.body
        callee.needs_answer = False
        callee.dialog.ack(answer, [CONTENT_TYPE_SDP])
        self.phase = CONNECTED
        self.connected_once = True
        self.call.set_state("connected")

    def _caller_refused(self, failure) -> None:
        self.caller.sent_invite = None
        if self.phase == OFFERING_A:
            status, reason, _ = failure_status(failure, "re-INVITE", self.call.id)
            self._teardown([reason_header(status, reason)], "failed")

    # Transfer

    def transfer(self, target: str, timeout: int | None = None) -> None:
        """Replace the calling side by C{target} (addr-spec); only while connected. The
        target rings at most C{timeout} seconds (default: the call's own timeout)."""
        if self.phase != CONNECTED:
            raise TransferNotPossible("The call is not connected; nothing to transfer")
        caller, callee = self.caller, self.callee
        if callee.remote_sdp is None or any(
                leg.sent_invite is not None or leg.received_invite is not None
                for leg in (caller, callee)):
            raise TransferNotPossible("A session change is in progress; try again")
        target_leg = self._new_leg("X")
        invite = first_invite(self.ctx, self.call, target, forwarding_allowed=False,
                              body=target_leg.face.present(callee.remote_sdp))
        self.target = target_leg
        self.phase = TRANSFERRING
        self.call.set_state("transferring")
        self._send_invite(target_leg, invite, self._target_answered, timeout)

    def _target_answered(self, target: Leg, response) -> None:
        target.dialog.ack()
        try:
            if not is_sdp(response):
                raise ValueError("no SDP answer")
            offer = self.callee.face.present(response.body)
        except ValueError as e:
            log.info("call {id}: transfer target gave no usable SDP: {e}", id=self.call.id, e=e)
            self._close(target, reason_header(488, "Expecting SDP answer"))
            self._leg_failed(target, 488, "Expecting SDP answer")
            return
        self._close(self.caller, TRANSFERRED)
        self.phase = SWAPPING
        reinvite = self.callee.dialog.request("INVITE", [CONTENT_TYPE_SDP], offer)
        self.callee.sent_invite = reinvite
        reinvite.deferred.addCallbacks(self._callee_reanswered, self._callee_refused)

    def _callee_reanswered(self, response) -> None:
        callee = self.callee
        callee.sent_invite = None
        if response.status >= 300:
            callee.face.rejected()
            if self.phase == SWAPPING:
                self._teardown([reason_header(response.status, response.reason)], "failed")
            return
        callee.dialog.ack()
        if self.phase != SWAPPING:
            return
        if is_sdp(response):
            callee.remote_sdp = response.body
        self.caller, self.target = self.target, None
        self.phase = CONNECTED
        self.call.set_state("connected")

    def _callee_refused(self, failure) -> None:
        self.callee.sent_invite = None
        if self.phase == SWAPPING:
            status, reason, _ = failure_status(failure, "re-INVITE", self.call.id)
            self._teardown([reason_header(status, reason)], "failed")

    # Relaying (sipxcc.calls.relay asks these)

    def _peer_of(self, leg: Leg) -> Leg | None:
        if self.phase not in (CONNECTED, TRANSFERRING):
            return None
        if leg is self.caller:
            return self.callee
        if leg is self.callee:
            return self.caller
        return None

    def _frozen(self) -> bool:
        """While we move sessions around ourselves, the parties may not renegotiate."""
        return self.phase in (OFFERING_A, TRANSFERRING, SWAPPING)

    def _bye_received(self, leg: Leg, request, txn) -> None:
        txn.respond(200, "OK")
        self._leg_gone(leg, request.headers.get("Reason"))

    def _leg_lost(self, leg: Leg) -> None:
        self._leg_gone(leg, None)

    def _leg_unresponsive(self, leg: Leg) -> None:
        """§13.3.1.4: the leg never ACKed a 2xx we relayed to it; end the session."""
        self._teardown([reason_header(408, "No ACK")],
                       "ended" if self.connected_once else "failed")

    def _leg_gone(self, leg: Leg, reason: str | None) -> None:
        """The far end of C{leg} hung up (or its dialog vanished): tear the rest down."""
        if leg.over:
            return
        was_closing = leg.state == "closing"
        self.relay.close(leg)
        leg.needs_answer = False
        leg.dialog.terminate()
        leg.state = "terminated"
        if was_closing or self.phase == CLOSING:
            self._check_done()
            return
        if self.phase == ENDED:
            return
        if leg is self.caller and self.phase in (TRANSFERRING, SWAPPING):
            return  # A leaves while we move B to X anyway
        self._teardown([("Reason", reason)] if reason else [],
                       "ended" if self.connected_once else "failed")

    # Ending

    def hangup(self, why: str = "hangup") -> None:
        """DELETE, replacement, watchdog or shutdown: CANCEL what rings, BYE what is up."""
        self._teardown([reason_header(200, why)], "ended" if self.connected_once else "failed")

    def _leg_failed(self, leg: Leg, status: int, reason: str) -> None:
        """C{leg}'s INVITE did not give a usable call: what that means depends on who."""
        if self.phase == CLOSING:
            self._check_done()
            return
        if self.phase == ENDED:
            return
        if leg is self.target:
            self.target = None
            if self.caller.over:  # A hung up while X was ringing: B has no one left
                self._teardown([reason_header(status, reason)], "ended")
            else:
                self.phase = CONNECTED
                self.call.set_state("connected")
            return
        self._teardown([reason_header(status, reason)],
                       "ended" if self.connected_once else "failed")

    def _teardown(self, headers: list, outcome: str) -> None:
        if self.phase in (CLOSING, ENDED):
            return
        self.phase = CLOSING
        self.outcome = outcome
        for leg in list(self.legs):
            self._close(leg, *headers)
        self._check_done()

    def _close(self, leg: Leg, *headers) -> None:
        """CANCEL the leg if it still rings, else (ACK if need be and) BYE it."""
        if leg.over or leg.state == "closing":
            return
        self.relay.close(leg)
        if leg.dialog is None:
            if leg.outgoing is None:
                leg.state = "terminated"
            else:
                self._cancel(leg)
            return
        leg.state = "closing"
        if leg.needs_answer:  # §13.2.2.4: a valid answer in the ACK, then BYE
            leg.needs_answer = False
            leg.dialog.ack(leg.face.refusal(leg.remote_sdp or b""), [CONTENT_TYPE_SDP])
        bye = leg.dialog.request("BYE", list(headers))
        bye.deferred.addBoth(lambda _: self._leg_over(leg))

    def _leg_over(self, leg: Leg) -> None:
        if leg.dialog is not None:
            leg.dialog.terminate()
        leg.state = "terminated"
        self._check_done()

    def _check_done(self) -> None:
        if self.phase == CLOSING and all(leg.over for leg in self.legs):
            self._finish()

    def _finish(self) -> None:
        self.phase = ENDED
        for leg in self.legs:
            self._stop_timer(leg)
        self.call.finish("failed" if self.outcome == "failed" else "ended")
        self.on_end(self.call)
        self.relay.detach()  # it holds our bound methods: let go (no cycle outlives the call)

    def _stop_timer(self, leg: Leg) -> None:
        if leg.timer is not None and leg.timer.active():
            leg.timer.cancel()
        leg.timer = None

    def _dialogs(self) -> list:
        return [info for info in (leg.info() for leg in self.legs) if info is not None]

