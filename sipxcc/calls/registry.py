"""The CallRegistry: every call by key and by id, the limits, and retention."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import islice
from typing import Protocol

from twisted.internet import defer

from sipxcc.calls.call import INVITE, Call, CallRequest
from sipxcc.calls.chain import Chain
from sipxcc.calls.clock import Clock, DelayedCall
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls, TransferNotPossible
from sipxcc.calls.hub import EventHub, Subscriber
from sipxcc.logs import logger
from sipxcc.timers import SLACK, Timers

log = logger(__name__)

#: seconds beyond C{timeout} + the REFER limit after which a call is torn down regardless
WATCHDOG_GRACE = 32 + 30
#: seconds between the log lines that summarise finished calls forgotten early
EVICTION_LOG_INTERVAL = 60.0


class Flow(Protocol):
    """What the registry asks of a call's flow (REFER or INVITE)."""

    def start(self) -> None: ...

    def hangup(self, why: str) -> None: ...

    # an INVITE-mode flow also has transfer(target: str, timeout: int | None) -> None


#: makes a call's flow: C{factory(call, on_end)}; the flow calls C{on_end(call)} once
FlowFactory = Callable[[Call, Callable[[Call], None]], Flow]


class Retention:
    """
    Finished calls kept for one result cache time, in the order they expire (each call's
    C{expiry} holds its deadline), and one reactor timer for the oldest, which may fire
    up to L{SLACK} late so that one wake-up forgets every call due by then. Like
    L{sipxcc.timers.FixedDelayTimers}, but without a handle per call (about 300 bytes
    less for each of up to 100,000 retained calls): a call forgotten early is taken out
    of the chain with L{remove}.
    """

    def __init__(self, clock: Clock, delay: float, expire: Callable[[Call], None]):
        self.clock = clock
        self.delay = delay
        self.expire = expire
        self.chain = Chain("due_prev", "due_next")
        self.wakeup: DelayedCall | None = None

    def add(self, call: Call) -> None:
        call.expiry = self.clock.seconds() + self.delay
        self.chain.append(call)
        if self.wakeup is None:
            self.wakeup = self.clock.callLater(self.delay + SLACK, self._run)

    def remove(self, call: Call) -> None:
        """Forget C{call} before its time (the wake-up, if any, finds one call fewer)."""
        self.chain.remove(call)
        call.expiry = None

    def _run(self) -> None:
        self.wakeup = None
        now, chain = self.clock.seconds(), self.chain
        while chain.oldest is not None and chain.oldest.expiry <= now:
            call = chain.oldest
            self.remove(call)
            self.expire(call)
        if chain.oldest is not None:
            self.wakeup = self.clock.callLater(chain.oldest.expiry - now + SLACK, self._run)

    def stop(self) -> None:
        if self.wakeup is not None and self.wakeup.active():
            self.wakeup.cancel()
        self.wakeup = None
        while self.chain.oldest is not None:
            self.remove(self.chain.oldest)


class _Owner:
    """One owner's calls, in progress and retained, in placing order; and how many are in
    progress, and its finished ones in finishing order."""

    __slots__ = ("calls", "active", "finished")

    def __init__(self) -> None:
        self.calls = Chain("owner_prev", "owner_next")
        self.active = 0
        self.finished = Chain("owner_done_prev", "owner_done_next")


