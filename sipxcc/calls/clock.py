"""The clock every time-using class of the call layer takes: the reactor, or a test's
C{twisted.internet.task.Clock}, typed by what is used of it (the one definition is the
leaf L{sipxcc.timers}'s)."""

from __future__ import annotations

from sipxcc.timers import Clock
from sipxcc.timers import TimerHandle as DelayedCall

__all__ = ["Clock", "DelayedCall"]
