"""What the flows share: their context, the first INVITE sipX expects, status recording."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from twisted.python.failure import Failure

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.clock import Clock
from sipxcc.calls.errors import failure_status
from sipxcc.calls.sdp import no_media_offer
from sipxcc.sip.message import Request, Response, parse_sipfrag
from sipxcc.sip.uri import URI, Address, build_sip_uri, quote
from sipxcc.sip.useragent import DigestCredentials, UserAgent
from sipxcc.timers import Timers
from sipxcc.users import User

INVITE_ALLOW = "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY"
"""The Allow header of the INVITEs we send (RFC 3261 §20.5): the methods we offer the
phone in the call's dialog. What the user agent answers OPTIONS with (and 405/501) is
L{sipxcc.sip.useragent.ALLOW}, which adds INFO and UPDATE."""


@dataclass(frozen=True)
class FlowContext:
    """
    What every flow needs: the user agent, the clock, our SIP identity, and the flows'
    timers (fixed delays share one reactor timer each; see sipxcc.timers), made on
    the clock.
    """

    ua: UserAgent
    clock: Clock
    domain: str
    address: str
    timers: Timers = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timers", Timers(self.clock))  # frozen: set once, here


def credentials_for(user: User) -> DigestCredentials | None:
    """The agent's SIP credentials: its passtoken is the MD5 HA1 (sipX's credential store)."""
    if not user.passtoken:
        return None
    return DigestCredentials(user.user_name, {"MD5": user.passtoken})


def sip_uri(addr_spec: str, **parts: Any) -> str:
    """
    The SIP URI of C{user@host[:port]}, built part by part and checked against the
    RFC 3261 grammar (C{params}/C{headers} are %-escaped); raises UnsafeValue otherwise.
    """
    scheme = "sip"
    if addr_spec.startswith(("sip:", "sips:")):
        scheme, _, addr_spec = addr_spec.partition(":")
    return str(build_sip_uri(addr_spec, scheme=scheme, **parts))


def party_address(user: User | None, addr_spec: str, name: str | None = None) -> str:
    """
    How a party is shown to a phone: its directory entry's display name and identity, or,
    for a number or an outside URI the directory does not know (C{user} None),
    C{addr_spec} itself without a name; C{name}, if given, replaces the display name.
    Built from validated parts: the URI by the RFC 3261 grammar (L{sip_uri}), the name as
    a quoted-string (CR, LF and NUL refused).
    """
    if user is not None:
        addr_spec = user.identity
        name = user.display_name if name is None else name
    return str(Address(name or None, URI.parse(sip_uri(addr_spec))))


def presented_address(request: CallRequest) -> str:
    """
    What the called user is shown in INVITE mode: the calling user, as the directory
    knows it (a calling party outside the directory: its URI, no name), whoever the agent
    is. C{callerId} (the agent's identity or the calling user's, checked by the web
    layer) picks that identity and its display name instead; C{callerIdName} replaces
    the display name.
    """
    user, identity = request.calling_user, request.calling
    if request.caller_id is not None:
        identity = request.caller_id
        user = next((u for u in (request.calling_user, request.agent)
                     if u is not None and u.identity == identity), None)
    return party_address(user, identity, request.caller_id_name)


def shown_to_calling_user(request: CallRequest) -> str:
    """
    Whom the calling user's phone is shown it is about to be connected to: the called
    user's display name and identity from the user directory, or, for a number or an
    outside URI, that URI itself (no display name). In INVITE mode a transfer target is
    shown the same: it is connected to the called user.
    """
    return party_address(request.called_user, request.called)


def calling_user_invite(ctx: FlowContext, call: Call, body: bytes | None = None) -> Request:
    """
    The INVITE that rings the calling user's phone, in both modes: From names the called
    party (L{shown_to_calling_user}), which is what phones display (baresip and linphone
    read From only), and a P-Asserted-Identity (RFC 3325 §9.1) says the same for phones
    that prefer it. The Digest credentials stay the agent's: the proxy authenticates the
    agent, whatever From says.
    """
    request = call.request
    shown = shown_to_calling_user(request)
    return first_invite(ctx, call, request.calling, forwarding_allowed=request.forwarding_allowed,
                        subject=request.subject, auto_answer=request.auto_answer, body=body,
                        from_=shown, asserted=shown)


def called_user_invite(ctx: FlowContext, call: Call) -> Request:
    """
    INVITE mode: the INVITE, without SDP, that rings the called user once the calling
    user is up. From and P-Asserted-Identity (RFC 3325 §9.1) name whom it is presented
    (L{presented_address}: the calling user by default); the Digest credentials stay the
    agent's.
    """
    shown = presented_address(call.request)
    return first_invite(ctx, call, call.request.called, forwarding_allowed=False, body=b"",
                        from_=shown, asserted=shown)


def transfer_target_invite(ctx: FlowContext, call: Call, target: str, body: bytes) -> Request:
    """
    INVITE mode: the INVITE that rings a transfer target, with the called user's session
    (C{body}). The target is connected to the called user, so that is whom From and
    P-Asserted-Identity name (L{shown_to_calling_user}), not the agent.
    """
    shown = shown_to_calling_user(call.request)
    return first_invite(ctx, call, target, forwarding_allowed=False, body=body,
                        from_=shown, asserted=shown)


def first_invite(ctx: FlowContext, call: Call, to: str, *, forwarding_allowed: bool,
                 subject: str | None = None, auto_answer: bool = False, body: bytes | None = None,
                 from_: str, asserted: str | None = None) -> Request:
    """
    The INVITE sipX expects from a call controller: the URI parameters that keep sipX
    from sending it to voicemail (and, unless allowed, from forwarding it), the
    party shown to the phone in From (C{from_}; C{asserted} as P-Asserted-Identity),
    and a no-media offer unless C{body} is given.
    """
    params: dict[str, str | None] = {"sipx-noroute": "Voicemail"}
    if not forwarding_allowed:
        params["sipx-userforward"] = "false"
    headers = [("Allow", INVITE_ALLOW), ("Accept", "application/sdp")]
    if asserted:
        headers.append(("P-Asserted-Identity", asserted))
    if subject:
        headers.append(("Subject", subject))
    if auto_answer:
        headers += [("Call-Info", f"<sip:{ctx.domain}>;answer-after=0"),
                    ("Alert-Info", f"<sip:{ctx.domain}>;info=alert-autoanswer"),
                    ("Answer-Mode", "Auto")]  # RFC 5373
    if body is None:
        body = no_media_offer(ctx.address, random.randrange(1, 2**31), 1)
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return ctx.ua.new_request("INVITE", sip_uri(to, params=params),
                              from_,
                              f"<{sip_uri(to)}>", headers, body)


def now_ms(clock: Clock) -> int:
    return int(clock.seconds() * 1000)


def record_response(ctx: FlowContext, call: Call, response: Response,
                    method: str = "INVITE") -> None:
    # a parsed response always has a Call-ID (framing refuses one without)
    call.record(now_ms(ctx.clock), response.call_id, method,  # type: ignore[arg-type]
                response.first_line)


def record_failure(ctx: FlowContext, call: Call, call_id: str, method: str,
                   failure: Failure) -> tuple[int, str]:
    """
    A request that got no final response of its own (timeout, transport) is recorded as
    if it had; a fault of ours is logged instead. Returns the status and reason it stands
    for (L{failure_status}).
    """
    status, reason, ours = failure_status(failure, method, call.id)
    if not ours:
        call.record(now_ms(ctx.clock), call_id, method, f"SIP/2.0 {status} {reason}")
    return status, reason


def record_sipfrag(ctx: FlowContext, call: Call, call_id: str,
                   body: bytes) -> tuple[int, str] | None:
    """Record a NOTIFY's sipfrag status line; returns the parsed (status, reason) or None."""
    frag = parse_sipfrag(body)
    if frag is not None:
        status, reason, line = frag
        call.record(now_ms(ctx.clock), call_id, "NOTIFY", line)
        return status, reason
    text = body.decode("utf-8", "replace").strip().splitlines()
    if text:
        call.record(now_ms(ctx.clock), call_id, "NOTIFY", text[0])
    return None


def reason_header(status: int, text: str) -> tuple[str, str]:
    """RFC 3326 Reason for a BYE (e.g. a busy transfer target: cause=486)."""
    return ("Reason", f"SIP;cause={status};text={quote(text)}")
