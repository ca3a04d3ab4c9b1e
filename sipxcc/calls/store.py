"""
What the web layer needs of the calls: the L{CallStore} interface. L{CallRegistry} keeps
calls in this process's memory; another backend (shared between daemons, say) would
implement the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sipxcc.calls.call import Call, CallRequest
from sipxcc.calls.hub import Subscriber


class CallStore(Protocol):
    """
    Places calls and finds them again. C{place} raises a L{sipxcc.calls.errors.CallError}
    when it refuses (limits, a call in progress); C{transfer} raises
    L{sipxcc.calls.errors.TransferNotPossible}.
    """

    def place(self, request: CallRequest) -> Call:
        """Start a call for C{request} (replacing a REFER call with the same key)."""
        ...

    def lookup(self, key: tuple[str, str, str]) -> Call | None:
        """The latest call for (agent identity, calling, called), in progress or retained."""
        ...

    def get(self, call_id: str) -> Call | None:
        """The call with this id, in progress or retained."""
        ...

    def calls_of(self, owner: str | None, limit: int) -> list[Call]:
        """Up to C{limit} calls of C{owner} (None: everyone's), newest first."""
        ...

    def hangup(self, call: Call) -> None:
        """End C{call} if it is still in progress."""
        ...

    def transfer(self, call: Call, target: str, timeout: int | None = None) -> None:
        """Replace the calling side of an INVITE-mode call by C{target}."""
        ...

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Follow every call's events in order; returns the function that stops it."""
        ...
