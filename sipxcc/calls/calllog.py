"""
One log line when a call starts and one when it ends, at info, as C{key=value} pairs (a
value with a space or a quote is quoted), so that an operator can grep a call by its id,
its users or its outcome:

    call started id=Xy12 agent=user1@example.com calling=user1 called=user2 mode=REFER
    call ended id=Xy12 outcome=failed status=486 reason="Busy Here" method=INVITE
        ring_time=3.02 connected_time=0.00

No credentials appear: only the call's id, users, mode, its SIP status and times.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipxcc.calls import events as names
from sipxcc.calls.call import Call, StatusEvent
from sipxcc.calls.events import EventNamer
from sipxcc.calls.hub import CallEvent
from sipxcc.calls.registry import CallRegistry
from sipxcc.logs import logger
from sipxcc.timers import Clock

log = logger(__name__)

#: calls whose times are followed at once; beyond, a call's end line shows no times
MAX_TRACKED = 1_000_000
#: longest value written (a longer one is cut and ends in "...")
MAX_VALUE = 200


def quote(value: object) -> str:
    """C{value} as a key=value value: bare if it is a plain word, else in double quotes
    with backslash escapes; control characters become C{\\xNN}; at most L{MAX_VALUE}."""
    text = str(value)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE - 3] + "..."
    if text and all(c.isprintable() and c not in ' "\\=' for c in text):
        return text
    escaped = "".join(
        "\\" + c if c in '"\\' else c if c.isprintable() else f"\\x{ord(c):02x}"
        for c in text)
    return f'"{escaped}"'


def line(words: str, pairs: Iterable[tuple[str, object]]) -> str:
    """C{words} then each pair as C{key=value}."""
    return " ".join([words, *(f"{key}={quote(value)}" for key, value in pairs)])


def start_line(call: Call) -> str:
    request = call.request
    return line("call started", (("id", call.id), ("agent", call.owner),
                                 ("calling", request.calling), ("called", request.called),
                                 ("mode", call.mode)))


def _status(events: list[StatusEvent]) -> tuple[str, str, str]:
    """The SIP status that decided the call: the last failure (3xx-6xx but a challenge),
    else the last final response; (code, reason, method), empty when there was none."""
    chosen: tuple[str, str, str] = ("", "", "")
    for event in events:
        parts = event.status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].upper().startswith("SIP/") \
                or not parts[1].isdigit():
            continue
        code = int(parts[1])
        if code < 200 or code in (401, 407):
            continue
        if code >= 300 or not chosen[0] or int(chosen[0]) < 300:
            chosen = (parts[1], parts[2] if len(parts) > 2 else "", event.method)
    return chosen


def end_line(call: Call, ended: float, answered: float | None,
             connected: float | None) -> str:
    """The end line of C{call}, which ended at C{ended} (clock seconds); C{answered} and
    C{connected} are when the calling user answered and the two were connected, if so."""
    code, reason, method = _status(call.events)
    ring_end = answered if answered is not None else ended
    pairs: list[tuple[str, object]] = [("id", call.id), ("outcome", call.state)]
    if code:
        pairs += [("status", code), ("reason", reason), ("method", method)]
    else:
        pairs.append(("status", "none"))
    pairs.append(("ring_time", f"{max(ring_end - call.created, 0.0):.2f}"))
    pairs.append(("connected_time",
                  f"{max(ended - connected, 0.0):.2f}" if connected is not None else "0.00"))
    return line("call ended", pairs)


class _Times:
    __slots__ = ("namer", "answered", "connected")

    def __init__(self) -> None:
        self.namer = EventNamer()
        self.answered: float | None = None
        self.connected: float | None = None


class CallLog:
    """
    Writes the two lines of each call: L{started} is a registry observer (a new call,
    before its flow starts), L{on_event} a registry subscriber (it notes when the call was
    answered and connected, and writes the end line). At most C{max_tracked} calls are
    followed at once.
    """

    def __init__(self, clock: Clock, max_tracked: int = MAX_TRACKED):
        self.clock = clock
        self.max_tracked = max_tracked
        self.tracked: dict[str, _Times] = {}

    def follow(self, registry: CallRegistry) -> None:
        """Log the calls of C{registry} from now on."""
        registry.observers = (*registry.observers, self.started)
        registry.subscribe(self.on_event)

    def started(self, call: Call) -> None:
        log.info("{line}", line=start_line(call))
        if len(self.tracked) < self.max_tracked:
            self.tracked[call.id] = _Times()

    def on_event(self, call: Call, event: CallEvent) -> None:
        times = self.tracked.get(call.id)
        if event.status is None:
            self.tracked.pop(call.id, None)
            answered = connected = None
            if times is not None:
                answered, connected = times.answered, times.connected
            log.info("{line}", line=end_line(call, self.clock.seconds(), answered, connected))
            return
        if times is None:
            return
        name = times.namer.name(event.status, call.state)
        seconds = event.status.timestamp / 1000
        if name == names.ANSWERED and times.answered is None:
            times.answered = seconds
        elif name == names.CONNECTED and times.connected is None:
            times.connected = seconds
