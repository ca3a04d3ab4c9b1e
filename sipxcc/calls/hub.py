"""
Every call's status events, in order, for whoever wants to follow them (live events,
metrics, webhooks): the registry publishes each call's events to its L{EventHub}, which
numbers them per call, 1, 2, 3, ... with no gap, and hands them to each subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from sipxcc.logs import logger

if TYPE_CHECKING:
    from sipxcc.calls.call import Call, StatusEvent

log = logger(__name__)

#: subscribers one hub accepts at once
MAX_SUBSCRIBERS = 32


class CallEvent(NamedTuple):
    """One event of a call: its number within the call, and the new status line (None:
    the call ended; its C{state} says how). A call's events are numbered 1, 2, 3, ...
    in the order they happened, without gaps."""

    seq: int
    status: StatusEvent | None


Subscriber = Callable[["Call", CallEvent], None]


class TooManySubscribers(Exception):
    """The hub already has L{MAX_SUBSCRIBERS} subscribers."""


class EventHub:
    """
    Hands each call's events to every subscriber, in order. A subscriber is called
    synchronously and must not block; one that raises is logged and the others still see
    the event. At most C{max_subscribers} at once; L{subscribe} returns the function
    that removes the subscriber again.
    """

    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS):
        self.max_subscribers = max_subscribers
        self._subscribers: tuple[Subscriber, ...] = ()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call C{subscriber(call, event)} for every event of every call from now on."""
        if len(self._subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"at most {self.max_subscribers} event subscribers")
        self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)
        return unsubscribe

    def publish(self, call: Call, status: StatusEvent | None) -> None:
        """A call's next event (a C{Call} listener): number it and hand it on."""
        call.seq += 1
        if not self._subscribers:
            return
        event = CallEvent(call.seq, status)
        for subscriber in self._subscribers:
            try:
                subscriber(call, event)
            except Exception:
                log.failure("an event subscriber failed on call {id}", id=call.id)
