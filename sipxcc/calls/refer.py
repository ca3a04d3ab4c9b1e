"""
The REFER flow (RFC 3515, RFC 5589): ring the calling user, and once the phone answers,
ask it to call the called user; report every response and NOTIFY sipfrag, and hang up
when the transfer is over.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure

from sipxcc.calls.call import Call
from sipxcc.calls.context import (
    FlowContext,
    calling_user_invite,
    credentials_for,
    reason_header,
    record_failure,
    record_response,
    record_sipfrag,
    sip_uri,
)
from sipxcc.calls.reasons import ending_reason
from sipxcc.logs import logger
from sipxcc.statemachine import Table, Transition

log = logger(__name__)

#: seconds to wait for the transfer's final NOTIFY after the REFER was accepted
#: (64*T1, the lifetime of a non-INVITE transaction: RFC 3261 §17.1.2.2)
REFER_LIMIT = 32


class State(enum.Enum):
    """A REFER call's states; the value is what the status document shows."""

    INVITING = "calling"
    RINGING = "ringing"
    REFERRING = "connected"
    TRANSFERRING = "transferring"
    CANCELLING = "cancelling"
    HANGING_UP = "hanging-up"
    ENDED = "ended"
    FAILED = "failed"


class Event(enum.Enum):
    """What happens to a REFER call."""

    PROVISIONAL = "1xx (not 100) to the INVITE"
    ANSWERED = "2xx to the INVITE"
    REJECTED = "INVITE failed (3xx-6xx, timeout, transport)"
    TIMEOUT = "ring timeout, or the transfer's time limit"
    HANGUP = "DELETE, replacement, watchdog, shutdown"
    REFER_ACCEPTED = "2xx to the REFER"
    REFER_REFUSED = "REFER failed"
    TRANSFER_OVER = "NOTIFY: final sipfrag or subscription terminated"
    BYE_RECEIVED = "BYE from the phone"
    BYE_DONE = "our BYE answered or failed"


_S, _E, _T = State, Event, Transition
_RINGING = (_S.INVITING, _S.RINGING)
_UP = (_S.REFERRING, _S.TRANSFERRING)

#: Every (state, event) pair of a REFER call: a transition, an explicit no-op, or (absent
#: from both) a refusal, for events that cannot happen in that state.
TABLE: Table[State, Event] = Table(
    "refer",
    _S.INVITING,
    {
        (_S.INVITING, _E.PROVISIONAL): _T(_S.RINGING),
        **{(s, _E.ANSWERED): _T(_S.REFERRING, "_refer") for s in _RINGING},
        **{(s, _E.REJECTED): _T(_S.FAILED, "_finish") for s in (*_RINGING, _S.CANCELLING)},
        **{(s, _E.TIMEOUT): _T(_S.CANCELLING, "_cancel") for s in _RINGING},
        **{(s, _E.HANGUP): _T(_S.CANCELLING, "_cancel") for s in _RINGING},
        # answered as we cancelled: RFC 3261 §15 says BYE it
        (_S.CANCELLING, _E.ANSWERED): _T(_S.HANGING_UP, "_bye_cancelled"),
        (_S.REFERRING, _E.REFER_ACCEPTED): _T(_S.TRANSFERRING, "_await_transfer"),
        (_S.REFERRING, _E.REFER_REFUSED): _T(_S.HANGING_UP, "_bye"),
        (_S.TRANSFERRING, _E.TIMEOUT): _T(_S.HANGING_UP, "_bye"),
        **{(s, _E.TRANSFER_OVER): _T(_S.HANGING_UP, "_bye") for s in _UP},
        **{(s, _E.HANGUP): _T(_S.HANGING_UP, "_bye") for s in _UP},
        **{(s, _E.BYE_RECEIVED): _T(_S.ENDED, "_dialog_over") for s in (*_UP, _S.HANGING_UP)},
        (_S.HANGING_UP, _E.BYE_DONE): _T(_S.ENDED, "_dialog_over"),
    },
    ignores=[
        (_S.RINGING, _E.PROVISIONAL),
        *((_S.CANCELLING, e) for e in (_E.PROVISIONAL, _E.TIMEOUT, _E.HANGUP)),
        (_S.REFERRING, _E.TIMEOUT),  # the ring timer is stopped at the answer
        # the one REFER's answer can only come once
        *((_S.TRANSFERRING, e) for e in (_E.REFER_ACCEPTED, _E.REFER_REFUSED)),
        # hanging up: what the REFER and its NOTIFYs still bring changes nothing
        *((_S.HANGING_UP, e) for e in (_E.TIMEOUT, _E.HANGUP, _E.REFER_ACCEPTED,
                                        _E.REFER_REFUSED, _E.TRANSFER_OVER)),
        # over: late answers, our BYE's answer after the phone's BYE, a second hangup
        *((s, e) for s in (_S.ENDED, _S.FAILED) for e in Event),
    ],
    final=(_S.ENDED, _S.FAILED),
)


