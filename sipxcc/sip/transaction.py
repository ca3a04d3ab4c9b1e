"""
RFC 3261 §17 transactions: the INVITE and non-INVITE client and server state machines,
their timers (A–K, and RFC 6026's L and M) on an injected clock, and §17.1.3/§17.2.3
matching.

Each machine is a L{Table} that reads like its figure in RFC 3261 (Fig. 5–8, with RFC
6026's "Accepted" state): every (state, event) pair is a transition, an explicit no-op or a
refusal. A transaction turns what happens (a response, a timer, the TU's answer, a
transport error) into an event, and L{_Transaction._fire} steps the table, sets the state
and runs the named action. The pictures are in docs/machines/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Protocol

from sipxcc.sip.headers import MAGIC_COOKIE
from sipxcc.sip.message import Request, Response, make_tag, response_to
from sipxcc.sip.stats import NO_STATS, SipStats
from sipxcc.sip.transport import Source, Target, refused
from sipxcc.statemachine import Action, Table, Transition, bind
from sipxcc.timers import TimerHandle, Timers

T1 = 0.5
T2 = 4.0
T4 = 5.0
WAIT_D = 32.0
"""Timer D, the wait for retransmitted final responses to an INVITE (>= 32 s over UDP)."""


class Timeout(Exception):
    """No final response within Timer B/F (RFC 3261 §17.1.1.2, §17.1.2.2): report 408."""


class TransportFailure(Exception):
    """The transport could not deliver the request (RFC 3261 §17.1.4): report 503.
    C{refused}: the peer refused the connection (a TCP reset)."""

    def __init__(self, reason: str, refused: bool):
        super().__init__(reason)
        self.refused = refused


class State(StrEnum):
    """The states of Fig. 5–8 and RFC 6026 (a str, so a state compares to its name)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Event(StrEnum):
    """What a transaction reacts to: messages from the peer, its TU, its timers."""

    PROVISIONAL = "1xx"        # a 1xx response received (client) or sent by the TU (server)
    SUCCESS = "2xx"            # likewise a 2xx
    FAILURE = "300-699"        # likewise a final non-2xx response
    FINAL = "200-699"          # a final response of a non-INVITE transaction
    REQUEST = "request"        # the request retransmitted by the peer (server)
    ACK = "ACK"                # the ACK of a non-2xx final response (INVITE server)
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


S, E = State, Event


def _everything_in(state: State) -> list[tuple[State, Event]]:
    return [(state, event) for event in Event]


def _table(name: str, initial: State, transitions: dict[tuple[State, Event], Transition[State]],
           ignores: Iterable[tuple[State, Event]]) -> Table[State, Event]:
    # A terminated transaction is forgotten by the layer; anything still on its way to it
    # (a late response, a connection lost) is absorbed.
    return Table(name, initial, transitions,
                 ignores=[*ignores, *_everything_in(S.TERMINATED)], final=[S.TERMINATED])


def _t(target: State, action: str | None = None) -> Transition[State]:
    return Transition(target, action)


INVITE_CLIENT: Table[State, Event] = _table("INVITE client transaction", S.CALLING, {
    (S.CALLING, E.TIMER_A): _t(S.CALLING, "retransmit"),
    (S.CALLING, E.TIMER_B): _t(S.TERMINATED, "time_out"),
    (S.CALLING, E.TRANSPORT_ERROR): _t(S.TERMINATED, "fail_transport"),
    (S.CALLING, E.PROVISIONAL): _t(S.PROCEEDING, "pass_up"),
    (S.CALLING, E.SUCCESS): _t(S.ACCEPTED, "accept"),
    (S.CALLING, E.FAILURE): _t(S.COMPLETED, "ack_and_complete"),
    (S.PROCEEDING, E.PROVISIONAL): _t(S.PROCEEDING, "pass_up"),
    (S.PROCEEDING, E.SUCCESS): _t(S.ACCEPTED, "accept"),
    (S.PROCEEDING, E.FAILURE): _t(S.COMPLETED, "ack_and_complete"),
    (S.PROCEEDING, E.TRANSPORT_ERROR): _t(S.TERMINATED, "fail_transport"),
    (S.COMPLETED, E.FAILURE): _t(S.COMPLETED, "resend_ack"),
    (S.COMPLETED, E.TIMER_D): _t(S.TERMINATED, "terminate"),
    (S.ACCEPTED, E.SUCCESS): _t(S.ACCEPTED, "pass_up"),  # the dialog ACKs it (and forks)
    (S.ACCEPTED, E.TIMER_M): _t(S.TERMINATED, "terminate"),
}, ignores=[
    # §17.1.1.2: a provisional response stops retransmissions, and Timer B only ends a
    # transaction still Calling
    (S.PROCEEDING, E.TIMER_A), (S.PROCEEDING, E.TIMER_B),
    (S.COMPLETED, E.PROVISIONAL), (S.COMPLETED, E.SUCCESS), (S.COMPLETED, E.TRANSPORT_ERROR),
    (S.ACCEPTED, E.PROVISIONAL), (S.ACCEPTED, E.FAILURE), (S.ACCEPTED, E.TRANSPORT_ERROR),
])

