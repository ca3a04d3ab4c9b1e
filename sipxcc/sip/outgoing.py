"""
A request we send and everything that follows from it: digest challenges answered
(RFC 3261 §22.2), CANCEL (§9.1), the dialog its 2xx creates, and extra forked 2xx
ACKed and BYEd (§13.2.2.4).

The credentials are a sipX user's SIP HA1, and any response to a nonce a stranger chose
lets it guess that user's password offline. So a challenge is answered only when all
of these hold, and is otherwise the request's final response (RFC 3261 §22.2, §8.1.3.5):

- the request went to the configured proxy (out of dialog, or in a dialog whose route
  set starts at the proxy), never straight to a far end's Contact;
- the 401/407 came from the proxy's address and port, on the request's transport;
- its realm is C{sip.realm};
- this request has not already answered a challenge of that realm (a proxy that has
  accepted our answer and relays a far end's 401/407 of the same realm gets nothing),
  except once for C{stale=true} on credentials this request carried (RFC 7616 §3.3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer

from sipxcc.logs import logger
from sipxcc.sip.digest import Challenge, DigestCredentials, authorization, make_cnonce
from sipxcc.sip.message import Request, Response, make_branch
from sipxcc.sip.transaction import T1, ClientTransaction, Timeout, TransportFailure
from sipxcc.sip.transport import Source, Target
from sipxcc.timers import TimerHandle

if TYPE_CHECKING:
    from sipxcc.sip.dialog import Dialog

log = logger(__name__)

MAX_STALE_RETRIES = 1
"""Re-sends for C{stale=true} per request, on top of one answer per realm."""
CHALLENGE_HEADERS = {401: ("WWW-Authenticate", "Authorization"),
                     407: ("Proxy-Authenticate", "Proxy-Authorization")}


class RequestFailed(Exception):
    """The request got no usable final response; C{status} is the code to report."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _ours(request: Request, name: str) -> str:
    """A header every request we build has (Via, From, To, Call-ID)."""
    value = request.headers.get(name)
    assert value is not None
    return value


class RequestCore(Protocol):
    """What an L{OutgoingRequest} needs of the UA core (L{sipxcc.sip.useragent.UserAgent})."""

    @property
    def realm(self) -> str | None:
        """The digest realm we answer (the proxy's); None: answer none."""

    @property
    def response_source(self) -> Source | None:
        """Where the response being delivered came from."""

    def is_proxy(self, host: str, port: int) -> bool: ...

    def via(self, branch: str, transport: str | None = None) -> str: ...

    def client_transaction(self, request: Request, target: Target,
                           on_response: Callable[[Response], None],
                           on_failure: Callable[[Exception], None],
                           data: bytes | None = None) -> ClientTransaction: ...

    def fit_transport(self, request: Request, target: Target) -> tuple[Target, bytes]: ...

    def call_later(self, delay: float, function: Callable[[], None]) -> TimerHandle: ...

    def create_dialog(self, request: Request, response: Response,
                      credentials: DigestCredentials | None = None) -> Dialog: ...


