"""
The daemon's own log level (C{daemon.log_level}): sipxcc's loggers publish through one
filter, so a production config at "warn" silences the per-call chatter of "info"/"debug".
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_predicate = LogLevelFilterPredicate(LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def logger(namespace: str) -> Logger:
    """A Logger for C{namespace} whose events below the configured level are dropped."""
    return Logger(namespace=namespace, observer=_observer)


def set_level(name: str) -> None:
    """Set the minimum level by name: debug, info, warn, error or critical."""
    _predicate.defaultLogLevel = LogLevel.levelWithName(name)


def enabled(level: LogLevel) -> bool:
    """Whether an event at C{level} would be published (to skip building costly ones)."""
    return bool(level >= _predicate.defaultLogLevel)


def shown(text: str | bytes, limit: int = 64) -> str:
    """Text from outside (a parameter, a header) fit to quote in a log line or an error:
    at most C{limit} characters, then C{...}; anything not printable as C{\\xNN}."""
    if isinstance(text, bytes):
        cut = text[:limit].decode("utf-8", "backslashreplace")
        more = len(text) > limit
    else:
        cut, more = text[:limit], len(text) > limit
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in cut) + (
        "..." if more else "")
