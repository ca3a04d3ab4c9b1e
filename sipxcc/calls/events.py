"""
The names of what happens to a call, as status webhooks (C{statusCallbackEvent}) filter
them: C{initiated, ringing, answered, transferring, connected, failed, completed}. The one
place that maps a status line (the method it answers and its status code) to a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipxcc.calls.call import StatusEvent

INITIATED = "initiated"
RINGING = "ringing"
ANSWERED = "answered"
TRANSFERRING = "transferring"
CONNECTED = "connected"
FAILED = "failed"
COMPLETED = "completed"

#: every event name, in the order a call that goes well meets them
NAMES = (INITIATED, RINGING, ANSWERED, TRANSFERRING, CONNECTED, FAILED, COMPLETED)


class EventNamer:
    """
    Names the status events of one call, in order (the name of a line may depend on the
    lines before it: in INVITE mode the first INVITE dialog is the calling user's leg).

      - INVITE on the calling user's leg: 100 → initiated, 180/183 → ringing, 2xx → answered;
      - REFER 2xx, NOTIFY 1xx (the called user's progress), and 1xx of the INVITE to another
        party (INVITE mode) → transferring;
      - NOTIFY 2xx, or 2xx to the INVITE of another party → connected;
      - any 3xx-6xx but 401/407 (a challenge, answered by sending the request again)
        → failed; 2xx to BYE or CANCEL → completed;
      - the end of the call → completed, or failed if the call failed;
      - anything else keeps the previous name (initiated at first).
    """

    def __init__(self) -> None:
        self.first_call_id: str | None = None
        self.last = INITIATED

    def name(self, event: StatusEvent | None, state: str) -> str:
        """The name of C{event} (a StatusEvent, or None for the end of a call in C{state})."""
        if event is None:
            return FAILED if state == "failed" else COMPLETED
        self.last = self._classify(event) or self.last
        return self.last

    def _classify(self, event: StatusEvent) -> str | None:
        code = _code(event.status_line)
        if code is None or code in (401, 407):  # a challenge: the request is sent again
            return None
        if code >= 300:
            return FAILED
        method = event.method.upper()
        if method == "INVITE":
            if self.first_call_id is None:
                self.first_call_id = event.call_id
            if event.call_id == self.first_call_id:
                if code >= 200:
                    return ANSWERED
                return RINGING if code >= 180 else INITIATED
            return CONNECTED if code >= 200 else TRANSFERRING
        if method == "REFER":
            return TRANSFERRING if code >= 200 else None
        if method == "NOTIFY":
            return CONNECTED if code >= 200 else TRANSFERRING
        if method in ("BYE", "CANCEL") and code >= 200:
            return COMPLETED
        return None


def _code(status_line: str) -> int | None:
    """The status code of C{SIP/2.0 180 Ringing}, or None."""
    parts = status_line.split(None, 2)
    if len(parts) >= 2 and parts[0].upper().startswith("SIP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def parse_names(text: str) -> frozenset[str]:
    """A comma- or space-separated list of event names; ValueError names the bad one."""
    names = frozenset(part for part in text.replace(",", " ").split())
    if not names:
        raise ValueError("no event name")
    for name in names:
        if name not in NAMES:
            raise ValueError(f"unknown event {name[:32]!r} (known: {', '.join(NAMES)})")
    return names
