"""
Timers that all share one delay (Timer B/F/H/J = 64*T1, K/I = T4, retention times...):
they expire in the order they were set, so one reactor timer for the oldest serves them
all, instead of one heap entry per transaction.

Cancelling never touches the reactor: the wake-up stays set and, when it fires with
nothing due, goes back to sleep until the next live timer (at most one idle wake-up per
delay). What a cancelled timer leaves in the queue is a (deadline, number) tuple, which
the garbage collector does not track.

Timers that only let go of state (a transaction's wait in Completed, a finished call's
retention) may fire up to L{SLACK} late: one wake-up then ends every such timer due in
that window, instead of one reactor wake-up per timer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any, Protocol

SLACK = 0.25
"""Seconds an C{expire_later} timer may fire late, so that one wake-up serves many."""


class TimerHandle(Protocol):
    """The part of C{IDelayedCall} a timer's owner uses: C{active()} and C{cancel()}."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The part of C{IReactorTime} the timers use (a reactor, or a test's C{task.Clock})."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., object], *args: Any,
                  **kw: Any) -> TimerHandle: ...


class FixedTimer:
    """A handle like IDelayedCall's: C{active()} and C{cancel()} (a L{TimerHandle})."""

    __slots__ = ("owner", "number", "function", "args")

    def __init__(self, owner: FixedDelayTimers, number: int,
                 function: Callable[..., object] | None, args: tuple[Any, ...] | None):
        self.owner = owner
        self.number = number
        self.function = function
        self.args = args

    def active(self) -> bool:
        return self.function is not None

    def cancel(self) -> None:
        if self.function is None:
            return
        self.function = self.args = None  # let go of what it would have called
        owner = self.owner
        del owner.live[self.number]
        queue = owner.queue
        while queue and queue[0][1] not in owner.live:
            queue.popleft()


class FixedDelayTimers:
    """Every timer set here fires C{delay} (to C{delay + slack}) seconds after it was set,
    oldest first."""

    def __init__(self, clock: Clock, delay: float, slack: float = 0.0):
        self.clock = clock
        self.delay = delay
        self.slack = slack
        self.queue: deque[tuple[float, int]] = deque()
        self.live: dict[int, FixedTimer] = {}
        self.numbers = count()
        self.wakeup: TimerHandle | None = None

    def call_later(self, function: Callable[..., object], *args: Any) -> FixedTimer:
        number = next(self.numbers)
        timer = self.live[number] = FixedTimer(self, number, function, args)
        self.queue.append((self.clock.seconds() + self.delay, number))
        if self.wakeup is None:
            self.wakeup = self.clock.callLater(self.delay + self.slack, self._expire)
        return timer

    def _expire(self) -> None:
        self.wakeup = None
        now = self.clock.seconds()
        queue, live = self.queue, self.live
        while queue:
            deadline, number = queue[0]
            timer = live.get(number)
            if timer is None:
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                del live[number]
                function, args = timer.function, timer.args
                timer.function = timer.args = None
                assert function is not None and args is not None
                function(*args)
            else:
                break
        if queue:
            self.wakeup = self.clock.callLater(max(0.0, queue[0][0] - now) + self.slack,
                                               self._expire)

    def stop(self) -> None:
        """Cancel everything (shutdown)."""
        for timer in list(self.live.values()):
            timer.function = timer.args = None
        self.live.clear()
        self.queue.clear()
        if self.wakeup is not None and self.wakeup.active():
            self.wakeup.cancel()
        self.wakeup = None


class Timers:
    """C{call_later(delay, f, *args)}: every delay gets its own L{FixedDelayTimers};
    C{expire_later} likewise, with L{SLACK}."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.fixed: dict[float, FixedDelayTimers] = {}
        self.lax: dict[float, FixedDelayTimers] = {}

    def call_later(self, delay: float, function: Callable[..., object], *args: Any) -> FixedTimer:
        queue = self.fixed.get(delay)
        if queue is None:
            queue = self.fixed[delay] = FixedDelayTimers(self.clock, delay)
        return queue.call_later(function, *args)

    def expire_later(self, delay: float, function: Callable[..., object],
                     *args: Any) -> FixedTimer:
        """Like C{call_later}, for timers that may fire up to L{SLACK} late."""
        queue = self.lax.get(delay)
        if queue is None:
            queue = self.lax[delay] = FixedDelayTimers(self.clock, delay, SLACK)
        return queue.call_later(function, *args)

    def stop(self) -> None:
        """Cancel everything (shutdown)."""
        for queue in [*self.fixed.values(), *self.lax.values()]:
            queue.stop()
