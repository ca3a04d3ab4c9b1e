"""
RFC 3261 §17 transactions: the INVITE and non-INVITE client and server state machines,
their timers (A–K, and RFC 6026's L and M) on an injected clock, and §17.1.3/§17.2.3
matching.
"""

from __future__ import annotations

from collections.abc import Callable

from sipxcc.sip.message import Request, Response, make_tag, response_to
from sipxcc.sip.timers import Timers
from sipxcc.sip.transport import Target

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC_COOKIE = "z9hG4bK"


class Timeout(Exception):
    """No final response within Timer B/F (RFC 3261 §17.1.1.2, §17.1.2.2): report 408."""


class TransportFailure(Exception):
    """The transport could not deliver the request (RFC 3261 §17.1.4): report 503."""


def _ignore(*args) -> None:
    """What a terminated transaction calls instead of its TU."""


def _reliable(target: Target) -> bool:
    return target.transport != "UDP"


class _Transaction:
    state = ""

    def __init__(self, layer: TransactionLayer, key, target: Target):
        self.layer = layer
        self.key = key
        self.target = target
        self.timers: dict[str, object] = {}

    def _start_timer(self, name: str, delay: float, fired: Callable[[], None]) -> None:
        # one queue per delay: A, E and G back off through a handful of delays (T1·2^n)
        self.timers[name] = self.layer.timers.call_later(delay, fired)

    def _start_wait(self, name: str, delay: float) -> None:
        """A timer that only ends the transaction (D, H, I, J, K, L, M): it may run late."""
        self.timers[name] = self.layer.timers.expire_later(delay, self._terminate)

    def _stop_timer(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _terminate(self) -> None:
        self.state = "terminated"
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

    def __init__(self, layer, request: Request, target: Target, on_response, on_failure,
                 connection=None):
        super().__init__(layer, (request.branch, request.method), target)
        self.request: Request | None = request
        self.method = request.method
        self.data = request.to_bytes()
        self.on_response = on_response
        self.on_failure = on_failure
        self.connection = connection
        self.invite = request.method == "INVITE"
        self.ack_data: bytes | None = None
        self.interval = T1

    def start(self) -> None:
        self.state = "calling" if self.invite else "trying"
        self._send()
        if not _reliable(self.target):
            self._start_timer("A", T1, self._retransmit)
        self._start_timer("B", 64 * T1, self._timed_out)

    def _send(self, data: bytes | None = None) -> None:
        self.layer.transport.send(data or self.data, self.target, self._transport_error,
                                  self.connection)

    def _retransmit(self) -> None:
        if self.state not in ("calling", "trying", "proceeding"):
            return
        if self.invite and self.state == "proceeding":
            return  # §17.1.1.2: an INVITE stops retransmitting on a provisional response
        self._send()
        self.interval = self.interval * 2 if self.invite else min(self.interval * 2, T2)
        self._start_timer("A", self.interval, self._retransmit)

    def _timed_out(self) -> None:
        if self.invite and self.state == "proceeding":
            return  # §17.1.1.2: Timer B only ends a transaction still "Calling"
        if self.state in ("calling", "trying", "proceeding"):
            failed = self.on_failure
            self._terminate()
            failed(Timeout(f"no final response to {self.method}"))
        elif self.state == "accepted":
            self._terminate()

    def _transport_error(self, reason) -> None:
        if self.state in ("calling", "trying", "proceeding"):
            failed = self.on_failure
            self._terminate()
            failed(TransportFailure(str(reason)))

    def _let_go(self) -> None:
        self.on_response = self.on_failure = _ignore

    def cancel_timers_for_final(self) -> None:
        self._stop_timer("A")
        self._stop_timer("B")

    def receive(self, response: Response) -> None:
        status = response.status
        state = self.state
        if status < 200:
            if state in ("calling", "trying", "proceeding"):
                if state != "proceeding" and not self.invite:
                    self.interval = T2  # §17.1.2.2: keep retransmitting at T2
                self.state = "proceeding"
                self.on_response(response)
            return
        if self.invite:
            self._receive_invite_final(response)
        elif state in ("trying", "proceeding"):
            self.cancel_timers_for_final()
            self.state = "completed"
            on_response = self.on_response
            self._let_go()  # Timer K only absorbs retransmissions: keep nothing else
            self.request = self.data = None
            on_response(response)
            if _reliable(self.target):
                self._terminate()
            else:
                self._start_wait("K", T4)

    def _receive_invite_final(self, response: Response) -> None:
        state = self.state
        if 200 <= response.status < 300:
            if state in ("calling", "proceeding"):
                # RFC 6026 §7.2: "Accepted" absorbs 2xx retransmissions and forks for 64*T1
                self.cancel_timers_for_final()
                self.state = "accepted"
                self.request = self.data = None  # the TU keeps what a forked 2xx needs
                self.on_failure = _ignore  # nothing can fail any more
                self._start_wait("M", 64 * T1)
                self.on_response(response)
            elif state == "accepted":
                self.on_response(response)  # the dialog layer ACKs retransmitted/forked 2xx
            return
        if state in ("calling", "proceeding"):
            self.cancel_timers_for_final()
            self.state = "completed"
            self.ack_data = self._ack_for(response).to_bytes()
            self.request = self.data = None  # Timer D only resends the ACK
            self._send(self.ack_data)
            on_response = self.on_response
            self._let_go()
            on_response(response)
            if _reliable(self.target):
                self._terminate()
            else:
                self._start_wait("D", 32.0)
        elif state == "completed" and self.ack_data is not None:
            self._send(self.ack_data)  # §17.1.1.2: retransmitted final response

    def _ack_for(self, response: Response) -> Request:
        """§17.1.1.3: the ACK of a non-2xx final response, inside the transaction."""
        req = self.request
        ack = Request("ACK", req.uri)
        ack.headers.add("Via", req.headers.get("Via"))
        for name in ("Route", "From"):
            for value in req.headers.values(name):
                ack.headers.add(name, value)
        ack.headers.add("To", response.headers.get("To"))
        ack.headers.add("Call-ID", req.call_id)
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        ack.headers.add("Max-Forwards", "70")
        return ack


class ServerTransaction(_Transaction):
    """
    Server transaction (§17.2.1 INVITE, §17.2.2 non-INVITE). The TU answers with
    C{respond(status, reason, headers, body)}; retransmitted requests are absorbed here.
    """

    def __init__(self, layer, request: Request, source, key):
        super().__init__(layer, key, None)
        self.request: Request | None = request
        self.source = source
        self.reliable = source.transport != "UDP"
        self.route: tuple | None = None  # where responses go, fixed by the first one
        self.invite = request.method == "INVITE"
        self.last: bytes | None = None
        self.to_tag: str | None = None
        self.final_sent = False
        self.on_ack: Callable[[Request], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        self.interval = T1
        self.state = "proceeding" if self.invite else "trying"

    def _let_go(self) -> None:
        self.on_ack = self.on_cancel = None

    def resend_last(self) -> None:
        """Send the last response again (a retransmitted request, Timer G, a relayed 2xx)."""
        if self.last is not None:
            target, connection = self.route
            self.layer.transport.send(self.last, target, connection=connection)

    def respond(self, status: int, reason: str, headers=(), body: bytes = b"",
                to_tag: str | None = None) -> Response | None:
        if self.final_sent:
            return None
        if to_tag is None and self.to_tag is None and status > 100 \
                and self.request.to_tag is None:
            self.to_tag = make_tag()  # §8.2.6.2: a UAS response names its side of the dialog
        response = response_to(self.request, status, reason, to_tag or self.to_tag)
        for name, value in headers:
            response.headers.add(name, value)
        response.body = body
        self.send_response(response)
        return response

    def send_response(self, response: Response) -> None:
        if self.final_sent:
            return
        self.last = response.to_bytes()
        if self.route is None:
            self.route = self.layer.response_route(self.request, self.source)
        self.resend_last()
        status = response.status
        if status < 200:
            if not self.invite:
                self.state = "proceeding"
            return
        self.final_sent = True
        if self.invite and status < 300:
            # RFC 6026 §8.5: "Accepted" absorbs INVITE retransmissions for Timer L
            self.state = "accepted"
            self._start_wait("L", 64 * T1)
        elif self.invite:
            self.state = "completed"
            self.request = self.source = None  # only the last response is sent again
            if not self.reliable:
                self._start_timer("G", T1, self._retransmit_final)
            self._start_timer("H", 64 * T1, self._terminate)
        else:
            self.state = "completed"
            self.request = self.source = None  # Timer J only resends the last response
            if self.reliable:
                self._terminate()
            else:
                self._start_wait("J", 64 * T1)

    def _retransmit_final(self) -> None:
        if self.state != "completed":
            return
        self.resend_last()
        self.interval = min(self.interval * 2, T2)
        self._start_timer("G", self.interval, self._retransmit_final)

    def receive_retransmission(self, request: Request) -> None:
        if request.method == "ACK":
            if self.invite and self.state == "completed":
                self.state = "confirmed"
                self._stop_timer("G")
                self._stop_timer("H")
                if self.reliable:
                    self._terminate()
                else:
                    self._start_wait("I", T4)
            return
        if self.state in ("proceeding", "trying", "completed", "accepted"):
            self.resend_last()


class TransactionLayer:
    """
    Owns every live transaction and matches messages to them (§17.1.3, §17.2.3).
    Messages no transaction claims go to the transaction user.
    """

    def __init__(self, clock, transport):
        self.clock = clock
        self.timers = Timers(clock)
        self.transport = transport
        self.clients: dict[tuple, ClientTransaction] = {}
        self.servers: dict[tuple, ServerTransaction] = {}
        self.response_route = None  # set by the UA core: where a response goes (§18.2.2)

    def client(self, request: Request, target: Target, on_response, on_failure,
               connection=None) -> ClientTransaction:
        txn = ClientTransaction(self, request, target, on_response, on_failure, connection)
        self.clients[txn.key] = txn
        txn.start()
        return txn

    def match_response(self, response: Response) -> ClientTransaction | None:
        via = response.top_via
        if via is None:
            return None
        return self.clients.get((via.branch, response.cseq[1]))

    @staticmethod
    def server_key(request: Request, method: str | None = None) -> tuple:
        via = request.top_via
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

    def server(self, request: Request, source) -> ServerTransaction:
        key = self.server_key(request)
        txn = ServerTransaction(self, request, source, key)
        self.servers[key] = txn
        return txn

    def connection_lost(self, target: Target) -> None:
        """§18.4: a stream that closes under a pending request is a transport error."""
        for txn in [t for t in self.clients.values() if t.target == target]:
            txn._transport_error("connection lost")

    def forget(self, txn: _Transaction) -> None:
        table = self.clients if isinstance(txn, ClientTransaction) else self.servers
        if table.get(txn.key) is txn:
            del table[txn.key]

    def stop(self) -> None:
        for txn in list(self.clients.values()) + list(self.servers.values()):
            txn._terminate()
        self.timers.stop()