class ReferFlow:
    """
    One REFER-mode call, driven by L{TABLE}: each SIP event is turned into an L{Event},
    the table gives the next state and the action (a method of this class) run on the way.
    """

    def __init__(self, ctx: FlowContext, call: Call, on_end: Callable[[Call], None]):
        self.ctx = ctx
        self.call = call
        self.on_end = on_end
        self.state = State.INVITING
        self.outgoing: Any = None
        self.dialog: Any = None
        self.timer: Any = None

    def _fire(self, event: Event, *args: Any) -> None:
        """Take the table's transition for C{event}: new state, then its action."""
        transition = TABLE.step(self.state, event)
        if transition is None:
            return
        self.state = transition.target
        self.call.set_state(transition.target.value)
        if transition.action is not None:
            getattr(self, transition.action)(*args)

    # What the SIP side tells us, as events

    def start(self) -> None:
        request = self.call.request
        invite = calling_user_invite(self.ctx, self.call)
        self.outgoing = self.ctx.ua.invite(invite, credentials_for(request.agent),
                                           self._invite_response)
        self.outgoing.deferred.addCallbacks(self._invite_final, self._invite_failed)
        self.timer = self.ctx.timers.call_later(request.timeout, self._fire, Event.TIMEOUT)

    def _invite_response(self, response: Any) -> None:
        record_response(self.ctx, self.call, response)
        if 100 < response.status < 200:
            self._fire(Event.PROVISIONAL)

    def _invite_final(self, response: Any) -> None:
        if response.status >= 300:
            self._fire(Event.REJECTED)
        else:
            self._fire(Event.ANSWERED)

    def _invite_failed(self, failure: Failure) -> None:
        record_failure(self.ctx, self.call, self.outgoing.call_id, "INVITE", failure)
        self._fire(Event.REJECTED)

    def _refer_final(self, response: Any) -> None:
        record_response(self.ctx, self.call, response, "REFER")
        if response.status >= 300:
            self._fire(Event.REFER_REFUSED, reason_header(response.status, response.reason))
        else:
            self._fire(Event.REFER_ACCEPTED)

    def _refer_failed(self, failure: Failure) -> None:
        status, _ = record_failure(self.ctx, self.call, self.dialog.call_id, "REFER", failure)
        self._fire(Event.REFER_REFUSED, reason_header(status, "REFER failed"))

    def _in_dialog(self, request: Any, txn: Any) -> None:
        method = request.method
        if txn is None:  # an ACK: nothing to do in this flow
            return
        if method == "NOTIFY":
            txn.respond(200, "OK")
            self._notify(request)
        elif method == "BYE":
            txn.respond(200, "OK")
            self._fire(Event.BYE_RECEIVED)
        elif method in ("OPTIONS", "INFO"):
            txn.respond(200, "OK")
        elif method in ("INVITE", "UPDATE"):
            txn.respond(488, "Not Acceptable Here")
        else:
            txn.respond(405, "Method Not Allowed", [("Allow", "BYE, NOTIFY, OPTIONS, INFO")])

    def _notify(self, request: Any) -> None:
        """Record the sipfrag; a final one, or the subscription's end, ends the transfer."""
        frag = None
        if request.body:
            frag = record_sipfrag(self.ctx, self.call, request.call_id, request.body)
        sub_state = (request.headers.get("Subscription-State") or "").strip().lower()
        if frag is not None and frag[0] >= 200:
            status, reason = frag
            if status < 300:
                self._fire(Event.TRANSFER_OVER, ("Reason", 'SIP;cause=200;text="Call transferred"'))
            else:
                self._fire(Event.TRANSFER_OVER, ending_reason(status, reason))
        elif sub_state.startswith("terminated"):
            self._fire(Event.TRANSFER_OVER,
                       ("Reason", 'SIP;cause=200;text="Subscription terminated"'))

    def hangup(self, why: str) -> None:
        """DELETE, replacement, watchdog or shutdown: CANCEL before answer, BYE after."""
        self._fire(Event.HANGUP, ("Reason", f'SIP;cause=200;text="{why}"'))

    # Actions named in the table

    def _refer(self) -> None:
        """The phone answered: ACK, and ask it to call the called user."""
        self._answered()
        request = self.call.request
        # the PIN is a URI header value: "#" and anything else outside hvalue %-escaped
        headers = {"X-ConfPin": request.confpin} if request.confpin else None
        refer_to = sip_uri(request.called, headers=headers)
        refer = self.dialog.request("REFER", [("Refer-To", f"<{refer_to}>"),
                                              ("Referred-By", f"<{sip_uri(request.calling)}>")])
        refer.deferred.addCallbacks(self._refer_final, self._refer_failed)

    def _bye_cancelled(self) -> None:
        self._answered()
        self._bye(("Reason", 'SIP;cause=487;text="Call cancelled"'))

    def _answered(self) -> None:
        self._stop_timer()
        self.dialog = self.outgoing.dialog
        self.dialog.on_request = self._in_dialog
        self.dialog.ack()

    def _cancel(self, _reason: object = None) -> None:
        self.outgoing.cancel()

    def _await_transfer(self) -> None:
        self.timer = self.ctx.timers.call_later(
            REFER_LIMIT, self._fire, Event.TIMEOUT, reason_header(408, "Transfer timed out"))

    def _bye(self, reason: tuple[str, str]) -> None:
        self._stop_timer()
        bye = self.dialog.request("BYE", [reason])
        bye.deferred.addBoth(lambda _: self._fire(Event.BYE_DONE))

    def _dialog_over(self) -> None:
        self.dialog.terminate()
        self._finish()

    def _finish(self) -> None:
        self._stop_timer()
        self.call.finish(self.state.value)
        self.on_end(self.call)

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
