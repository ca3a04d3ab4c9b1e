"""
What an INVITE-mode call does once its legs are up (RFC 3725, the controller stays in the
signalling path): the SDP session each leg sees from us (RFC 3264 §8: one origin per leg,
versions that only grow), and relaying in-dialog requests and their responses, failures
included, between two legs.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.failure import Failure

from sipxcc.calls.leg import Leg
from sipxcc.calls.sdp import Origin, SessionDescription, black_hole_offer
from sipxcc.sip.message import Request, Response
from sipxcc.sip.uri import quote
from sipxcc.sip.useragent import TARGET_REFRESH, RequestFailed, ServerTransaction

log = Logger()

SDP_TYPE = "application/sdp"
CONTENT_TYPE_SDP = ("Content-Type", SDP_TYPE)

#: headers of a relayed request that mean something end to end (bodies, events, why)
REQUEST_HEADERS = frozenset(("content-type", "content-disposition", "content-encoding",
                             "content-language", "event", "subscription-state", "reason",
                             "info-package", "refer-to", "referred-by", "subject", "accept"))
#: headers of a relayed response worth carrying back to the request's sender
RESPONSE_HEADERS = frozenset(("content-type", "content-disposition", "content-encoding",
                              "warning", "retry-after", "reason", "unsupported", "accept",
                              "allow"))


def is_sdp(message: Request | Response) -> bool:
    content_type = message.headers.get("Content-Type") or ""
    return bool(message.body) and content_type.split(";")[0].strip().lower() == SDP_TYPE


def _end_to_end(message: Request | Response, names: frozenset[str]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in message.headers.items() if name.lower() in names]


def _origin_address(address: str) -> tuple[str, str]:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return "IP4", "0.0.0.0"
    return ("IP6" if ip.version == 6 else "IP4"), str(ip)


class SessionFace:
    """
    The SDP session the controller presents to one leg. Whatever SDP we pass on to the leg
    gets this session's o= line: same username, session id and address every time, the
    version incremented whenever the content changes (RFC 3264 §8), so the leg sees one
    continuous session whoever is really behind it.
    """

    def __init__(self, address: str, session_id: int | None = None):
        self.session_id = session_id or random.randrange(1, 2**62)
        self.addr_type, self.address = _origin_address(address)
        self.version = 0
        self._last: list[tuple[str, str]] | None = None

    def black_hole(self) -> bytes:
        """RFC 3725 flow IV, step 1: the first offer, with no media to send anywhere."""
        body = black_hole_offer(self.session_id, 1, self.address)
        return self.present(body)

    def present(self, body: bytes) -> bytes:
        """C{body} (SDP from anyone) as the next description of this session; ValueError."""
        sdp = SessionDescription.parse(body)
        content = [line for line in sdp.lines if line[0] != "o"]
        if content != self._last:
            self.version += 1
            self._last = content
        origin = Origin("sipxcc", self.session_id, self.version, "IN", self.addr_type,
                        self.address)
        lines = [("o", str(origin)) if kind == "o" else (kind, value)
                 for kind, value in sdp.lines]
        return SessionDescription(lines).to_bytes()

    def rejected(self) -> None:
        """The last offer we presented was refused: the next one is new, whatever it holds."""
        self._last = None

    def refusal(self, offer: bytes) -> bytes:
        """
        A valid answer that rejects every stream of C{offer} (RFC 3264 §6, port 0): what an
        ACK must carry when a 2xx brought an offer we cannot use (RFC 3261 §13.2.2.4).
        """
        lines = [("v", "0"), ("o", "- 0 0 IN IP4 0.0.0.0"), ("s", "-"),
                 ("c", "IN IP4 0.0.0.0"), ("t", "0 0")]
        try:
            media = SessionDescription.parse(offer).media
        except ValueError:
            media = []
        for section in media:
            formats = " ".join(section.formats) or "0"
            lines.append(("m", f"{section.type} 0 {section.proto} {formats}"))
        return self.present(SessionDescription(lines).to_bytes())


def _no_peer(leg: Leg) -> None:
    return None


def _not_frozen() -> bool:
    return False


def _gone(leg: Leg, request: Request, txn: ServerTransaction) -> None:
    txn.respond(481, "Call/Transaction Does Not Exist")


def _stop_awaiting_ack(leg: Leg) -> Leg | None:
    """Stop retransmitting the 2xx we relayed to C{leg}; the peer whose 2xx that was, or
    None if we were not waiting for C{leg}'s ACK."""
    if leg.awaiting_ack is None:
        return None
    peer, timer = leg.awaiting_ack
    leg.awaiting_ack = None
    if timer.active():
        timer.cancel()
    peer_leg: Leg = peer
    return peer_leg