NON_INVITE_CLIENT: Table[State, Event] = _table("non-INVITE client transaction", S.TRYING, {
    (S.TRYING, E.TIMER_E): _t(S.TRYING, "retransmit"),
    (S.TRYING, E.TIMER_F): _t(S.TERMINATED, "time_out"),
    (S.TRYING, E.TRANSPORT_ERROR): _t(S.TERMINATED, "fail_transport"),
    (S.TRYING, E.PROVISIONAL): _t(S.PROCEEDING, "slow_down"),
    (S.TRYING, E.FINAL): _t(S.COMPLETED, "complete"),
    (S.PROCEEDING, E.TIMER_E): _t(S.PROCEEDING, "retransmit"),
    (S.PROCEEDING, E.TIMER_F): _t(S.TERMINATED, "time_out"),
    (S.PROCEEDING, E.TRANSPORT_ERROR): _t(S.TERMINATED, "fail_transport"),
    (S.PROCEEDING, E.PROVISIONAL): _t(S.PROCEEDING, "pass_up"),
    (S.PROCEEDING, E.FINAL): _t(S.COMPLETED, "complete"),
    (S.COMPLETED, E.TIMER_K): _t(S.TERMINATED, "terminate"),
}, ignores=[
    (S.COMPLETED, E.PROVISIONAL), (S.COMPLETED, E.FINAL), (S.COMPLETED, E.TRANSPORT_ERROR),
])

INVITE_SERVER: Table[State, Event] = _table("INVITE server transaction", S.PROCEEDING, {
    (S.PROCEEDING, E.REQUEST): _t(S.PROCEEDING, "resend_last"),
    (S.PROCEEDING, E.PROVISIONAL): _t(S.PROCEEDING, "send"),
    (S.PROCEEDING, E.SUCCESS): _t(S.ACCEPTED, "send_accepted"),
    (S.PROCEEDING, E.FAILURE): _t(S.COMPLETED, "send_rejection"),
    (S.COMPLETED, E.REQUEST): _t(S.COMPLETED, "resend_last"),
    (S.COMPLETED, E.TIMER_G): _t(S.COMPLETED, "retransmit_final"),
    (S.COMPLETED, E.TIMER_H): _t(S.TERMINATED, "terminate"),
    (S.COMPLETED, E.ACK): _t(S.CONFIRMED, "confirm"),
    (S.CONFIRMED, E.TIMER_I): _t(S.TERMINATED, "terminate"),
    (S.ACCEPTED, E.REQUEST): _t(S.ACCEPTED, "resend_last"),
    (S.ACCEPTED, E.TIMER_L): _t(S.TERMINATED, "terminate"),
}, ignores=[
    (S.PROCEEDING, E.ACK),
    # the TU's final response is sent once; a later one is dropped
    (S.COMPLETED, E.PROVISIONAL), (S.COMPLETED, E.SUCCESS), (S.COMPLETED, E.FAILURE),
    (S.CONFIRMED, E.PROVISIONAL), (S.CONFIRMED, E.SUCCESS), (S.CONFIRMED, E.FAILURE),
    (S.CONFIRMED, E.REQUEST), (S.CONFIRMED, E.ACK),
    (S.ACCEPTED, E.PROVISIONAL), (S.ACCEPTED, E.SUCCESS), (S.ACCEPTED, E.FAILURE),
    (S.ACCEPTED, E.ACK),
])

