"""The clock every time-using class of the call layer takes: the reactor, or a test's
C{twisted.internet.task.Clock}, typed by what is used of it (zope interfaces are not
types to mypy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class DelayedCall(Protocol):
    """A call scheduled with L{Clock.callLater}."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the call layer uses of a reactor's time."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, f: Callable[..., Any], /, *args: Any,
                  **kw: Any) -> DelayedCall: ...