class Relay:
    """
    Relays in-dialog requests between paired legs (B2BUA style): a request from one leg
    becomes the same method on its peer's dialog, with the end-to-end headers and the
    body (SDP mapped into the peer's session), and the peer's final response — success
    or failure — goes back the same way. The flow decides pairing and BYE handling:

      peer_of(leg) -> Leg | None      None while the call is not (yet) connected
      frozen() -> bool                True while the flow itself renegotiates sessions
      on_bye(leg, request, txn)       a BYE from the leg (not answered yet)
      on_lost(leg)                    the leg's dialog turned out to be gone (481/408)
      on_no_ack(leg)                  the leg never ACKed a 2xx we relayed (§13.3.1.4)
    """

    def __init__(self, peer_of: Callable[[Leg], Leg | None],
                 frozen: Callable[[], bool],
                 on_bye: Callable[[Leg, Request, ServerTransaction], None],
                 on_lost: Callable[[Leg], None], on_no_ack: Callable[[Leg], None]):
        self.peer_of = peer_of
        self.frozen = frozen
        self.on_bye = on_bye
        self.on_lost = on_lost
        self.on_no_ack = on_no_ack

    def detach(self) -> None:
        """The call is over: forget the flow's callbacks; late requests find no peer."""
        self.peer_of = _no_peer
        self.frozen = _not_frozen
        self.on_bye = _gone
        self.on_lost = self.on_no_ack = _no_peer

    def attach(self, leg: Leg) -> None:
        leg.dialog.on_request = lambda request, txn: self.receive(leg, request, txn)

    def receive(self, leg: Leg, request: Request, txn: ServerTransaction | None) -> None:
        method = request.method
        if txn is None:
            self._ack(leg, request)
        elif method == "BYE":
            self.on_bye(leg, request, txn)
        elif method == "PRACK":  # we never send reliable provisionals (RFC 3262 §3)
            txn.respond(481, "Call/Transaction Does Not Exist")
        elif method == "INVITE" and leg.received_invite is not None:
            txn.respond(500, "Server Internal Error", [("Retry-After", "1")])  # §14.2
        else:
            peer = self.peer_of(leg)
            if peer is None or not peer.up:
                self._answer_alone(leg, request, txn)
            elif (method == "INVITE" or (method == "UPDATE" and is_sdp(request))) and (
                    self.frozen() or leg.sent_invite is not None
                    or peer.sent_invite is not None or peer.received_invite is not None):
                txn.respond(491, "Request Pending")  # §14.2, RFC 3311 §5.2
            else:
                self._forward(leg, peer, request, txn)

    def _answer_alone(self, leg: Leg, request: Request, txn: ServerTransaction) -> None:
        """No one to relay to yet: answer what we can, ask to retry what we cannot."""
        if request.method in ("OPTIONS", "INFO"):
            txn.respond(200, "OK")
        elif request.method in ("INVITE", "UPDATE"):
            txn.respond(491, "Request Pending")
        else:
            txn.respond(403, "Forbidden", [("Warning", '399 sipxcc "Call not connected"')])

    def _forward(self, leg: Leg, peer: Leg, request: Request, txn: ServerTransaction) -> None:
        method = request.method
        body = request.body
        if is_sdp(request):
            try:
                body = peer.face.present(request.body)
            except ValueError as e:
                txn.respond(400, "Bad Request", [("Warning", f"399 sipxcc {quote(str(e))}")])
                return
        headers = _end_to_end(request, REQUEST_HEADERS)
        if method == "INVITE":
            txn.respond(100, "Trying")
        out = peer.dialog.request(method, headers, body)
        if method == "INVITE":
            leg.received_invite = txn
            peer.sent_invite = out
            txn.on_cancel = out.cancel
        out.deferred.addCallbacks(
            lambda response: self._forward_response(leg, peer, request, txn, response),
            lambda failure: self._forward_failed(leg, peer, request, txn, failure))

    def _forward_response(self, leg: Leg, peer: Leg, request: Request, txn: ServerTransaction,
                          response: Response) -> None:
        method = request.method
        success = 200 <= response.status < 300
        if method == "INVITE":
            leg.received_invite = None
            peer.sent_invite = None
        body = self._sessions_answered(leg, peer, request, response, success)
        if txn.final_sent:  # the sender cancelled (or went away) meanwhile
            if method == "INVITE" and success:
                peer.dialog.ack()
            return
        headers = _end_to_end(response, RESPONSE_HEADERS)
        if success and method in TARGET_REFRESH:
            headers.append(("Contact", peer.dialog.ua.contact))
        txn.respond(response.status, response.reason, headers, body)
        if method == "INVITE" and success:
            self._await_ack(leg, peer, txn)
        elif response.status in (408, 481):  # §12.2.1.2: the peer's dialog is gone
            self.on_lost(peer)

    @staticmethod
    def _sessions_answered(leg: Leg, peer: Leg, request: Request, response: Response,
                           success: bool) -> bytes:
        """What a relayed offer's answer means for both sessions; the body to pass on."""
        if is_sdp(request):
            if success:
                leg.remote_sdp = request.body
            elif response.status >= 300:
                peer.face.rejected()
        body: bytes = response.body
        if is_sdp(response):
            if success:
                peer.remote_sdp = response.body
            try:
                body = leg.face.present(response.body)
            except ValueError:
                log.info("relaying unparseable SDP from leg {leg}", leg=peer.name)
        return body

    def _forward_failed(self, leg: Leg, peer: Leg, request: Request, txn: ServerTransaction,
                        failure: Failure) -> None:
        if request.method == "INVITE":
            leg.received_invite = None
            peer.sent_invite = None
        if is_sdp(request):
            peer.face.rejected()
        exc = failure.value
        if isinstance(exc, RequestFailed):
            txn.respond(exc.status, exc.reason)
        else:
            log.failure("relaying {method} failed", failure, method=request.method)
            txn.respond(500, "Server Internal Error")
        self.on_lost(peer)

    def _await_ack(self, leg: Leg, peer: Leg, txn: ServerTransaction) -> None:
        """§13.3.1.4: the 2xx we relayed is ours to retransmit until the sender ACKs it."""

        def no_ack() -> None:
            leg.awaiting_ack = None
            peer.dialog.ack()
            self.on_no_ack(leg)

        leg.awaiting_ack = (peer, txn.retransmit_until_ack(no_ack))

    def _ack(self, leg: Leg, ack: Request) -> None:
        """The ACK for a 2xx we relayed: ACK the peer's 2xx, with the answer if it has one."""
        peer = _stop_awaiting_ack(leg)
        if peer is None:
            return
        if peer.over or peer.dialog is None:
            return
        if is_sdp(ack):
            leg.remote_sdp = ack.body
            try:
                peer.dialog.ack(peer.face.present(ack.body), [CONTENT_TYPE_SDP])
                return
            except ValueError:
                log.info("ACK from leg {leg} carries unparseable SDP", leg=leg.name)
        peer.dialog.ack()

    def close(self, leg: Leg) -> None:
        """The leg is going away: answer what it asked us, stop waiting for its ACK."""
        txn = leg.received_invite
        if txn is not None and not txn.final_sent:
            txn.respond(487, "Request Terminated")
        leg.received_invite = None
        peer = _stop_awaiting_ack(leg)
        if peer is not None and peer.up:
            peer.dialog.ack()