NON_INVITE_SERVER: Table[State, Event] = _table("non-INVITE server transaction", S.TRYING, {
    (S.TRYING, E.PROVISIONAL): _t(S.PROCEEDING, "send"),
    (S.TRYING, E.FINAL): _t(S.COMPLETED, "send_final"),
    (S.PROCEEDING, E.PROVISIONAL): _t(S.PROCEEDING, "send"),
    (S.PROCEEDING, E.REQUEST): _t(S.PROCEEDING, "resend_last"),
    (S.PROCEEDING, E.FINAL): _t(S.COMPLETED, "send_final"),
    (S.COMPLETED, E.REQUEST): _t(S.COMPLETED, "resend_last"),
    (S.COMPLETED, E.TIMER_J): _t(S.TERMINATED, "terminate"),
}, ignores=[
    (S.TRYING, E.REQUEST),  # Fig. 8: retransmissions in Trying are discarded
    (S.COMPLETED, E.PROVISIONAL), (S.COMPLETED, E.FINAL),
])

TABLES: tuple[Table[State, Event], ...] = (INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER,
                                           NON_INVITE_SERVER)


# The members the methods below use, as module globals: looking a member up on its
# Enum class costs ten times a global's lookup, on the path every message takes.
PROVISIONAL, SUCCESS, FAILURE, FINAL = E.PROVISIONAL, E.SUCCESS, E.FAILURE, E.FINAL
REQUEST, ACK, TRANSPORT_ERROR = E.REQUEST, E.ACK, E.TRANSPORT_ERROR
TIMER_A, TIMER_B, TIMER_D, TIMER_E, TIMER_F = E.TIMER_A, E.TIMER_B, E.TIMER_D, E.TIMER_E, E.TIMER_F
TIMER_G, TIMER_H, TIMER_I, TIMER_J = E.TIMER_G, E.TIMER_H, E.TIMER_I, E.TIMER_J
TIMER_K, TIMER_L, TIMER_M = E.TIMER_K, E.TIMER_L, E.TIMER_M
TERMINATED = S.TERMINATED


def _ignore(*args: object) -> None:
    """What a terminated transaction calls instead of its TU."""


def _response_event(status: int, invite: bool) -> Event:
    """What a response with C{status} is to a transaction (an INVITE one tells 2xx from
    3xx-6xx, §17.1.1.2 and §17.2.1)."""
    if status < 200:
        return PROVISIONAL
    if not invite:
        return FINAL
    return SUCCESS if status < 300 else FAILURE


def _reliable(target: Target) -> bool:
    return target.transport != "UDP"


class TransactionSend(Protocol):
    """What a transaction needs of the transport: send bytes to a target."""

    def send(self, data: bytes, target: Target,
             on_error: Callable[[object], None] | None = None,
             connection: object = None) -> None: ...


ResponseRoute = Callable[[Request, Source], tuple[Target, object]]
"""Where the responses of a server transaction go (RFC 3261 §18.2.2): (target, connection)."""


Steps = dict[tuple[State, Event], tuple[State, Action | None]]


