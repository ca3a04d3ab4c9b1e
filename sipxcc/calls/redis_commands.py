"""
Commands for a call owned by another node: DELETE (hang up) and transfer are published on
the owner's channel (C{<prefix>cmd:<node>}); the owner runs them on its own SIP side and
publishes the answer on the asker's channel (C{<prefix>reply:<node>}). An owner that does
not answer within the timeout gets L{OwnerTimeout}; one that listens no more (PUBLISH
reached nobody), L{OwnerUnavailable}. Pending requests are bounded.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from twisted.internet import defer

from sipxcc.calls.errors import CallError, OwnerTimeout, OwnerUnavailable, TransferNotPossible
from sipxcc.logs import logger

log = logger(__name__)

#: seconds an owner has to answer a forwarded command
COMMAND_TIMEOUT = 5.0
#: forwarded commands waiting for their answer at once
MAX_PENDING_COMMANDS = 1000


class CommandRouter:
    """
    Sends commands for remote calls to their owner and runs the ones sent to this node.
    C{local} is this node's L{sipxcc.calls.registry.CallRegistry}; C{redis} the command
    connection (PUBLISH). Feed L{on_message} from a subscription to L{channels}.
    """

    def __init__(self, clock: Any, redis: Any, local: Any, node_id: str,
                 prefix: str = "sipxcc:", timeout: float = COMMAND_TIMEOUT,
                 max_pending: int = MAX_PENDING_COMMANDS):
        self.clock = clock
        self.redis = redis
        self.local = local
        self.node_id = node_id
        self.prefix = prefix
        self.timeout = timeout
        self.max_pending = max_pending
        self.pending: dict[str, tuple[defer.Deferred[None], Any]] = {}

    @property
    def channels(self) -> tuple[str, ...]:
        return (f"{self.prefix}cmd:{self.node_id}", f"{self.prefix}reply:{self.node_id}")

    def send(self, owner: str, op: str, call_id: str, target: str | None = None,
             timeout: int | None = None) -> defer.Deferred[None]:
        """Ask C{owner} to run C{op} ("hangup", "transfer") on C{call_id}."""
        if len(self.pending) >= self.max_pending:
            return defer.fail(OwnerTimeout("Too many commands waiting for other nodes"))
        request_id = secrets.token_urlsafe(9)
        message = json.dumps({"id": request_id, "from": self.node_id, "op": op,
                              "call": call_id, "target": target, "timeout": timeout})
        d: defer.Deferred[None] = defer.Deferred()
        timer = self.clock.callLater(self.timeout, self._expire, request_id)
        self.pending[request_id] = (d, timer)

        def reached(receivers: int) -> None:
            if not receivers and request_id in self.pending:
                self._finish(request_id, OwnerUnavailable(
                    "The node that owns the call is not running"))

        def failed(failure: Any) -> None:
            if request_id in self.pending:
                self._finish(request_id, failure.value)
        sent = self.redis.execute("PUBLISH", f"{self.prefix}cmd:{owner}", message)
        sent.addCallbacks(reached, failed)
        return d

    def _expire(self, request_id: str) -> None:
        if request_id in self.pending:
            self.pending[request_id] = (self.pending[request_id][0], None)
            self._finish(request_id, OwnerTimeout(
                "The node that owns the call did not answer in time"))

    def _finish(self, request_id: str, error: Exception | None) -> None:
        d, timer = self.pending.pop(request_id)
        if timer is not None and timer.active():
            timer.cancel()
        if error is None:
            d.callback(None)
        else:
            d.errback(error)

    def on_message(self, channel: bytes, data: bytes) -> None:
        """A command for this node, or the answer to one of ours."""
        message = json.loads(data)
        if channel.decode() == self.channels[1]:
            request_id = message.get("id")
            if request_id in self.pending:
                error = message.get("error")
                self._finish(request_id, None if error is None else _error(error))
            return
        answer: dict[str, Any] = {"id": message.get("id")}
        try:
            self._run(message)
        except CallError as exc:
            answer["error"] = [type(exc).__name__, str(exc)]
        reply = self.redis.execute("PUBLISH", f"{self.prefix}reply:{message.get('from')}",
                                   json.dumps(answer))
        reply.addErrback(lambda f: log.warn("could not answer a command: {e}", e=f.value))

    def _run(self, message: dict[str, Any]) -> None:
        call = self.local.get(str(message.get("call")))
        if call is None:
            raise OwnerUnavailable("The call is not on its owner any more")
        if message.get("op") == "hangup":
            self.local.hangup(call)
        elif message.get("op") == "transfer":
            self.local.transfer(call, str(message.get("target")), message.get("timeout"))
        else:
            raise CallError("unknown command")


def _error(error: list[str]) -> CallError:
    kinds: dict[str, type[CallError]] = {"TransferNotPossible": TransferNotPossible,
                                         "OwnerUnavailable": OwnerUnavailable}
    name, text = (error + ["", ""])[:2]
    return kinds.get(name, CallError)(text)
