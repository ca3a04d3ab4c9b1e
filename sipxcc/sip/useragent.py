"""
The user agent core: the one interface the call flows use. It sends out-of-dialog
requests through the proxy (loose routing), matches what arrives to transactions and
dialogs, and answers what no one else claims (RFC 3261 §8.2, §12.2.2, §18.2.2).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sipxcc.hosts import host_port, is_ip
from sipxcc.logs import logger
from sipxcc.sip.dialog import TARGET_REFRESH as TARGET_REFRESH  # the flows' interface
from sipxcc.sip.dialog import Dialog, DialogId
from sipxcc.sip.digest import DigestCredentials as DigestCredentials  # the flows' interface
from sipxcc.sip.message import Request, Response, make_branch, make_call_id, make_tag, response_to
from sipxcc.sip.outgoing import OutgoingRequest
from sipxcc.sip.outgoing import RequestFailed as RequestFailed  # the flows' interface
from sipxcc.sip.stats import SipStats
from sipxcc.sip.transaction import ClientTransaction, TransactionLayer
from sipxcc.sip.transaction import ServerTransaction as ServerTransaction  # the flows' interface
from sipxcc.sip.transport import UDP_MTU_LIMIT, Source, Target, TransportLayer
from sipxcc.sip.uri import URI
from sipxcc.timers import Clock, TimerHandle, Timers

log = logger(__name__)

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE"
IN_DIALOG_ONLY = frozenset(("BYE", "NOTIFY", "INFO", "UPDATE", "PRACK", "REFER"))
KNOWN_METHODS = frozenset(("INVITE", "ACK", "CANCEL", "OPTIONS", "BYE", "REFER", "NOTIFY",
                           "INFO", "UPDATE", "PRACK", "REGISTER", "SUBSCRIBE", "MESSAGE",
                           "PUBLISH"))
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


@dataclass(frozen=True)
class UASettings:
    """Who we are on the SIP side: the proxy every out-of-dialog request goes through."""

    proxy: str
    address: str
    port: int
    contact_user: str = "callcontroller"
    transports: tuple[str, ...] = ("udp", "tcp")
    realm: str | None = None  # digest realm we answer (the proxy's); None: answer none


def uri_target(uri: URI, default_transport: str = "UDP") -> Target:
    """RFC 3263 reduced to what a sipX host needs: transport param, literal host, port."""
    transport = (uri.params.get("transport") or "").upper() or default_transport
    if uri.scheme == "sips":
        transport = "TLS"
    host = uri.host.strip("[]")
    if not is_ip(host):
        host = "127.0.0.1" if host == "localhost" else host
    return Target(transport, host, uri.port or DEFAULT_PORTS.get(transport, 5060))


def _same_host(a: str, b: str) -> bool:
    """Host names compare as text, addresses by value (``::1`` is ``0:0::1``)."""
    a, b = a.strip("[]"), b.strip("[]")
    if a == b:
        return True
    if is_ip(a) and is_ip(b):
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    return a.lower() == b.lower()


MERGE_WINDOW = 32.0
"""Seconds a request's (From tag, Call-ID, CSeq) is remembered to spot merged requests."""
MERGE_MEMORY = 10000
"""At most this many are remembered; beyond it the oldest are forgotten first."""


