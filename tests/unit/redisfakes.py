"""Helpers of the Redis connection's unit tests: the log as the operator reads it, and a
runner whose blocking calls wait until the test lets them run."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher


class Log:
    """The events logged while L{capture} is open."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[Log]:
        made = cls()
        globalLogPublisher.addObserver(made.events.append)
        try:
            yield made
        finally:
            globalLogPublisher.removeObserver(made.events.append)

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]

    def failures(self) -> list[str]:
        """Tracebacks in the operator's log (an unhandled error in a Deferred, ...)."""
        gc.collect()  # a Deferred's unhandled error is logged when it is collected
        return [formatEvent(e) for e in self.events if "log_failure" in e]


class Held:
    """A runner (C{run=}) whose blocking calls wait until the test lets them run."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.jobs.append((f, args, d))
        return d

    def finish(self) -> None:
        """Run the oldest waiting call now, its result or error to its Deferred."""
        f, args, d = self.jobs.pop(0)
        defer.maybeDeferred(f, *args).chainDeferred(d)
