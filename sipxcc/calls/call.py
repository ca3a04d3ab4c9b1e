"""A call's record: what was asked, and the status events it produced so far."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, fields
from sys import intern
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from sipxcc.users import User

REFER = "REFER"
INVITE = "INVITE"

#: the fields of L{CallRequest} the web layer finds in the user directory, not in the query
DIRECTORY_FIELDS = ("agent", "calling_user", "called_user")

#: status lines a call keeps; beyond them provisional lines (and anything that is not a
#: final status line) are dropped, so that a far end cannot grow a call without bound
MAX_EVENTS = 100
#: final status lines kept beyond L{MAX_EVENTS}; after them each new final line replaces
#: the last one, so the status always ends with how the call ended
MAX_FINAL_EVENTS = 10
#: characters kept of one status line
MAX_LINE = 512
#: what ends a status line cut at L{MAX_LINE}
TRUNCATED = "...[truncated]"


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
    #: the event names (sipxcc.calls.events) to send to C{status_callback}; None: all
    status_callback_events: frozenset[str] | None = None
    #: INVITE mode: seconds the connected call may last before both legs are hung up
    time_limit: int | None = None
    #: INVITE mode: the identity (addr-spec) and display name the called user is shown
    #: instead of the calling user's (the identity: the agent's or the calling user's)
    caller_id: str | None = None
    caller_id_name: str | None = None
    #: the calling party's entry in the user directory (None: a number or an outside
    #: URI); in INVITE mode its display name and identity are what the called user is shown
    calling_user: User | None = None
    #: the called party's entry in the user directory (None: a number or an outside URI);
    #: its display name and identity are what the calling user's phone is shown
    called_user: User | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agent.identity, self.calling, self.called)

    @classmethod
    def wanted_by(cls, agent: User, wanted: object, called_user: User | None = None, *,
                  calling_user: User | None = None) -> CallRequest:
        """The request C{agent} makes with C{wanted}'s values for every field but the
        directory's users (the web layer's validated parameters): one definition of the
        fields, no copy of each. C{calling_user} and C{called_user} are the calling and
        the called party's directory entries."""
        return cls(agent, calling_user=calling_user, called_user=called_user,
                   **{f.name: getattr(wanted, f.name) for f in fields(cls)
                      if f.name not in DIRECTORY_FIELDS})


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


def is_final(status_line: str) -> bool:
    """Whether C{status_line} is a final SIP status line (C{SIP/2.0 2xx} to C{6xx})."""
    return (len(status_line) >= 11 and status_line.startswith("SIP/2.0 ")
            and status_line[8] in "23456" and status_line[9:11].isdigit()
            and status_line[9:11].isascii() and status_line[11:12] in ("", " "))


class FinishedCall:
    """
    What a finished call keeps for GET, made when it is released: its events as one flat
    tuple, four values per event (about 60 bytes less each than a tuple per event), and
    its dialogs as plain tuples. Plain tuples of strings and ints, which the garbage
    collector stops tracking (it never untracks tuple subclasses such as L{StatusEvent}):
    100,000 retained calls then add little to each full collection.
    """

    __slots__ = ("lines", "dialogs")

    def __init__(self, lines: list[tuple[int, str, str, str]], dialogs: list[DialogInfo]):
        self.lines: tuple[int | str, ...] = tuple(value for line in lines for value in line)
        self.dialogs: tuple[tuple[str, str, str, str], ...] | None = (
            tuple((i.dialog_id, i.local_party, i.remote_party, i.state) for i in dialogs)
            or None)

    @property
    def event_count(self) -> int:
        return len(self.lines) // 4

    def events(self) -> list[StatusEvent]:
        lines = self.lines
        return [StatusEvent(*lines[i:i + 4]) for i in range(0, len(lines), 4)]  # type: ignore[arg-type]  # four values per event, in StatusEvent's order

    def dialog_infos(self) -> list[DialogInfo]:
        return [DialogInfo._make(info) for info in self.dialogs or ()]


def new_call_id() -> str:
    """A new call's id: 16 URL-safe characters, 96 random bits."""
    return secrets.token_urlsafe(12)


