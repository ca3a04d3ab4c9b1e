"""
The REFER flow (SPEC §4, RFC 3515, RFC 5589): ring the calling user, and once the phone
answers, ask it to call the called user; report every response and NOTIFY sipfrag.
"""

from __future__ import annotations

import enum

from sipxcc.calls.leg import (
    FlowContext,
    credentials_for,
    first_invite,
    reason_header,
    record_failure,
    record_response,
    record_sipfrag,
    sip_uri,
)
from sipxcc.logs import logger
from sipxcc.sip.outgoing import RequestFailed

log = logger(__name__)

#: seconds to wait for the transfer's final NOTIFY after the REFER was accepted (anchor §3.4)
REFER_LIMIT = 32


class State(enum.Enum):
    INVITING = "calling"
    RINGING = "ringing"
    REFERRING = "connected"
    TRANSFERRING = "transferring"
    CANCELLING = "cancelling"
    HANGING_UP = "hanging-up"
    ENDED = "ended"
    FAILED = "failed"


class ReferFlow:
    """
    One REFER-mode call. Transitions (state, event → state):

      INVITING/RINGING  --1xx--> RINGING        --timeout/hangup--> CANCELLING
      INVITING/RINGING  --2xx--> REFERRING (ACK, REFER)   --3xx-6xx/timeout--> FAILED
      REFERRING         --2xx to REFER--> TRANSFERRING (32 s limit)
      REFERRING         --REFER failed--> HANGING_UP (BYE)
      TRANSFERRING      --final sipfrag / terminated / limit--> HANGING_UP (BYE)
      any dialog state  --BYE from phone--> ENDED;  HANGING_UP --BYE answered--> ENDED
    """

    def __init__(self, ctx: FlowContext, call, on_end):
        self.ctx = ctx
        self.call = call
        self.on_end = on_end
        self.state = State.INVITING
        self.outgoing = None
        self.dialog = None
        self.timer = None
        self.outcome = "ended"

    def _set(self, state: State) -> None:
        self.state = state
        self.call.set_state(state.value)

    def start(self) -> None:
        request = self.call.request
        invite = first_invite(self.ctx, self.call, request.calling,
                              forwarding_allowed=request.forwarding_allowed,
                              subject=request.subject, auto_answer=request.auto_answer)
        self.outgoing = self.ctx.ua.invite(invite, credentials_for(request.agent),
                                           self._invite_response)
        self.outgoing.deferred.addCallbacks(self._invite_final, self._invite_failed)
        self.timer = self.ctx.timers.call_later(request.timeout, self._ring_timeout)

    def _invite_response(self, response) -> None:
        record_response(self.ctx, self.call, response)
        if response.status < 200 and response.status > 100 and self.state is State.INVITING:
            self._set(State.RINGING)

    def _invite_final(self, response) -> None:
        status = response.status
        if status >= 300:
            self._finish("failed")
            return
        self._stop_timer()
        self.dialog = self.outgoing.dialog
        self.dialog.on_request = self._in_dialog
        self.dialog.ack()
        if self.state is State.CANCELLING:  # answered as we cancelled: §15 says BYE it
            self._bye(("Reason", 'SIP;cause=487;text="Call cancelled"'))
            return
        self._set(State.REFERRING)
        request = self.call.request
        # the PIN is a URI header value: "#" and anything else outside hvalue %-escaped
        headers = {"X-ConfPin": request.confpin} if request.confpin else None
        refer_to = sip_uri(request.called, headers=headers)
        refer = self.dialog.request("REFER", [("Refer-To", f"<{refer_to}>"),
                                              ("Referred-By", f"<{sip_uri(request.calling)}>")])
        refer.deferred.addCallbacks(self._refer_final, self._refer_failed)

    def _invite_failed(self, failure) -> None:
        exc = failure.value
        if isinstance(exc, RequestFailed):
            record_failure(self.ctx, self.call, self.outgoing.call_id, "INVITE", exc.status,
                           exc.reason)
        else:
            log.failure("INVITE of call {id} failed", failure, id=self.call.id)
        self._finish("failed")

    def _ring_timeout(self) -> None:
        self.timer = None
        if self.state in (State.INVITING, State.RINGING):
            self._set(State.CANCELLING)
            self.outgoing.cancel()
        elif self.state is State.TRANSFERRING:
            self._bye(reason_header(408, "Transfer timed out"))

    def _refer_final(self, response) -> None:
        record_response(self.ctx, self.call, response, "REFER")
        if self.state is not State.REFERRING:
            return
        if response.status >= 300:
            self._bye(reason_header(response.status, response.reason))
            return
        self._set(State.TRANSFERRING)
        self.timer = self.ctx.timers.call_later(REFER_LIMIT, self._ring_timeout)

    def _refer_failed(self, failure) -> None:
        exc = failure.value
        status = getattr(exc, "status", 500)
        record_failure(self.ctx, self.call, self.dialog.call_id, "REFER", status,
                       getattr(exc, "reason", "Internal Error"))
        if self.state is State.REFERRING:
            self._bye(reason_header(status, "REFER failed"))

    def _in_dialog(self, request, txn) -> None:
        method = request.method
        if txn is None:  # an ACK: nothing to do in this flow
            return
        if method == "NOTIFY":
            txn.respond(200, "OK")
            self._notify(request)
        elif method == "BYE":
            txn.respond(200, "OK")
            self.outcome = "ended"
            self._dialog_over()
        elif method in ("OPTIONS", "INFO"):
            txn.respond(200, "OK")
        elif method in ("INVITE", "UPDATE"):
            txn.respond(488, "Not Acceptable Here")
        else:
            txn.respond(405, "Method Not Allowed", [("Allow", "BYE, NOTIFY, OPTIONS, INFO")])

    def _notify(self, request) -> None:
        frag = None
        if request.body:
            frag = record_sipfrag(self.ctx, self.call, request.call_id, request.body)
        sub_state = (request.headers.get("Subscription-State") or "").strip().lower()
        if self.state not in (State.TRANSFERRING, State.REFERRING):
            return
        if frag is not None and frag[0] >= 200:
            status, reason = frag
            if status < 300:
                self._bye(("Reason", 'SIP;cause=200;text="Call transferred"'))
            else:
                self._bye(reason_header(status, reason))
        elif sub_state.startswith("terminated"):
            self._bye(("Reason", 'SIP;cause=200;text="Subscription terminated"'))

    def _bye(self, reason) -> None:
        self._stop_timer()
        self._set(State.HANGING_UP)
        bye = self.dialog.request("BYE", [reason])
        bye.deferred.addBoth(lambda _: self._dialog_over())

    def _dialog_over(self) -> None:
        if self.dialog is not None:
            self.dialog.terminate()
        self._finish("ended")

    def hangup(self, why: str = "hangup") -> None:
        """DELETE, replacement, watchdog or shutdown: CANCEL before answer, BYE after."""
        if self.state in (State.INVITING, State.RINGING):
            self._set(State.CANCELLING)
            self.outgoing.cancel()
        elif self.state in (State.REFERRING, State.TRANSFERRING):
            self._bye(("Reason", f'SIP;cause=200;text="{why}"'))

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _finish(self, outcome: str) -> None:
        if self.state in (State.ENDED, State.FAILED):
            return
        self._stop_timer()
        self._set(State.FAILED if outcome == "failed" else State.ENDED)
        self.call.finish(self.state.value)
        self.on_end(self.call)