class OutgoingRequest:
    """
    Sends C{request}, answers the proxy's challenges with C{credentials} (at most once
    per realm, plus one stale retry; see the module docstring), and fires
    C{deferred} with the final response (C{final_status} keeps its code). C{on_response}
    sees every response, challenges included, in arrival order. For an INVITE, C{dialog}
    is set on 2xx.
    """

    def __init__(self, ua: RequestCore, request: Request, target: Target,
                 credentials: DigestCredentials | None = None,
                 on_response: Callable[[Response], None] | None = None,
                 dialog: Dialog | None = None):
        self.ua = ua
        self.request = request
        self.target = target
        self.credentials = credentials
        self.on_response = on_response
        self.dialog = dialog
        self.deferred: defer.Deferred[Response] = defer.Deferred()
        self.txn: ClientTransaction | None = None
        self.provisional = False
        self.final_status: int | None = None  # set once the request has its final answer
        self.cancel_pending = False
        self.cancelled = False
        # the retry state, None once the request is final (see _settled)
        self.nc: dict[str, int] | None = {}
        self.challenges: dict[str, Challenge] | None = {}
        self.answered: set[str] | None = set()  # realms whose credentials this request carried
        self.stale_retries = 0
        self.seen_provisional: set[tuple[int, str | None, str | None]] | None = set()
        self.moved_to_tcp = False  # by its size, from UDP (RFC 3261 §18.1.1)

    @property
    def call_id(self) -> str | None:
        return self.request.call_id

    def start(self) -> OutgoingRequest:
        if self.dialog is not None and self.credentials is not None \
                and self.ua.is_proxy(self.target.host, self.target.port):
            self._preauthorize()
        self._send()
        return self

    def _send(self) -> None:
        # measured on every send: a challenge's answer makes the request larger (§18.1.1)
        target, data = self.ua.fit_transport(self.request, self.target)
        if target.transport != self.target.transport:
            self.moved_to_tcp = True
        self.target = target
        self._start_transaction(data)

    def _start_transaction(self, data: bytes) -> None:
        self.provisional = False
        self.seen_provisional = set()
        self.txn = self.ua.client_transaction(self.request, self.target, self._response,
                                              self._failure, data)

    def _preauthorize(self) -> None:
        """Reuse the dialog's last challenge, so an authenticating proxy need not re-ask."""
        assert self.dialog is not None and self.answered is not None
        for header, challenge in self.dialog.challenges.items():
            if challenge.realm != self.ua.realm:
                continue
            value = self._answer(challenge)
            if value is not None:
                self.request.headers.set(header, value)
                self.answered.add(challenge.realm)

    def _answer(self, challenge: Challenge) -> str | None:
        counts = self.dialog.nonce_counts if self.dialog is not None else self.nc
        assert counts is not None and self.credentials is not None  # not final yet
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
            assert self.seen_provisional is not None  # not final yet
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
                assert self.challenges is not None and self.nc is not None  # not settled yet
                self.dialog.challenges.update(self.challenges)
                self.dialog.nonce_counts.update(self.nc)
            else:
                self.dialog.invite_seq = self.request.cseq[0]
                self.dialog.refresh_target(response)
        self._settled()
        self.deferred.callback(response)

    def _settled(self) -> None:
        """Final: drop the retry state (an INVITE's stays reachable for Timer M's 32 s)."""
        self.challenges = self.nc = self.seen_provisional = self.answered = None
        self.request.headers.cache.clear()  # parsed again only if a forked 2xx comes

    def _retry_with_credentials(self, response: Response) -> bool:
        """§22.2: answer a 401/407 from the proxy, in our realm, once (see the module doc)."""
        if self.credentials is None or self.cancelled:
            return False
        assert self.answered is not None and self.challenges is not None  # not final yet
        challenge_header, answer_header = CHALLENGE_HEADERS[response.status]
        refused = self._refusal()
        challenge: Challenge | None = None
        value: str | None = None
        if refused is None:
            realm = self.ua.realm
            offered = []
            for raw in response.headers.values(challenge_header):
                try:
                    parsed = Challenge.parse(raw)
                except ValueError:
                    continue
                offered.append(parsed.realm)
                if parsed.realm == realm:
                    value = self._answer(parsed)
                    if value is not None:
                        challenge = parsed
                        break
            if challenge is None:
                refused = (f"no usable challenge for realm {realm!r} (offered: "
                           f"{', '.join(repr(r[:64]) for r in offered[:4]) or 'none'})")
            elif challenge.realm in self.answered:
                if not challenge.stale or self.stale_retries >= MAX_STALE_RETRIES:
                    refused = f"realm {realm!r} was answered already"
                else:
                    self.stale_retries += 1
        if refused is not None or challenge is None or value is None:
            self._log_refusal(response, refused or "no challenge")
            return False
        self.answered.add(challenge.realm)
        self.challenges[answer_header] = challenge
        if self.dialog is not None:
            self.dialog.challenges[answer_header] = challenge
        self.request = self._next_request(answer_header, value)
        self._send()
        return True

    def _refusal(self) -> str | None:
        """Why the challenge now at hand must not be answered at all, or None."""
        if not self.ua.is_proxy(self.target.host, self.target.port):
            return "the request did not go through the proxy"
        source = self.ua.response_source
        if source is None or source.transport != self.target.transport \
                or not self.ua.is_proxy(source.host, source.port):
            return "it did not come from the proxy"
        return None

    def _log_refusal(self, response: Response, why: str) -> None:
        source = self.ua.response_source
        where = f"{source.transport} {source.host}:{source.port}" if source else "?"
        log.warn("not answering the {status} to {method} (Call-ID {call_id!r}) from {where}: "
                 "{why}", status=response.status, method=self.request.method,
                 call_id=(self.request.call_id or "")[:80], where=where, why=why)

    def _next_request(self, header: str, value: str) -> Request:
        """The same request with credentials, a new branch and the next CSeq (§22.2)."""
        old = self.request
        request = Request(old.method, old.uri)
        seq = old.cseq[0] + 1
        if self.dialog is not None:
            self.dialog.local_seq = max(self.dialog.local_seq + 1, seq)
            seq = self.dialog.local_seq
        for name, raw in old.headers.items():
            if name == "Via":  # on the transport the request went over (§18.1.1 may move it)
                raw = self.ua.via(make_branch(), self.target.transport)
            elif name == "CSeq":
                raw = f"{seq} {old.method}"
            elif name == header:
                continue
            request.headers.add(name, raw)
        request.headers.add(header, value)
        request.body = old.body
        return request

    def _failure(self, exc: Exception) -> None:
        """The transaction's end without a final response: Timer B/F, or the transport."""
        if self.final_status is not None:
            return
        if isinstance(exc, TransportFailure) and exc.refused and self.moved_to_tcp:
            self._back_to_udp()
            return
        status, reason = (408, "Request Timeout") if isinstance(exc, Timeout) else \
            (503, "Service Unavailable")
        self.final_status = status
        self.on_response = None
        self._settled()
        self.deferred.errback(RequestFailed(status, reason))

    def _back_to_udp(self) -> None:
        """
        RFC 3261 §18.1.1: a request sent over TCP only for its size, whose connection the
        next hop refused (a reset), is sent again over UDP (for peers without TCP), once,
        with a UDP Via and a new branch (a new transaction). It may answer 513.
        """
        self.moved_to_tcp = False
        self.target = self.target._replace(transport="UDP")
        old = self.request
        request = Request(old.method, old.uri)
        for name, raw in old.headers.items():
            if name == "Via":
                raw = self.ua.via(make_branch(), "UDP")
            request.headers.add(name, raw)
        request.body = old.body
        self.request = request
        self._start_transaction(request.to_bytes())

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
        cancel.headers.add("Via", _ours(req, "Via"))
        for route in req.headers.values("Route"):
            cancel.headers.add("Route", route)
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, _ours(req, name))
        cancel.headers.add("CSeq", f"{req.cseq[0]} CANCEL")
        cancel.headers.add("Max-Forwards", "70")
        self.ua.client_transaction(cancel, self.target, lambda r: None, lambda e: None)
        self.ua.call_later(64 * T1, self._cancel_unanswered)

    def _cancel_unanswered(self) -> None:
        """§9.1: no final response 64*T1 after CANCEL: consider the INVITE cancelled."""
        if self.final_status is None:
            if self.txn is not None:
                self.txn.terminate()
            self._failure(Timeout("INVITE not ended by CANCEL"))

    def _extra_2xx(self, response: Response) -> None:
        """A 2xx retransmission is ACKed again; a 2xx from another fork is ACKed and BYEd
        (the fork's dialog ends at once, so a resent one is ACKed and BYEd again)."""
        assert self.dialog is not None  # the first 2xx made it
        if response.to_tag == self.dialog.remote_tag:
            self.dialog.retransmitted_2xx(response)
            return
        fork = self.ua.create_dialog(self.request, response, self.credentials)
        fork.ack()
        fork.request("BYE").deferred.addErrback(lambda f: None)
        fork.terminate()
