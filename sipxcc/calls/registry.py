"""The CallRegistry: every call by key and by id, the limits, and retention."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer

from sipxcc.calls.call import INVITE, Call, CallRequest
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls, TransferNotPossible
from sipxcc.sip.timers import SLACK, Timers

#: seconds beyond C{timeout} + the REFER limit after which a call is torn down regardless
WATCHDOG_GRACE = 32 + 30


class Retention:
    """
    Finished calls kept for one result cache time, in the order they expire: a
    (deadline, call) entry each and one reactor timer for the oldest, which may fire up to
    L{SLACK} late so that one wake-up forgets every call due by then. Like
    L{sipxcc.sip.timers.FixedDelayTimers}, but retention is never cancelled, so there is no
    handle per call (about 300 bytes less for each of up to 100,000 retained calls).
    """

    def __init__(self, clock, delay: float, expire: Callable[[Call], None]):
        self.clock = clock
        self.delay = delay
        self.expire = expire
        self.queue: deque[tuple[float, Call]] = deque()
        self.wakeup = None

    def add(self, call: Call) -> None:
        self.queue.append((self.clock.seconds() + self.delay, call))
        if self.wakeup is None:
            self.wakeup = self.clock.callLater(self.delay + SLACK, self._run)

    def _run(self) -> None:
        self.wakeup = None
        now, queue = self.clock.seconds(), self.queue
        while queue and queue[0][0] <= now:
            self.expire(queue.popleft()[1])
        if queue:
            self.wakeup = self.clock.callLater(queue[0][0] - now + SLACK, self._run)

    def stop(self) -> None:
        if self.wakeup is not None and self.wakeup.active():
            self.wakeup.cancel()
        self.wakeup = None
        self.queue.clear()


class CallRegistry:
    """
    Owns the calls. C{flows} maps a mode ("REFER", "INVITE") to a factory
    C{factory(call, on_end) -> flow}; a flow has C{start()}, C{hangup()} and, for INVITE
    calls, C{transfer(target)}, and calls C{on_end(call)} exactly once when the call is over.
    C{observers} see each new call before its flow starts.
    """

    def __init__(self, clock, flows: dict[str, Callable], max_calls: int = 2000,
                 max_calls_per_agent: int = 10, observers: tuple[Callable, ...] = ()):
        self.clock = clock
        self.timers = Timers(clock)
        self.retention: dict[float, Retention] = {}
        self.observers = observers
        self.flows = flows
        self.max_calls = max_calls
        self.max_calls_per_agent = max_calls_per_agent
        self.by_id: dict[str, Call] = {}  # in placing order: newest last
        self.by_key: dict[tuple[str, str, str], Call] = {}
        self.active: set[Call] = set()
        self.per_agent: dict[str, int] = {}
        self._idle_waiters: list[defer.Deferred] = []

    @property
    def active_count(self) -> int:
        return len(self.active)

    def place(self, request: CallRequest) -> Call:
        previous = self.by_key.get(request.key)
        replacing = previous is not None and not previous.ended
        if replacing and (previous.mode == INVITE or request.method == INVITE):
            raise CallInProgress(f"Call in progress for {request.calling} to {request.called}")
        agent = request.agent.identity
        if len(self.active) - replacing >= self.max_calls:
            raise TooManyCalls("Too many calls in progress")
        if self.per_agent.get(agent, 0) - replacing >= self.max_calls_per_agent:
            raise AgentLimit(f"Too many calls in progress for {agent}")
        if replacing:
            previous.flow.hangup("replaced")
        call = Call(request, self.clock.seconds())
        self.by_id[call.id] = call
        self.by_key[request.key] = call
        self.active.add(call)
        self.per_agent[agent] = self.per_agent.get(agent, 0) + 1
        for observe in self.observers:
            observe(call)
        call.flow = self.flows[request.method](call, self._ended)
        # INVITE mode rings two phones one after the other before it is connected
        setup_time = request.timeout * (2 if request.method == INVITE else 1)
        call.expiry = self.timers.call_later(setup_time + WATCHDOG_GRACE, self._watchdog, call)
        call.flow.start()
        return call

    def lookup(self, key) -> Call | None:
        return self.by_key.get(key)

    def get(self, call_id: str) -> Call | None:
        return self.by_id.get(call_id)

    def calls_of(self, owner: str | None, limit: int) -> list[Call]:
        found = []
        for call in reversed(self.by_id.values()):
            if owner is None or call.owner == owner:
                found.append(call)
                if len(found) >= limit:
                    break
        return found

    def hangup(self, call: Call) -> None:
        if not call.ended:
            call.flow.hangup("hangup")

    def transfer(self, call: Call, target: str, timeout: int | None = None) -> None:
        if call.ended or call.mode != INVITE:
            raise TransferNotPossible("Call not in progress in INVITE mode")
        call.flow.transfer(target, timeout)

    def _watchdog(self, call: Call) -> None:
        """Tear down a call that never got going; a connected INVITE-mode call may last."""
        call.expiry = None
        if call.mode == INVITE and call.state in ("connected", "transferring"):
            return
        if not call.ended:
            call.flow.hangup("watchdog")
        if not call.ended:  # the flow could not end it by itself: stop waiting for the peer
            call.finish("failed")
            self._ended(call)

    def _ended(self, call: Call) -> None:
        if call not in self.active:
            return
        self.active.discard(call)
        agent = call.owner
        left = self.per_agent.get(agent, 1) - 1
        if left:
            self.per_agent[agent] = left
        else:
            self.per_agent.pop(agent, None)
        if call.expiry is not None and call.expiry.active():
            call.expiry.cancel()
        call.expiry = None
        call.release()
        delay = call.request.result_cache_time
        retention = self.retention.get(delay)
        if retention is None:
            retention = self.retention[delay] = Retention(self.clock, delay, self._expire)
        retention.add(call)
        if not self.active:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def _expire(self, call: Call) -> None:
        self.by_id.pop(call.id, None)
        if self.by_key.get(call.key) is call:
            del self.by_key[call.key]

    def shutdown(self, timeout: float = 5.0) -> defer.Deferred:
        """Hang up every call in progress; fires when all have ended or C{timeout} passed."""
        for call in list(self.active):
            call.flow.hangup("shutdown")
        if not self.active:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        timer = self.clock.callLater(timeout, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def clear(self) -> None:
        """Cancel every retention timer (tests and shutdown)."""
        for call in list(self.by_id.values()):
            if call.expiry is not None and call.expiry.active():
                call.expiry.cancel()
        for retention in self.retention.values():
            retention.stop()
        self.by_id.clear()
        self.by_key.clear()
