"""
A request we send and everything that follows from it: digest challenges answered
(RFC 3261 §22.2), CANCEL (§9.1), the dialog its 2xx creates, and extra forked 2xx
ACKed and BYEd (§13.2.2.4).
"""

from __future__ import annotations

from twisted.internet import defer

from sipxcc.sip.digest import Challenge, authorization, make_cnonce
from sipxcc.sip.message import Request, Response, make_branch
from sipxcc.sip.transaction import T1, Timeout, TransportFailure

MAX_AUTH_TRIES = 2
CHALLENGE_HEADERS = {401: ("WWW-Authenticate", "Authorization"),
                     407: ("Proxy-Authenticate", "Proxy-Authorization")}


class RequestFailed(Exception):
    """The request got no usable final response; C{status} is the code to report."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class OutgoingRequest:
    """
    Sends C{request}, answers challenges with C{credentials} at most twice, and fires
    C{deferred} with the final response (C{final_status} keeps its code). C{on_response}
    sees every response, challenges included, in arrival order. For an INVITE, C{dialog}
    is set on 2xx.
    """

    def __init__(self, ua, request: Request, target, credentials=None, on_response=None,
                 dialog=None):
        self.ua = ua
        self.request = request
        self.target = target
        self.credentials = credentials
        self.on_response = on_response
        self.dialog = dialog
        self.deferred: defer.Deferred = defer.Deferred()
        self.txn = None
        self.tries = 0
        self.provisional = False
        self.final_status: int | None = None  # set once the request has its final answer
        self.cancel_pending = False
        self.cancelled = False
        self.nc: dict[str, int] = {}
        self.challenges: dict[str, Challenge] = {}
        self.seen_provisional: set[tuple] = set()

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def start(self) -> OutgoingRequest:
        if self.dialog is not None and self.credentials is not None:
            self._preauthorize()
        self._send()
        return self

    def _send(self) -> None:
        self.provisional = False
        self.seen_provisional = set()
        self.txn = self.ua.transactions.client(self.request, self.target, self._response,
                                               self._failure)

    def _preauthorize(self) -> None:
        """Reuse the dialog's last challenge, so an authenticating proxy need not re-ask."""
        for header, challenge in self.dialog.challenges.items():
            value = self._answer(challenge)
            if value is not None:
                self.request.headers.set(header, value)

    def _answer(self, challenge: Challenge) -> str | None:
        counts = self.dialog.nonce_counts if self.dialog is not None else self.nc
        count = counts[challenge.nonce] = counts.get(challenge.nonce, 0) + 1
        return authorization(challenge, self.credentials, self.request.method,
                             self.request.uri, count, make_cnonce())

    def _response(self, response: Response) -> None:
        status = response.status
        if self.final_status is not None:
            if 200 <= status < 300 and self.request.method == "INVITE":
                self._extra_2xx(response)
            return
        if status < 200:
            key = (status, response.to_tag, response.headers.get("RSeq"))
            if key in self.seen_provisional:
                return  # a duplicate 1xx (retransmitted or duplicated by the network)
            self.seen_provisional.add(key)
        if self.on_response is not None:
            self.on_response(response)
        if status < 200:
            self.provisional = True
            if self.cancel_pending:
                self._send_cancel()
            return
        if status in CHALLENGE_HEADERS and self._retry_with_credentials(response):
            return
        self.final_status = status
        self.on_response = None  # the TU has its final answer: let go of it (no cycle)
        if 200 <= status < 300 and self.request.method == "INVITE":
            if self.dialog is None:
                self.dialog = self.ua.create_dialog(self.request, response, self.credentials)
                # the proxy's challenge answers for the dialog's later requests too (§22.3)
                self.dialog.challenges.update(self.challenges)
                self.dialog.nonce_counts.update(self.nc)
            else:
                self.dialog.invite_seq = self.request.cseq[0]
                self.dialog.refresh_target(response)
        self._settled()
        self.deferred.callback(response)

    def _settled(self) -> None:
        """Final: drop the retry state (an INVITE's stays reachable for Timer M's 32 s)."""
        self.challenges = self.nc = self.seen_provisional = None
        self.request.headers.cache.clear()  # parsed again only if a forked 2xx comes

    def _retry_with_credentials(self, response: Response) -> bool:
        """§22.2: answer a 401/407 (stale=true does not count as a failed try)."""
        if self.credentials is None or self.cancelled:
            return False
        challenge_header, answer_header = CHALLENGE_HEADERS[response.status]
        value = None
        for raw in response.headers.values(challenge_header):
            try:
                challenge = Challenge.parse(raw)
            except ValueError:
                continue
            value = self._answer(challenge)
            if value is not None:
                break
        if value is None:
            return False
        if not challenge.stale:
            self.tries += 1
        if self.tries > MAX_AUTH_TRIES:
            return False
        self.challenges[answer_header] = challenge
        if self.dialog is not None:
            self.dialog.challenges[answer_header] = challenge
        self.request = self._next_request(answer_header, value)
        self._send()
        return True

    def _next_request(self, header: str, value: str) -> Request:
        """The same request with credentials, a new branch and the next CSeq (§22.2)."""
        old = self.request
        request = Request(old.method, old.uri)
        seq = old.cseq[0] + 1
        if self.dialog is not None:
            self.dialog.local_seq = max(self.dialog.local_seq + 1, seq)
            seq = self.dialog.local_seq
        for name, raw in old.headers.items():
            if name == "Via":
                raw = self.ua.via(make_branch())
            elif name == "CSeq":
                raw = f"{seq} {old.method}"
            elif name == header:
                continue
            request.headers.add(name, raw)
        request.headers.add(header, value)
        request.body = old.body
        return request

    def _failure(self, exc: Exception) -> None:
        if self.final_status is not None:
            return
        status, reason = (408, "Request Timeout") if isinstance(exc, Timeout) else \
            (503, "Service Unavailable")
        if not isinstance(exc, (Timeout, TransportFailure)):
            status, reason = 500, "Internal Error"
        self.final_status = status
        self.on_response = None
        self._settled()
        self.deferred.errback(RequestFailed(status, reason))

    def cancel(self) -> None:
        """§9.1: CANCEL once a provisional response has arrived (else when one does)."""
        if self.final_status is not None or self.cancelled or self.request.method != "INVITE":
            return
        if self.provisional:
            self._send_cancel()
        else:
            self.cancel_pending = True

    def _send_cancel(self) -> None:
        self.cancelled = True
        self.cancel_pending = False
        req = self.request
        cancel = Request("CANCEL", req.uri)
        cancel.headers.add("Via", req.headers.get("Via"))
        for route in req.headers.values("Route"):
            cancel.headers.add("Route", route)
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, req.headers.get(name))
        cancel.headers.add("CSeq", f"{req.cseq[0]} CANCEL")
        cancel.headers.add("Max-Forwards", "70")
        self.ua.transactions.client(cancel, self.target, lambda r: None, lambda e: None)
        self.ua.transactions.timers.call_later(64 * T1, self._cancel_unanswered)

    def _cancel_unanswered(self) -> None:
        """§9.1: no final response 64*T1 after CANCEL: consider the INVITE cancelled."""
        if self.final_status is None:
            self.txn._terminate()
            self._failure(Timeout("INVITE not ended by CANCEL"))

    def _extra_2xx(self, response: Response) -> None:
        """A 2xx retransmission is ACKed again; a 2xx from another fork is ACKed and BYEd."""
        if self.dialog is not None and response.to_tag == self.dialog.remote_tag:
            self.dialog.retransmitted_2xx(response)
            return
        known = self.ua.dialogs.get((self.request.call_id, self.request.from_tag,
                                     response.to_tag))
        if known is not None:
            known.retransmitted_2xx(response)
            return
        fork = self.ua.create_dialog(self.request, response, self.credentials)
        fork.ack()
        fork.request("BYE").deferred.addErrback(lambda f: None)
        fork.terminate()
