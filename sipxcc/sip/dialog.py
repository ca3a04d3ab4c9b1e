"""RFC 3261 §12 dialogs: identity, route set, CSeq spaces, in-dialog requests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from sipxcc.sip.digest import Challenge, DigestCredentials
from sipxcc.sip.grammar import SIPParseError
from sipxcc.sip.message import Request, Response, make_branch
from sipxcc.sip.transaction import ServerTransaction
from sipxcc.sip.transport import Target
from sipxcc.sip.uri import Address

if TYPE_CHECKING:
    from sipxcc.sip.outgoing import OutgoingRequest

EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"

#: Methods that refresh the remote target (RFC 3261 §12.2, RFC 3311 §5.1, RFC 6665 §4.1.2.1)
TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))


DialogId = tuple[str, str | None, str | None]
"""(Call-ID, local tag, remote tag): a tag is None only where the peer left it out."""


def _strip_tag(header_value: str | None) -> str:
    if header_value is None:
        raise SIPParseError("missing From or To")
    address = Address.parse(header_value)
    address.params.pop("tag", None)
    return str(address)


def _tagged(address: str, tag: str | None) -> str:
    """A From/To value: a null tag (§12.1.2: a peer that sent none) is written as none."""
    return address if tag is None else f"{address};tag={tag}"


class DialogCore(Protocol):
    """What a L{Dialog} needs of the UA core (L{sipxcc.sip.useragent.UserAgent})."""

    @property
    def contact(self) -> str:
        """Our Contact header value."""

    def via(self, branch: str, transport: str | None = None) -> str: ...

    def dialog_target(self, dialog: Dialog) -> Target: ...

    def send(self, request: Request, target: Target, dialog: Dialog | None = None,
             credentials: DigestCredentials | None = None,
             on_response: Callable[[Response], None] | None = None) -> OutgoingRequest: ...

    def send_bytes(self, data: bytes, target: Target) -> None: ...

    def fit_transport(self, request: Request, target: Target) -> tuple[Target, bytes]: ...

    def forget_dialog(self, dialog: Dialog) -> None: ...


class Dialog:
    """
    One dialog of ours (we are the UAC of the INVITE that created it). The call flow sets
    C{on_request(request, server_transaction)} for in-dialog requests and
    C{on_terminated()} to hear of its end.
    """

    def __init__(self, ua: DialogCore, call_id: str, local_tag: str | None,
                 remote_tag: str | None,
                 local_uri: str, remote_uri: str, remote_target: str, route_set: list[str],
                 local_seq: int, credentials: DigestCredentials | None = None):
        self.ua = ua
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq: int | None = None
        self.credentials = credentials
        self.challenges: dict[str, Challenge] = {}  # header name -> last one, reused (§22)
        self.nonce_counts: dict[str, int] = {}
        self.state = CONFIRMED
        self.invite_seq = local_seq
        self.ack_data: bytes | None = None
        self.ack_target: Target | None = None
        # (request, its server transaction; None for an ACK, which has none)
        self.on_request: Callable[[Request, ServerTransaction | None], None] | None = None
        self.on_terminated: Callable[[], None] | None = None

    @classmethod
    def from_response(cls, ua: DialogCore, request: Request, response: Response,
                      credentials: DigestCredentials | None = None) -> Dialog:
        """§12.1.2: the UAC's view of a dialog created by a 2xx (or 1xx with a tag)."""
        contact = response.headers.values("Contact")
        target = str(Address.parse(contact[0]).uri) if contact else request.uri
        routes = list(reversed(response.headers.values("Record-Route")))
        call_id = request.call_id
        assert call_id is not None  # the request is ours: it has one
        return cls(ua, call_id, request.from_tag, response.to_tag,
                   _strip_tag(request.headers.get("From")),
                   _strip_tag(response.headers.get("To")), target, routes, request.cseq[0],
                   credentials)

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    def build_request(self, method: str, headers: Iterable[tuple[str, str]] = (),
                      body: bytes = b"",
                      cseq: int | None = None) -> Request:
        """§12.2.1.1: a request inside this dialog (loose routing only, RFC 3261 §16.12)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        request = Request(method, self.remote_target)
        h = request.headers
        h.add("Via", self.ua.via(make_branch()))
        h.add("Max-Forwards", "70")
        for route in self.route_set:
            h.add("Route", route)
        h.add("From", _tagged(self.local_uri, self.local_tag))
        h.add("To", _tagged(self.remote_uri, self.remote_tag))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method in TARGET_REFRESH:
            h.add("Contact", self.ua.contact)
        for name, value in headers:
            h.add(name, value)
        request.body = body
        return request

    def request(self, method: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                on_response: Callable[[Response], None] | None = None) -> OutgoingRequest:
        """Send an in-dialog request; returns an C{OutgoingRequest} (its C{.deferred})."""
        request = self.build_request(method, headers, body)
        return self.ua.send(request, self.ua.dialog_target(self), dialog=self,
                            credentials=self.credentials, on_response=on_response)

    def ack(self, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> None:
        """§13.2.2.4: ACK the 2xx of the last INVITE; kept to answer its retransmissions."""
        ack = self.build_request("ACK", headers, body, cseq=self.invite_seq)
        # §18.1.1: an ACK carrying an answer can pass the UDP size limit like any request
        self.ack_target, self.ack_data = self.ua.fit_transport(ack, self.ua.dialog_target(self))
        self.ua.send_bytes(self.ack_data, self.ack_target)

    def retransmitted_2xx(self, response: Response) -> None:
        if self.ack_data is not None and self.ack_target is not None \
                and response.cseq[0] == self.invite_seq:
            self.ua.send_bytes(self.ack_data, self.ack_target)

    def receive_request(self, request: Request, txn: ServerTransaction) -> None:
        """§12.2.2: CSeq order, target refresh, then the call flow."""
        seq = request.cseq[0]
        if self.remote_seq is not None and seq < self.remote_seq:  # (ACKs go to on_request)
            txn.respond(500, "Server Internal Error", [("Retry-After", "1")])
            return
        self.remote_seq = seq
        if request.method in TARGET_REFRESH:
            contact = request.headers.values("Contact")
            if contact:
                self.remote_target = str(Address.parse(contact[0]).uri)
        if self.on_request is None:
            if request.method == "BYE":
                txn.respond(200, "OK")
                self.terminate()
            else:
                txn.respond(481, "Call/Transaction Does Not Exist")
            return
        self.on_request(request, txn)

    def refresh_target(self, response: Response) -> None:
        """§12.2.1.2: a target refresh's 2xx names the remote target anew."""
        contact = response.headers.values("Contact")
        if contact:
            self.remote_target = str(Address.parse(contact[0]).uri)

    def terminate(self) -> None:
        """Forget the dialog and tell the flow, once."""
        if self.state == TERMINATED:
            return
        self.state = TERMINATED
        self.ua.forget_dialog(self)
        on_terminated = self.on_terminated
        self.on_request = self.on_terminated = None  # let go of the flow: no cycle outlives us
        if on_terminated is not None:
            on_terminated()
