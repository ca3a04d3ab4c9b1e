"""A call's record: what was asked, and the status events it produced so far."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from sys import intern
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sipxcc.users import User

REFER = "REFER"
INVITE = "INVITE"


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A validated request to connect C{calling} to C{called} on behalf of C{agent}."""

    agent: User
    calling: str
    called: str
    method: str = REFER
    timeout: int = 180
    result_cache_time: int = 180
    subject: str | None = None
    forwarding_allowed: bool = False
    confpin: str | None = None
    auto_answer: bool = False
    status_callback: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agent.identity, self.calling, self.called)


class StatusEvent(NamedTuple):
    """One line of a call's status document (epoch milliseconds)."""

    timestamp: int
    call_id: str
    method: str
    status_line: str


class DialogInfo(NamedTuple):
    """One dialog of an INVITE-mode call, as the original's C{<dialogs>} document shows it."""

    dialog_id: str
    local_party: str
    remote_party: str
    state: str


EARLY = "Early Dialog"
CONFIRMED = "Confirmed Dialog"
COMPLETED = "Completed Dialog"
TERMINATED = "Terminated Dialog"


class Call:
    """
    The record of one call: its request, its status events (which only ever grow) and its
    state. The flow driving the call appends events; the web layer reads them.

    Events and dialogs are stored as plain tuples of strings and ints, which the garbage
    collector stops tracking (it never untracks tuple subclasses such as L{StatusEvent}):
    100,000 retained calls then add almost nothing to each full collection. A released
    call's events are one flat tuple, four values per event (about 60 bytes less each).
    """

    __slots__ = ("id", "request", "created", "_lines", "state", "ended", "_dialogs",
                 "_listeners", "flow", "expiry")

    def __init__(self, request: CallRequest, created: float):
        self.id = secrets.token_urlsafe(12)
        self.request = request
        self.created = created
        self._lines: list[tuple] | tuple = []  # a flat tuple once released
        self.state = "calling"
        self.ended = False
        self._dialogs: Callable[[], list[DialogInfo]] | tuple[DialogInfo, ...] | None = None
        self._listeners: list[Callable[[Call, StatusEvent | None], None]] | tuple = []
        self.flow = None
        self.expiry = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.request.key

    @property
    def owner(self) -> str:
        return self.request.agent.identity

    @property
    def mode(self) -> str:
        return self.request.method

    @property
    def events(self) -> list[StatusEvent]:
        lines = self._lines
        if type(lines) is tuple:  # released: flattened, four values per event
            return [StatusEvent(*lines[i:i + 4]) for i in range(0, len(lines), 4)]
        return [StatusEvent._make(line) for line in lines]

    @property
    def event_count(self) -> int:
        lines = self._lines
        return len(lines) // 4 if type(lines) is tuple else len(lines)

    def dialogs(self) -> list[DialogInfo]:
        source = self._dialogs
        if source is None:
            return []
        if isinstance(source, tuple):
            return [DialogInfo._make(info) for info in source]
        return source()

    def set_dialog_source(self, source: Callable[[], list[DialogInfo]]) -> None:
        self._dialogs = source

    def listen(self, listener: Callable[[Call, StatusEvent | None], None]) -> None:
        """Call C{listener(call, event)} on every new event, and C{(call, None)} at the end."""
        self._listeners = [*self._listeners, listener]

    def record(self, timestamp_ms: int, call_id: str, method: str, status_line: str) -> None:
        lines = self._lines
        if type(lines) is tuple:
            lines = self._lines = [tuple(line) for line in self.events]
        # one string object per Call-ID and per common status line, however many events
        if lines and lines[-1][1] == call_id:
            call_id = lines[-1][1]
        line = (timestamp_ms, call_id, method, intern(status_line.strip()))
        lines.append(line)
        if self._listeners:
            event = StatusEvent._make(line)
            for listener in self._listeners:
                listener(self, event)

    def set_state(self, state: str) -> None:
        self.state = state

    def release(self) -> None:
        """The call is over: keep what GET shows, drop the machinery (retention is cheap)."""
        self._dialogs = tuple(tuple(info) for info in self.dialogs()) or None
        self._lines = tuple(value for line in self._lines for value in line)
        self._listeners = ()
        self.flow = None

    def finish(self, state: str) -> None:
        """Mark the call over; nothing will be sent for it any more."""
        if self.ended:
            return
        self.state = state
        self.ended = True
        for listener in self._listeners:
            listener(self, None)