class CallRegistry:
    """
    Owns the calls. C{flows} maps a mode ("REFER", "INVITE") to a factory
    C{factory(call, on_end) -> flow}; a flow has C{start()}, C{hangup()} and, for INVITE
    calls, C{transfer(target)}, and calls C{on_end(call)} exactly once when the call is over.
    C{observers} see each new call before its flow starts.

    A finished call stays queryable for its C{result_cache_time}, at most
    C{max_result_cache_time}; beyond C{max_retained} finished calls in all, or
    C{max_retained_per_owner} of one owner, the one that finished first (of all, or of
    that owner) is forgotten at once. C{evicted} counts those; a warning sums them up,
    at once for the first and then at most once per C{eviction_log_interval}.
    """

    def __init__(self, clock: Clock, flows: dict[str, FlowFactory],
                 max_calls: int = 2000, max_calls_per_agent: int = 10,
                 observers: tuple[Callable[[Call], None], ...] = (), *,
                 max_retained: int = 100_000, max_retained_per_owner: int = 1000,
                 max_result_cache_time: int = 86400,
                 eviction_log_interval: float = EVICTION_LOG_INTERVAL):
        self.clock = clock
        self.timers = Timers(clock)
        self.retention: dict[float, Retention] = {}
        self.observers = observers
        self.flows = flows
        self.max_calls = max_calls
        self.max_calls_per_agent = max_calls_per_agent
        self.max_retained = max_retained
        self.max_retained_per_owner = max_retained_per_owner
        self.max_result_cache_time = max_result_cache_time
        self.by_id: dict[str, Call] = {}  # in placing order: newest last
        self.by_key: dict[tuple[str, str, str], Call] = {}
        self.owners: dict[str, _Owner] = {}  # each owner's calls, in placing order
        self.finished = Chain("done_prev", "done_next")  # retained calls, in finishing order
        self.active: set[Call] = set()
        self.evicted = 0
        self._eviction_log_interval = eviction_log_interval
        self._evictions = _Evictions()
        self._eviction_log: DelayedCall | None = None
        self._idle_waiters: list[defer.Deferred[None]] = []
        self.events = EventHub()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Follow every call's events in order (L{EventHub.subscribe}); returns the
        function that stops it."""
        return self.events.subscribe(subscriber)

    @property
    def active_count(self) -> int:
        return len(self.active)

    @property
    def retained_count(self) -> int:
        """Finished calls still queryable."""
        return self.finished.size

    def place(self, request: CallRequest, call_id: str | None = None,
              created: float | None = None) -> Call:
        """Start a call for C{request} (its id and creation time: C{call_id} and
        C{created} when given, as a shared registry recorded them first)."""
        previous = self.by_key.get(request.key)
        replacing = previous is not None and not previous.ended
        if previous is not None and replacing and INVITE in (previous.mode, request.method):
            raise CallInProgress(f"Call in progress for {request.calling} to {request.called}")
        agent = request.agent.identity
        owner = self.owners.get(agent)
        if len(self.active) - replacing >= self.max_calls:
            raise TooManyCalls("Too many calls in progress")
        if owner is not None and owner.active - replacing >= self.max_calls_per_agent:
            raise AgentLimit(f"Too many calls in progress for {agent}")
        if previous is not None and replacing:
            previous.flow.hangup("replaced")
        if owner is None:
            owner = self.owners[agent] = _Owner()
        call = Call(request, self.clock.seconds() if created is None else created, call_id)
        self.by_id[call.id] = call
        self.by_key[request.key] = call
        self.active.add(call)
        owner.calls.append(call)
        owner.active += 1
        call.listen(self.events.publish)
        for observe in self.observers:
            observe(call)
        call.flow = self.flows[request.method](call, self._ended)
        # INVITE mode rings two phones one after the other before it is connected
        setup_time = request.timeout * (2 if request.method == INVITE else 1)
        call.expiry = self.timers.call_later(setup_time + WATCHDOG_GRACE, self._watchdog, call)
        call.flow.start()
        return call

    def lookup(self, key: tuple[str, str, str]) -> Call | None:
        return self.by_key.get(key)

    def get(self, call_id: str) -> Call | None:
        return self.by_id.get(call_id)

    def calls_of(self, owner: str | None, limit: int) -> list[Call]:
        """Up to C{limit} calls of C{owner} (None: of everyone), newest first."""
        if owner is None:
            calls = reversed(self.by_id.values())
        else:
            record = self.owners.get(owner)
            if record is None:
                return []
            calls = record.calls.newest_first()
        return list(islice(calls, max(limit, 0)))

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

    def cache_time(self, call: Call) -> int:
        """How long C{call} stays queryable once finished: its request's, within the cap."""
        return self.request_cache_time(call.request)

    def request_cache_time(self, request: CallRequest) -> int:
        """How long a call for C{request} stays queryable once finished."""
        return min(request.result_cache_time, self.max_result_cache_time)

    def _ended(self, call: Call) -> None:
        if call not in self.active:
            return
        self.active.discard(call)
        owner = self.owners[call.owner]
        owner.active -= 1
        if call.expiry is not None and call.expiry.active():
            call.expiry.cancel()
        call.expiry = None
        call.release()
        delay = self.cache_time(call)
        retention = self.retention.get(delay)
        if retention is None:
            retention = self.retention[delay] = Retention(self.clock, delay, self._forget)
        retention.add(call)
        self.finished.append(call)
        owner.finished.append(call)
        if owner.finished.size > self.max_retained_per_owner:
            self._evict(owner.finished.oldest, per_owner=True)  # type: ignore[arg-type]  # size > 0: not None
        if self.finished.size > self.max_retained:
            self._evict(self.finished.oldest, per_owner=False)  # type: ignore[arg-type]  # size > 0: not None
        if not self.active:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                if not d.called:  # not given up on (see idle)
                    d.callback(None)

    def _evict(self, call: Call, per_owner: bool) -> None:
        """Forget a finished call before its result cache time is up (a cap was reached)."""
        self.retention[self.cache_time(call)].remove(call)
        self._forget(call)
        self.evicted += 1
        self._evictions.add(call.owner, per_owner)
        if self._eviction_log is None:
            self._log_evictions()

    def _log_evictions(self) -> None:
        """Sum up the evictions since the last line; go quiet after an interval without."""
        evictions, self._evictions = self._evictions, _Evictions()
        if not evictions.total:
            self._eviction_log = None
            return
        log.warn("forgot {total} finished calls early (retention caps reached): "
                 "{per_owner} over calls.max_retained_per_owner = {owner_cap} (most: "
                 "{owners}), {overall} over calls.max_retained = {cap}; next summary in at "
                 "most {interval:g} s", total=evictions.total, per_owner=evictions.per_owner,
                 owner_cap=self.max_retained_per_owner, overall=evictions.overall,
                 cap=self.max_retained, owners=evictions.top_owners(),
                 interval=self._eviction_log_interval)
        self._eviction_log = self.clock.callLater(self._eviction_log_interval,
                                                  self._log_evictions)

    def _forget(self, call: Call) -> None:
        self.by_id.pop(call.id, None)
        if self.by_key.get(call.key) is call:
            del self.by_key[call.key]
        self.finished.remove(call)
        owner = self.owners[call.owner]
        owner.finished.remove(call)
        owner.calls.remove(call)
        if not owner.calls.size:
            del self.owners[call.owner]

    def shutdown(self, timeout: float = 5.0) -> defer.Deferred[None]:
        """Hang up every call in progress; fires when all have ended or C{timeout} passed."""
        for call in list(self.active):
            call.flow.hangup("shutdown")
        return self.idle(timeout)

    def idle(self, timeout: float) -> defer.Deferred[None]:
        """Fires once no call is in progress, or when C{timeout} seconds have passed."""
        if not self.active:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(d)

        def give_up() -> None:
            if not d.called:
                d.callback(None)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result
        timer = self.clock.callLater(timeout, give_up)
        d.addBoth(stop_timer)
        return d

    def clear(self) -> None:
        """Cancel every retention timer (tests and shutdown)."""
        for call in self.active:
            if call.expiry is not None and call.expiry.active():
                call.expiry.cancel()
        for retention in self.retention.values():
            retention.stop()
        if self._eviction_log is not None and self._eviction_log.active():
            self._eviction_log.cancel()
        self._eviction_log = None
        while self.finished.oldest is not None:
            self.finished.remove(self.finished.oldest)
        for owner in self.owners.values():
            for chain in (owner.calls, owner.finished):
                while chain.oldest is not None:
                    chain.remove(chain.oldest)
        self.owners.clear()
        self.by_id.clear()
        self.by_key.clear()


class _Evictions:
    """Finished calls forgotten early since the last summary: how many, why, whose."""

    __slots__ = ("per_owner", "overall", "owners")

    def __init__(self) -> None:
        self.per_owner = self.overall = 0
        self.owners: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.per_owner + self.overall

    def add(self, owner: str, per_owner: bool) -> None:
        if per_owner:
            self.per_owner += 1
        else:
            self.overall += 1
        if owner in self.owners or len(self.owners) < 1000:  # names, not a log per call
            self.owners[owner] += 1

    def top_owners(self, count: int = 3) -> str:
        return ", ".join(f"{owner} {n}" for owner, n in self.owners.most_common(count))
