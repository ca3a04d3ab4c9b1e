"""
Timers that all share one delay (Timer B/F/H/J = 64*T1, K/I = T4, retention times...):
they expire in the order they were set, so one reactor timer for the oldest serves them
all, instead of one heap entry per transaction.
"""

from __future__ import annotations

from collections import deque
from typing import Callable


class FixedTimer:
    """A handle like IDelayedCall's: C{active()} and C{cancel()}."""

    __slots__ = ("deadline", "function", "args", "pending", "owner")

    def __init__(self, owner: FixedDelayTimers, deadline: float, function: Callable,
                 args: tuple):
        self.owner = owner
        self.deadline = deadline
        self.function = function
        self.args = args
        self.pending = True

    def active(self) -> bool:
        return self.pending

    def cancel(self) -> None:
        self.pending = False
        self.function = self.args = None  # let go of what it would have called
        owner = self.owner
        if owner.queue and owner.queue[0] is self:
            owner.drop_cancelled_head()


class FixedDelayTimers:
    """Every timer set here fires C{delay} seconds after it was set, oldest first."""

    def __init__(self, clock, delay: float):
        self.clock = clock
        self.delay = delay
        self.queue: deque[FixedTimer] = deque()
        self.wakeup = None

    def call_later(self, function: Callable, *args) -> FixedTimer:
        timer = FixedTimer(self, self.clock.seconds() + self.delay, function, args)
        self.queue.append(timer)
        if self.wakeup is None:
            self.wakeup = self.clock.callLater(self.delay, self._expire)
        return timer

    def _expire(self) -> None:
        self.wakeup = None
        now = self.clock.seconds()
        queue = self.queue
        while queue and (queue[0].deadline <= now or not queue[0].pending):
            timer = queue.popleft()
            if timer.pending:
                timer.pending = False
                function, args = timer.function, timer.args
                timer.function = timer.args = None
                function(*args)
        while queue and not queue[0].pending:
            queue.popleft()
        if queue:
            self.wakeup = self.clock.callLater(max(0.0, queue[0].deadline - now), self._expire)

    def drop_cancelled_head(self) -> None:
        """Forget cancelled timers at the front; sleep until the next live one, if any."""
        queue = self.queue
        while queue and not queue[0].pending:
            queue.popleft()
        if self.wakeup is not None and self.wakeup.active():
            if not queue:
                self.wakeup.cancel()
                self.wakeup = None
            elif self.wakeup.getTime() < queue[0].deadline:
                self.wakeup.reset(queue[0].deadline - self.clock.seconds())

    def stop(self) -> None:
        """Cancel everything (shutdown)."""
        queue, self.queue = self.queue, deque()
        for timer in queue:
            timer.cancel()
        if self.wakeup is not None and self.wakeup.active():
            self.wakeup.cancel()
        self.wakeup = None


class Timers:
    """C{call_later(delay, f, *args)}: fixed delays share a queue, others use the clock."""

    def __init__(self, clock):
        self.clock = clock
        self.fixed: dict[float, FixedDelayTimers] = {}

    def call_later(self, delay: float, function: Callable, *args):
        queue = self.fixed.get(delay)
        if queue is None:
            queue = self.fixed[delay] = FixedDelayTimers(self.clock, delay)
        return queue.call_later(function, *args)

    def stop(self) -> None:
        for queue in self.fixed.values():
            queue.stop()
