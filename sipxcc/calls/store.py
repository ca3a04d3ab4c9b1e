"""
What the web layer needs of the calls: the L{CallStore} interface, and L{CallView}, a
call as the web layer shows it. Every method of a store answers with a Deferred, so that
a store may ask another process (L{sipxcc.calls.redis_store.RedisCallStore}, shared by
several nodes through Redis); L{MemoryCallStore} keeps the calls of this process in its
L{CallRegistry} and answers with Deferreds that have already fired.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet import defer

from sipxcc.calls.call import CallRequest, DialogInfo, StatusEvent
from sipxcc.calls.registry import CallRegistry


class CallView(Protocol):
    """
    A call as GET shows it, whichever backend or node answers: a L{Call} of this process,
    or a L{sipxcc.calls.redis_store.StoredCall} read from Redis. Both render to the same
    bytes (sipxcc.web.render).
    """

    @property
    def id(self) -> str: ...

    @property
    def owner(self) -> str: ...

    @property
    def calling(self) -> str: ...

    @property
    def called(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def ended(self) -> bool: ...

    @property
    def created(self) -> float: ...

    @property
    def reason(self) -> str:
        """Why the call ended without its owner ("node lost", "restart"), else ""."""
        ...

    @property
    def seq(self) -> int:
        """Events published so far, the end included (sipxcc.calls.hub)."""
        ...

    @property
    def events(self) -> list[StatusEvent]: ...

    @property
    def event_count(self) -> int: ...

    def dialogs(self) -> list[DialogInfo]:
        """An INVITE-mode call's dialogs (empty for a REFER call)."""
        ...


class CallStore(Protocol):
    """
    Places calls and finds them again, each answer a Deferred. C{place} fails with a
    L{sipxcc.calls.errors.CallError} when it refuses (limits, a call in progress);
    C{transfer} with L{sipxcc.calls.errors.TransferNotPossible}; a store shared between
    nodes also with L{sipxcc.calls.errors.RegistryUnavailable},
    L{sipxcc.calls.errors.OwnerTimeout} or L{sipxcc.calls.errors.OwnerUnavailable}.
    """

    @property
    def registry(self) -> CallRegistry:
        """The calls this process runs: their SIP side is here, their live events too."""
        ...

    def place(self, request: CallRequest) -> defer.Deferred[CallView]:
        """Start a call for C{request} (replacing a REFER call with the same key); fires
        once the call can be found by L{get} (on any node)."""
        ...

    def lookup(self, key: tuple[str, str, str]) -> defer.Deferred[CallView | None]:
        """The latest call for (agent identity, calling, called), in progress or retained."""
        ...

    def get(self, call_id: str) -> defer.Deferred[CallView | None]:
        """The call with this id, in progress or retained."""
        ...

    def calls_of(self, owner: str | None, limit: int) -> defer.Deferred[list[CallView]]:
        """Up to C{limit} calls of C{owner} (None: everyone's), newest first."""
        ...

    def hangup(self, call_id: str) -> defer.Deferred[bool]:
        """End the call if it is still in progress; False if no such call is known."""
        ...

    def transfer(self, call_id: str, target: str, timeout: int | None = None
                 ) -> defer.Deferred[bool]:
        """Replace the calling side of an INVITE-mode call by C{target}; False if no such
        call is known."""
        ...

    def health(self) -> dict[str, Any]:
        """What /health reports of the store: C{backend}, C{state} ("up", "down"), ..."""
        ...


class MemoryCallStore:
    """The calls of this process (L{CallRegistry}), behind L{CallStore}: every answer is
    known at once, so its Deferred has already fired."""

    def __init__(self, registry: CallRegistry):
        self.registry = registry

    def place(self, request: CallRequest) -> defer.Deferred[CallView]:
        try:
            call: CallView = self.registry.place(request)
        except Exception:
            return defer.fail()
        return defer.succeed(call)

    def lookup(self, key: tuple[str, str, str]) -> defer.Deferred[CallView | None]:
        call: CallView | None = self.registry.lookup(key)
        return defer.succeed(call)

    def get(self, call_id: str) -> defer.Deferred[CallView | None]:
        call: CallView | None = self.registry.get(call_id)
        return defer.succeed(call)

    def calls_of(self, owner: str | None, limit: int) -> defer.Deferred[list[CallView]]:
        calls: list[CallView] = list(self.registry.calls_of(owner, limit))
        return defer.succeed(calls)

    def hangup(self, call_id: str) -> defer.Deferred[bool]:
        call = self.registry.get(call_id)
        if call is None:
            return defer.succeed(False)
        self.registry.hangup(call)
        return defer.succeed(True)

    def transfer(self, call_id: str, target: str, timeout: int | None = None
                 ) -> defer.Deferred[bool]:
        call = self.registry.get(call_id)
        if call is None:
            return defer.succeed(False)
        try:
            self.registry.transfer(call, target, timeout)
        except Exception:
            return defer.fail()
        return defer.succeed(True)

    def health(self) -> dict[str, Any]:
        return {"backend": "memory", "state": "up"}