class _Transaction:
    table: Table[State, Event]
    steps: Steps  # the table, bound to this class's actions
    state: State

    def __init__(self, layer: TransactionLayer, key: tuple[object, ...]):
        self.layer = layer
        self.key = key
        self.timers: dict[str, TimerHandle] = {}

    def _fire(self, event: Event, message: Request | Response | None = None) -> None:
        """Step the table: set the next state and run the transition's action on
        C{message} (the response received or to send; None for a timer)."""
        step = self.steps.get((self.state, event))
        if step is None:
            self.table.step(self.state, event)  # an explicit no-op, or InvalidTransition
            return
        self.state, action = step
        if action is not None:
            action(self, message)

    def _start_timer(self, name: str, delay: float, event: Event) -> None:
        # one queue per delay: A, E and G back off through a handful of delays (T1·2^n)
        self.timers[name] = self.layer.timers.call_later(delay, self._fire, event)

    def _start_wait(self, name: str, delay: float, event: Event) -> None:
        """A timer that only ends the transaction (D, H, I, J, K, L, M): it may run late."""
        self.timers[name] = self.layer.timers.expire_later(delay, self._fire, event)

    def _stop_timer(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def terminate(self, _: object = None) -> None:
        """Leave the machine now (a timer's end, shutdown, or a TU that gave up)."""
        self.state = TERMINATED
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        self.layer.forget(self)
        self._let_go()

    def _let_go(self) -> None:
        """Drop the callbacks into the TU: no cycle outlives the transaction."""


class ClientTransaction(_Transaction):
    """
    Client transaction (§17.1.1 INVITE, §17.1.2 non-INVITE). C{on_response(response)}
    receives every response for the TU; C{on_failure(exception)} a timeout or transport error.
    """

    def __init__(self, layer: TransactionLayer, request: Request, target: Target,
                 on_response: Callable[[Response], None],
                 on_failure: Callable[[Exception], None], connection: object = None,
                 data: bytes | None = None):
        super().__init__(layer, (request.branch, request.method))
        self.target = target
        self.request: Request | None = request
        self.method = request.method
        self.data: bytes | None = request.to_bytes() if data is None else data
        self.on_response = on_response
        self.on_failure = on_failure
        self.connection = connection
        self.invite = request.method == "INVITE"
        self.table, self.steps = _CLIENT_MACHINES[self.invite]
        self.state = self.table.initial
        self.ack_data: bytes | None = None
        self.interval = T1

    def start(self) -> None:
        self._send(self.data)
        retransmit, give_up = (TIMER_A, TIMER_B) if self.invite else (TIMER_E, TIMER_F)
        if not _reliable(self.target):
            self._start_timer("A", T1, retransmit)
        self._start_timer("B", 64 * T1, give_up)

    def receive(self, response: Response) -> None:
        self._fire(_response_event(response.status, self.invite), response)

    def transport_error(self, reason: object) -> None:
        """The transport could not deliver (§17.1.4), or the stream closed (§18.4)."""
        self.failure_reason = str(reason)
        self.failure_refused = refused(reason)
        self._fire(TRANSPORT_ERROR)

    def _send(self, data: bytes | None) -> None:
        assert data is not None
        self.layer.transport.send(data, self.target, self.transport_error, self.connection)

    def _let_go(self) -> None:
        self.on_response = self.on_failure = _ignore

    def _stop_request_timers(self) -> None:
        self._stop_timer("A")
        self._stop_timer("B")

    # Actions (named in the tables)

    def retransmit(self, _: object = None) -> None:
        self.layer.stats.retransmitted()
        self._send(self.data)
        self.interval = self.interval * 2 if self.invite else min(self.interval * 2, T2)
        self._start_timer("A", self.interval, TIMER_A if self.invite else TIMER_E)

    def time_out(self, _: object = None) -> None:
        self.layer.stats.timed_out(self.method)
        failed = self.on_failure
        self.terminate()
        failed(Timeout(f"no final response to {self.method}"))

    def fail_transport(self, _: object = None) -> None:
        failed = self.on_failure
        self.terminate()
        failed(TransportFailure(self.failure_reason, self.failure_refused))

    def pass_up(self, response: Response) -> None:
        self.on_response(response)

    def slow_down(self, response: Response) -> None:
        """§17.1.2.2: a provisional response: keep retransmitting, at T2."""
        self.interval = T2
        self.on_response(response)

    def complete(self, response: Response) -> None:
        """§17.1.2.2: a final response; Timer K only absorbs its retransmissions."""
        self._stop_request_timers()
        on_response = self.on_response
        self._let_go()  # keep nothing Timer K does not need
        self.request = self.data = None
        on_response(response)
        self._wait_or_end("K", T4, TIMER_K)

    def accept(self, response: Response) -> None:
        """RFC 6026 §7.2: "Accepted" absorbs 2xx retransmissions and forks for 64*T1."""
        self._stop_request_timers()
        self.request = self.data = None  # the TU keeps what a forked 2xx needs
        self.on_failure = _ignore  # nothing can fail any more
        self._start_wait("M", 64 * T1, TIMER_M)
        self.on_response(response)

    def ack_and_complete(self, response: Response) -> None:
        """§17.1.1.3: ACK a final non-2xx response; Timer D only resends the ACK."""
        self._stop_request_timers()
        self.ack_data = self._ack_for(response).to_bytes()
        self.request = self.data = None
        self._send(self.ack_data)
        on_response = self.on_response
        self._let_go()
        on_response(response)
        self._wait_or_end("D", WAIT_D, TIMER_D)

    def resend_ack(self, _: object = None) -> None:
        """§17.1.1.2: a retransmitted final response gets the ACK again."""
        self._send(self.ack_data)

    def _wait_or_end(self, name: str, delay: float, event: Event) -> None:
        if _reliable(self.target):
            self._fire(event)  # the timer's value is zero over a reliable transport
        else:
            self._start_wait(name, delay, event)

    def _ack_for(self, response: Response) -> Request:
        """§17.1.1.3: the ACK of a non-2xx final response, inside the transaction."""
        req = self.request
        assert req is not None
        ack = Request("ACK", req.uri)
        via, to, call_id = req.headers.get("Via"), response.headers.get("To"), req.call_id
        # framing refuses a message without them
        assert via is not None and to is not None and call_id is not None
        ack.headers.add("Via", via)
        for name in ("Route", "From"):
            for value in req.headers.values(name):
                ack.headers.add(name, value)
        ack.headers.add("To", to)
        ack.headers.add("Call-ID", call_id)
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        ack.headers.add("Max-Forwards", "70")
        return ack


class ServerTransaction(_Transaction):
    """
    Server transaction (§17.2.1 INVITE, §17.2.2 non-INVITE). The TU answers with
    C{respond(status, reason, headers, body)}; retransmitted requests are absorbed here.
    """

    def __init__(self, layer: TransactionLayer, request: Request, source: Source,
                 key: tuple[object, ...]):
        super().__init__(layer, key)
        self.request: Request | None = request
        self.source: Source | None = source
        self.reliable = source.transport != "UDP"
        self.route: tuple[Target, object] | None = None  # fixed by the first response
        self.invite = request.method == "INVITE"
        self.table, self.steps = _SERVER_MACHINES[self.invite]
        self.state = self.table.initial
        self.last: bytes | None = None
        self.to_tag: str | None = None
        self.final_sent = False
        self.on_ack: Callable[[Request], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        self.interval = T1

    def _let_go(self) -> None:
        self.on_ack = self.on_cancel = None

    def respond(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = (),
                body: bytes = b"", to_tag: str | None = None) -> Response | None:
        """Answer the request (None when a final response was already sent)."""
        if self.final_sent:
            return None
        request = self.request
        assert request is not None
        if to_tag is None and self.to_tag is None and status > 100 \
                and request.to_tag is None:
            self.to_tag = make_tag()  # §8.2.6.2: a UAS response names its side of the dialog
        response = response_to(request, status, reason, to_tag or self.to_tag)
        for name, value in headers:
            response.headers.add(name, value)
        response.body = body
        self.send_response(response)
        return response

    def send_response(self, response: Response) -> None:
        """Send a response the TU built: the table says whether and what follows."""
        self._fire(_response_event(response.status, self.invite), response)

    def receive_retransmission(self, request: Request) -> None:
        """The peer sent the request again, or (INVITE) the ACK of our non-2xx answer."""
        if request.method == "ACK":
            if self.invite:
                self._fire(ACK)
            return
        self._fire(REQUEST)

    def resend_last(self, _: object = None) -> None:
        """Send the last response again (a retransmitted request, Timer G, a relayed 2xx)."""
        if self.last is not None:
            assert self.route is not None
            target, connection = self.route
            self.layer.transport.send(self.last, target, connection=connection)

    def retransmit_until_ack(self, on_no_ack: Callable[[], None]) -> TimerHandle:
        """
        RFC 3261 §13.3.1.4: the 2xx this INVITE was answered with is the UAS core's to
        resend (over UDP) at T1, doubling up to T2, until the ACK arrives; the caller
        cancels the returned handle then. When a resend falls due 64*T1 or more after the
        start, it calls C{on_no_ack()} instead and stops.
        """
        return AnswerRetransmission(self, on_no_ack)

    # Actions (named in the tables)

    def send(self, response: Response) -> None:
        self.last = response.to_bytes()
        if self.route is None:
            assert self.request is not None and self.source is not None
            self.route = self.layer.response_route(self.request, self.source)
        self.resend_last()

    def send_accepted(self, response: Response) -> None:
        """RFC 6026 §8.5: "Accepted" absorbs INVITE retransmissions for Timer L."""
        self.send(response)
        self.final_sent = True
        self._start_wait("L", 64 * T1, TIMER_L)

    def send_rejection(self, response: Response) -> None:
        """§17.2.1: Timer G resends the final response (UDP) until the ACK, or Timer H."""
        self.send(response)
        self.final_sent = True
        self.request = self.source = None  # only the last response is sent again
        if not self.reliable:
            self._start_timer("G", T1, TIMER_G)
        self._start_timer("H", 64 * T1, TIMER_H)

    def send_final(self, response: Response) -> None:
        """§17.2.2: Timer J only resends the last response."""
        self.send(response)
        self.final_sent = True
        self.request = self.source = None
        if self.reliable:
            self._fire(TIMER_J)
        else:
            self._start_wait("J", 64 * T1, TIMER_J)

    def retransmit_final(self, _: object = None) -> None:
        self.layer.stats.retransmitted()
        self.resend_last()
        self.interval = min(self.interval * 2, T2)
        self._start_timer("G", self.interval, TIMER_G)

    def confirm(self, _: object = None) -> None:
        """§17.2.1: the ACK arrived; Timer I absorbs its retransmissions."""
        self._stop_timer("G")
        self._stop_timer("H")
        if self.reliable:
            self._fire(TIMER_I)
        else:
            self._start_wait("I", T4, TIMER_I)


class AnswerRetransmission:
    """The handle of L{ServerTransaction.retransmit_until_ack}: C{active()}, C{cancel()}."""

    def __init__(self, txn: ServerTransaction, on_no_ack: Callable[[], None]):
        self.txn: ServerTransaction | None = txn
        self.on_no_ack = on_no_ack
        self.timers = txn.layer.timers
        self.started = self.timers.clock.seconds()
        self.timer = self.timers.call_later(T1, self._due, T1)

    def _due(self, interval: float) -> None:
        txn = self.txn
        if txn is None:
            return
        if self.timers.clock.seconds() - self.started >= 64 * T1:
            self.txn = None
            self.on_no_ack()
            return
        if not txn.reliable:
            txn.layer.stats.retransmitted()
            txn.resend_last()
        interval = min(interval * 2, T2)
        self.timer = self.timers.call_later(interval, self._due, interval)

    def active(self) -> bool:
        return self.txn is not None

    def cancel(self) -> None:
        """The ACK came (or the call is over): resend no more."""
        self.txn = None
        if self.timer.active():
            self.timer.cancel()


_CLIENT_MACHINES: dict[bool, tuple[Table[State, Event], Steps]] = {
    True: (INVITE_CLIENT, bind(INVITE_CLIENT, ClientTransaction)),
    False: (NON_INVITE_CLIENT, bind(NON_INVITE_CLIENT, ClientTransaction)),
}
_SERVER_MACHINES: dict[bool, tuple[Table[State, Event], Steps]] = {
    True: (INVITE_SERVER, bind(INVITE_SERVER, ServerTransaction)),
    False: (NON_INVITE_SERVER, bind(NON_INVITE_SERVER, ServerTransaction)),
}


class TransactionLayer:
    """
    Owns every live transaction and matches messages to them (§17.1.3, §17.2.3).
    Messages no transaction claims go to the transaction user.
    """

    def __init__(self, timers: Timers, transport: TransactionSend,
                 response_route: ResponseRoute):
        self.timers = timers
        self.transport = transport
        self.response_route = response_route
        self.clients: dict[tuple[object, ...], ClientTransaction] = {}
        self.servers: dict[tuple[object, ...], ServerTransaction] = {}
        self.stats: SipStats = NO_STATS  # counts retransmissions and timeouts

    def client(self, request: Request, target: Target, on_response: Callable[[Response], None],
               on_failure: Callable[[Exception], None],
               connection: object = None, data: bytes | None = None) -> ClientTransaction:
        """Start a client transaction for C{request}; C{data}: it serialised, if it is."""
        txn = ClientTransaction(self, request, target, on_response, on_failure, connection,
                                data)
        self.clients[txn.key] = txn
        txn.start()
        return txn

    def match_response(self, response: Response) -> ClientTransaction | None:
        via = response.top_via
        if via is None:
            return None
        return self.clients.get((via.branch, response.cseq[1]))

    @staticmethod
    def server_key(request: Request, method: str | None = None) -> tuple[object, ...]:
        via = request.top_via
        assert via is not None
        method = method or request.method
        if method == "ACK":
            method = "INVITE"
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.host, via.port, method)
        # RFC 2543 fallback (§17.2.3): match on the request's identifying fields
        return (request.uri, request.from_tag, request.call_id, request.cseq[0], str(via),
                method)

    def match_request(self, request: Request) -> ServerTransaction | None:
        return self.servers.get(self.server_key(request))

    def server(self, request: Request, source: Source) -> ServerTransaction:
        key = self.server_key(request)
        txn = ServerTransaction(self, request, source, key)
        self.servers[key] = txn
        return txn

    def connection_lost(self, target: Target) -> None:
        """§18.4: a stream that closes under a pending request is a transport error."""
        for txn in [t for t in self.clients.values() if t.target == target]:
            txn.transport_error("connection lost")

    def forget(self, txn: _Transaction) -> None:
        table: dict[tuple[object, ...], ClientTransaction] | \
            dict[tuple[object, ...], ServerTransaction]
        table = self.clients if isinstance(txn, ClientTransaction) else self.servers
        if table.get(txn.key) is txn:
            del table[txn.key]

    def stop(self) -> None:
        for txn in [*self.clients.values(), *self.servers.values()]:
            txn.terminate()