class Call:
    """
    The record of one call: its request, its status events (which only ever grow) and its
    state. The flow driving the call appends events; the web layer reads them. Once over,
    L{release} keeps what GET shows as a L{FinishedCall} and drops the machinery.
    """

    __slots__ = ("id", "request", "created", "_lines", "state", "ended", "_dialog_source",
                 "finished", "_listeners", "flow", "expiry", "seq", "on_state",
                 # the registry's links (see L{sipxcc.calls.chain.Chain}): the owner's
                 # calls, its finished calls, every finished call, and the finished calls
                 # due at the same delay
                 "owner_prev", "owner_next", "owner_done_prev", "owner_done_next",
                 "done_prev", "done_next", "due_prev", "due_next")

    def __init__(self, request: CallRequest, created: float, call_id: str | None = None):
        self.id = call_id or new_call_id()
        self.request = request
        self.created = created
        self._lines: list[tuple[int, str, str, str]] | None = []  # None once released
        self.state = "calling"
        self.ended = False
        self._dialog_source: Callable[[], list[DialogInfo]] | None = None
        self.finished: FinishedCall | None = None  # what is kept once released
        self._listeners: list[Callable[[Call, StatusEvent | None], None]] | tuple[()] = []
        self.flow: Any = None
        self.expiry: Any = None  # the watchdog in progress; when retention ends once finished
        self.seq = 0  # events published so far (sipxcc.calls.hub.EventHub)
        #: told of each L{set_state} (a state the flow sets without a status line)
        self.on_state: Callable[[Call], None] | None = None
        self.owner_prev = self.owner_next = None
        self.owner_done_prev = self.owner_done_next = None
        self.done_prev = self.done_next = None
        self.due_prev = self.due_next = None

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
    def calling(self) -> str:
        return self.request.calling

    @property
    def called(self) -> str:
        return self.request.called

    @property
    def reason(self) -> str:
        """A call of this process ends through its flow, never "node lost" or "restart"
        (those are written by another node, or this one restarted, into the shared
        registry: L{sipxcc.calls.redis_store.StoredCall})."""
        return ""

    @property
    def events(self) -> list[StatusEvent]:
        if self.finished is not None:
            return self.finished.events()
        return [StatusEvent._make(line) for line in self._lines or ()]

    @property
    def event_count(self) -> int:
        if self.finished is not None:
            return self.finished.event_count
        return len(self._lines or ())

    def dialogs(self) -> list[DialogInfo]:
        if self.finished is not None:
            return self.finished.dialog_infos()
        source = self._dialog_source
        return [] if source is None else source()

    def set_dialog_source(self, source: Callable[[], list[DialogInfo]]) -> None:
        self._dialog_source = source

    def listen(self, listener: Callable[[Call, StatusEvent | None], None]) -> None:
        """Call C{listener(call, event)} on every new event, and C{(call, None)} at the end."""
        self._listeners = [*self._listeners, listener]

    def record(self, timestamp_ms: int, call_id: str, method: str, status_line: str) -> None:
        """
        Add a status line, within bounds: after L{MAX_EVENTS} lines only final ones
        (C{SIP/2.0 2xx}..C{6xx}) are kept, L{MAX_FINAL_EVENTS} more of them, then each
        replaces the last; a line longer than L{MAX_LINE} is cut, ending in L{TRUNCATED}.
        """
        count = self.event_count
        status_line = status_line.strip()
        if count >= MAX_EVENTS and not is_final(status_line):
            return
        if len(status_line) > MAX_LINE:
            status_line = status_line[:MAX_LINE - len(TRUNCATED)] + TRUNCATED
        finished = self.finished
        if finished is not None:  # a late line for a released call: unpack, add, pack
            lines = [(e.timestamp, e.call_id, e.method, e.status_line)
                     for e in finished.events()]
        else:
            lines = self._lines if self._lines is not None else []
        # one string object per Call-ID and per common status line, however many events
        if lines and lines[-1][1] == call_id:
            call_id = lines[-1][1]
        line = (timestamp_ms, call_id, method, intern(status_line))
        if count >= MAX_EVENTS + MAX_FINAL_EVENTS:
            lines[-1] = line
        else:
            lines.append(line)
        if finished is not None:
            self.finished = FinishedCall(lines, finished.dialog_infos())
        if self._listeners:
            event = StatusEvent._make(line)
            for listener in self._listeners:
                listener(self, event)

    def set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(self)

    def release(self) -> None:
        """The call is over: keep what GET shows, drop the machinery (retention is cheap)."""
        self.finished = FinishedCall(self._lines or [], self.dialogs())
        self._lines = None
        self._dialog_source = None
        self._listeners = ()
        self.on_state = None
        self.flow = None

    def finish(self, state: str) -> None:
        """Mark the call over; nothing will be sent for it any more."""
        if self.ended:
            return
        self.state = state
        self.ended = True
        for listener in self._listeners:
            listener(self, None)
