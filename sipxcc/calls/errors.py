"""
Errors the call-control layer raises when it refuses a request. They say what went wrong,
not how the web layer reports it: sipxcc.web.errors maps each to an HTTP answer.
"""

from __future__ import annotations

from typing import NamedTuple

from twisted.python.failure import Failure

from sipxcc.logs import logger
from sipxcc.sip.useragent import RequestFailed

log = logger(__name__)


class CallError(Exception):
    """A request the registry refused; the text says why, for the user."""


class CallInProgress(CallError):
    """A call for the same agent, calling and called user is in progress (INVITE mode)."""


class TooManyCalls(CallError):
    """The daemon's limit of calls in progress is reached; worth trying again shortly."""


class AgentLimit(CallError):
    """The agent's limit of calls in progress is reached; worth trying again shortly."""


class TransferNotPossible(CallError):
    """The call cannot be transferred now (not INVITE mode, not connected, or busy)."""


class OwnerTimeout(CallError):
    """The node that owns the call (its SIP side) did not answer a command in time."""


class OwnerUnavailable(CallError):
    """No node runs the call any more: its owner is gone (stopped, lost) or forgot it,
    so it can be neither ended nor transferred."""


class RegistryUnavailable(Exception):
    """The shared call registry (Redis) cannot be reached now: not connected, the
    connection lost, or too many commands waiting for it."""


class FailedRequest(NamedTuple):
    """What a failed request stands for: a SIP status, its reason, and whether it is ours."""

    status: int
    reason: str
    ours: bool


def failure_status(failure: Failure, what: str, call_id: str = "") -> FailedRequest:
    """
    The one place a request's failure is read: a L{RequestFailed} (timeout, transport
    error, no usable response) carries its own status; anything else is a fault of ours,
    logged with C{what} and counted as C{500 Internal Error} with C{ours} set.
    """
    exc = failure.value
    if isinstance(exc, RequestFailed):
        return FailedRequest(exc.status, exc.reason, False)
    log.failure("{what} of call {id} failed", failure, what=what, id=call_id)
    return FailedRequest(500, "Internal Error", True)