class UserAgent:
    """
    The SIP user agent. Flows call L{invite} and use the L{Dialog} it yields; everything
    else (retransmissions, challenges, stray requests) is handled here and below.
    """

    def __init__(self, clock: Clock, transport: TransportLayer, settings: UASettings):
        self.clock = clock
        self.transport = transport
        self.settings = settings
        self.timers = Timers(clock)
        self.transactions = TransactionLayer(self.timers, transport, self.response_route)
        self.transactions.stats = transport.stats  # the sink given to the transport, if any
        self.dialogs: dict[DialogId, Dialog] = {}
        self.proxy = URI.parse(settings.proxy)
        self.proxy_target = uri_target(self.proxy)
        self.route = f"<{self.proxy}>" if "lr" in self.proxy.params else f"<{self.proxy};lr>"
        self.sent_by = host_port(settings.address, settings.port)
        self.counters = {"bad": 0, "stray_responses": 0, "udp_oversize": 0}
        # (From tag, Call-ID, CSeq) -> (branch, when), oldest first
        self.recent: OrderedDict[tuple[str | None, str | None, int],
                                 tuple[str | None, float]] = OrderedDict()
        self.response_source: Source | None = None  # of the response being delivered
        transport.on_message = self.receive
        transport.on_bad_message = self.bad_message
        transport.on_connection_lost = self.transactions.connection_lost
        transport.set_proxy(self.proxy_target.host)

    @property
    def contact(self) -> str:
        transport = self.proxy_target.transport
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.settings.contact_user}@{self.sent_by}{suffix}>"

    def via(self, branch: str, transport: str | None = None) -> str:
        transport = transport or self.proxy_target.transport
        return f"SIP/2.0/{transport} {self.sent_by};branch={branch};rport"

    # Sending

    def new_request(self, method: str, request_uri: str, from_addr: str, to_addr: str,
                    headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                    call_id: str | None = None) -> Request:
        """§8.1.1: an out-of-dialog request, routed through the proxy (§16.12, loose)."""
        request = Request(method, request_uri)
        h = request.headers
        h.add("Via", self.via(make_branch()))
        h.add("Max-Forwards", "70")
        h.add("Route", self.route)
        h.add("From", f"{from_addr};tag={make_tag()}")
        h.add("To", to_addr)
        h.add("Call-ID", call_id or make_call_id(self.settings.address))
        h.add("CSeq", f"1 {method}")
        h.add("Contact", self.contact)
        for name, value in headers:
            h.add(name, value)
        request.body = body
        return request

    def invite(self, request: Request, credentials: DigestCredentials | None = None,
               on_response: Callable[[Response], None] | None = None) -> OutgoingRequest:
        """Send an INVITE built by L{new_request}; its 2xx yields C{outgoing.dialog}."""
        return self.send(request, self.proxy_target, credentials=credentials,
                         on_response=on_response)

    def send(self, request: Request, target: Target, dialog: Dialog | None = None,
             credentials: DigestCredentials | None = None,
             on_response: Callable[[Response], None] | None = None) -> OutgoingRequest:
        """Send C{request} to C{target} (over TCP instead when too large for UDP: see
        L{fit_transport}); answers the proxy's challenges with C{credentials}."""
        return OutgoingRequest(self, request, target, credentials, on_response, dialog).start()

    def fit_transport(self, request: Request, target: Target) -> tuple[Target, bytes]:
        """
        RFC 3261 §18.1.1: the transport C{request} goes over, and the bytes to send.

        The serialised request is measured: larger than L{UDP_MTU_LIMIT} bytes (1300, the
        path MTU being unknown), a request bound for UDP goes over TCP instead, and its top
        Via says so (rewritten before the bytes are final: the Via is part of what was
        measured, and the transport token keeps its length). Without TCP it still goes over
        UDP, counted and logged; a next hop that cannot take it answers 513 (§21.5.14),
        which is the request's final response.
        """
        data = request.to_bytes()
        if target.transport != "UDP" or len(data) <= UDP_MTU_LIMIT:
            return target, data
        if "tcp" not in self.settings.transports:
            self.counters["udp_oversize"] += 1
            log.warn("a {method} of {size} bytes goes over UDP: no TCP to send it over "
                     "(RFC 3261 §18.1.1)", method=request.method, size=len(data))
            return target, data
        via = request.top_via
        assert via is not None  # every request we build has one
        request.headers.replace_first("Via", self.via(via.branch or make_branch(), "TCP"))
        return target._replace(transport="TCP"), request.to_bytes()

    @property
    def realm(self) -> str | None:
        """The digest realm we answer (the proxy's); None: answer none."""
        return self.settings.realm

    def client_transaction(self, request: Request, target: Target,
                           on_response: Callable[[Response], None],
                           on_failure: Callable[[Exception], None],
                           data: bytes | None = None) -> ClientTransaction:
        """Start a client transaction for C{request} (RFC 3261 §17.1); C{data}, when given,
        is C{request} already serialised."""
        return self.transactions.client(request, target, on_response, on_failure, data=data)

    def call_later(self, delay: float, function: Callable[[], None]) -> TimerHandle:
        """Run C{function} after C{delay} seconds, on the UA's shared timer queues."""
        return self.timers.call_later(delay, function)

    def set_stats(self, stats: SipStats) -> None:
        """Report every message sent and received, retransmission and timeout to C{stats}."""
        self.transport.stats = stats
        self.transactions.stats = stats

    def send_bytes(self, data: bytes, target: Target) -> None:
        """Send an already built message (an ACK of a 2xx, again) to C{target}."""
        self.transport.send(data, target)

    def is_proxy(self, host: str, port: int) -> bool:
        """Whether host:port is the configured proxy (its address, or what its name gave)."""
        proxy = self.proxy_target
        if port != proxy.port:
            return False
        if _same_host(host, proxy.host):
            return True
        resolved = getattr(self.transport, "resolved", {}).get(proxy.host)
        return resolved is not None and _same_host(host, resolved[0])

    def dialog_target(self, dialog: Dialog) -> Target:
        first = dialog.route_set[0] if dialog.route_set else f"<{dialog.remote_target}>"
        from sipxcc.sip.uri import Address
        uri = Address.parse(first).uri
        assert uri is not None  # Address.parse refuses an address without a URI
        return uri_target(uri, self.proxy_target.transport)

    def create_dialog(self, request: Request, response: Response,
                      credentials: DigestCredentials | None = None) -> Dialog:
        dialog = Dialog.from_response(self, request, response, credentials)
        self.dialogs[dialog.id] = dialog
        return dialog

    def forget_dialog(self, dialog: Dialog) -> None:
        if self.dialogs.get(dialog.id) is dialog:
            del self.dialogs[dialog.id]

    @staticmethod
    def response_route(request: Request, source: Source) -> tuple[Target, object | None]:
        """
        §18.2.2 with RFC 3581 §4: always toward the request's real source, never to an
        address its sender wrote in the Via. Over the connection it came on; if that has
        closed, a new one to the source address at the sent-by port. Over UDP to the
        source address, at the source port when the Via has rport, else the sent-by port.
        """
        via = request.top_via
        assert via is not None  # framing refuses a request without one
        if source.transport != "UDP":
            port = via.port or DEFAULT_PORTS.get(source.transport, 5060)
            return Target(source.transport, source.host, port), source.connection
        port = source.port if via.has_rport else (via.port or 5060)
        return Target("UDP", source.host, port), None

    def send_response(self, data: bytes, request: Request, source: Source) -> None:
        target, connection = self.response_route(request, source)
        self.transport.send(data, target, connection=connection)

    # Receiving

    def bad_message(self, error: Exception, source: Source) -> None:
        """Malformed SIP: 400 (505 for an unknown SIP version) where the request is readable
        enough to answer, else drop."""
        self.counters["bad"] += 1
        partial = getattr(error, "partial", None)
        if isinstance(partial, Request) and partial.method != "ACK":
            try:
                self._stamp_via(partial, source)
                status = getattr(error, "status", 400)
                response = response_to(partial, status, "Version Not Supported"
                                       if status == 505 else "Bad Request")
                self.send_response(response.to_bytes(), partial, source)
            except Exception:
                log.debug("could not answer a malformed request from {host}", host=source.host)

    def receive(self, message: Request | Response, source: Source) -> None:
        if isinstance(message, Request):
            self._receive_request(message, source)
        else:
            self._receive_response(message, source)

    def _receive_response(self, response: Response, source: Source | None = None) -> None:
        if response.status < 300 and response.cseq[1] == "INVITE":
            _ = response.from_tag, response.to_tag  # a dialog needs both: parse or reject now
        txn = self.transactions.match_response(response)
        if txn is not None:
            self.response_source = source  # read by OutgoingRequest before it answers a 401/407
            try:
                txn.receive(response)
            finally:
                self.response_source = None
            return
        # §13.2.2.4: a 2xx retransmitted after its transaction ended still needs its ACK
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            dialog = self.dialogs.get((response.call_id or "", response.from_tag,
                                       response.to_tag))
            if dialog is not None:
                dialog.retransmitted_2xx(response)
                return
        self.counters["stray_responses"] += 1

    def _stamp_via(self, request: Request, source: Source) -> None:
        """
        §18.2.1 and RFC 3581 §4: the top Via says where the request really came from.
        C{received} is the source address whenever the sent-by host differs or the sender
        wrote one, and C{rport} the source port whenever present, whatever value the
        sender gave them.
        """
        via = request.top_via
        assert via is not None  # framing refuses a request without one
        params = via.params
        changed = False
        if params.get("received", source.host) != source.host \
                or via.host.strip("[]") != source.host:
            changed = params.get("received") != source.host
            params["received"] = source.host
        if "rport" in params and params["rport"] != str(source.port):
            params["rport"] = str(source.port)
            changed = True
        if changed:
            request.headers.replace_first("Via", str(via))

    def _receive_request(self, request: Request, source: Source) -> None:
        self._stamp_via(request, source)
        method = request.method
        txn = self.transactions.match_request(request)
        if txn is not None:
            txn.receive_retransmission(request)
            return
        if method == "ACK":
            dialog = self.dialogs.get((request.call_id or "", request.to_tag, request.from_tag))
            if dialog is not None and dialog.on_request is not None \
                    and self._from_dialog_peer(dialog, source):  # as other in-dialog requests
                dialog.on_request(request, None)
            return
        if method == "CANCEL":
            self._receive_cancel(request, source)
            return
        txn = self.transactions.server(request, source)
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and max_forwards.strip() == "0" and method != "OPTIONS":
            txn.respond(483, "Too Many Hops")
            return
        to_tag = request.to_tag
        if to_tag:
            dialog = self.dialogs.get((request.call_id or "", to_tag, request.from_tag))
            if dialog is None:
                txn.respond(481, "Call/Transaction Does Not Exist")
            elif not self._from_dialog_peer(dialog, source):
                txn.respond(403, "Forbidden")
            else:
                dialog.receive_request(request, txn)
            return
        if self._merged(request):
            txn.respond(482, "Loop Detected")
            return
        self._out_of_dialog(request, txn)

    def _from_dialog_peer(self, dialog: Dialog, source: Source) -> bool:
        """In-dialog requests come from the first hop of the route set, or the peer itself."""
        expected = self.dialog_target(dialog).host
        return not is_ip(expected) or expected == source.host

    def _merged(self, request: Request) -> bool:
        """§8.2.2.2: the same request arriving by a second path (another branch)."""
        key = (request.from_tag, request.call_id, request.cseq[0])
        via = request.top_via
        branch = None if via is None else via.branch
        now = self.clock.seconds()
        recent = self.recent
        # forget the oldest: older than 32 s, or beyond the cap (O(1) each, even in a flood)
        while recent:
            oldest = next(iter(recent.values()))
            if now - oldest[1] < MERGE_WINDOW and len(recent) < MERGE_MEMORY:
                break
            recent.popitem(last=False)
        seen = recent.get(key)
        if seen is not None and seen[0] != branch and now - seen[1] < MERGE_WINDOW:
            return True
        recent[key] = (branch, now)
        recent.move_to_end(key)
        return False

    def _out_of_dialog(self, request: Request, txn: ServerTransaction) -> None:
        method = request.method
        if method == "OPTIONS":
            txn.respond(200, "OK", [("Allow", ALLOW), ("Accept", "application/sdp"),
                                    ("Supported", ""), ("Contact", self.contact)])
        elif method in IN_DIALOG_ONLY:
            txn.respond(481, "Call/Transaction Does Not Exist")
        elif method in KNOWN_METHODS:
            # we place calls; we do not take them (§8.2.1)
            txn.respond(405, "Method Not Allowed", [("Allow", ALLOW)])
        else:
            txn.respond(501, "Not Implemented", [("Allow", ALLOW)])

    def _receive_cancel(self, request: Request, source: Source) -> None:
        """§9.2: CANCEL gets its own 200; the INVITE it names gets 487 from its owner."""
        cancel_txn = self.transactions.server(request, source)
        invite = self.transactions.servers.get(self.transactions.server_key(request, "INVITE"))
        if invite is None:
            cancel_txn.respond(481, "Call/Transaction Does Not Exist")
            return
        cancel_txn.respond(200, "OK")
        if not invite.final_sent:
            if invite.on_cancel is not None:
                invite.on_cancel()
            invite.respond(487, "Request Terminated")

    def stop(self) -> None:
        self.transactions.stop()
        self.timers.stop()
