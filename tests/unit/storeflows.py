"""Calls for the call store tests to place (tests/unit/test_redis_store_*.py): flows
that ring, show a dialog or fail at once, and the requests of two agents."""

from __future__ import annotations

from sipxcc.calls.call import EARLY, TERMINATED, CallRequest, DialogInfo, StatusEvent
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", ("201",), None, None, None)
USER3 = User("user3@sipx.test", "user3", ("203",), None, None, None)

RINGING = StatusEvent(1000, "sip-1", "INVITE", "SIP/2.0 180 Ringing")
BYE_OK = StatusEvent(9000, "sip-1", "BYE", "SIP/2.0 200 OK")


class Ringing:
    """A flow that records a 180 then rings; hung up, it records the BYE's 200 and ends."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end
        self.transferred = None

    def start(self):
        self.call.record(*RINGING)
        self.call.set_state("ringing")

    def transfer(self, target, timeout=None):
        self.transferred = (target, timeout)

    def hangup(self, why="hangup"):
        if not self.call.ended:
            self.call.record(*BYE_OK)
            self.call.finish("ended")
            self.on_end(self.call)


class WithDialog(Ringing):
    """As the INVITE flow: records the 180, then rings and shows an early dialog."""

    DIALOG = DialogInfo("sip-1:ft:tt", "sip:callcontroller@sipx.test",
                        "sip:user1@sipx.test", EARLY)

    def start(self):
        self.dialogs = []
        self.call.set_dialog_source(lambda: list(self.dialogs))
        super().start()
        self.dialogs.append(self.DIALOG)

    def hangup(self, why="hangup"):
        self.dialogs[0] = self.dialogs[0]._replace(state=TERMINATED)
        super().hangup(why)


class Refused:
    """A flow whose call fails while it starts (the proxy refused at once)."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        self.call.record(1000, "sip-1", "INVITE", "SIP/2.0 403 Forbidden")
        self.call.finish("failed")
        self.on_end(self.call)


FLOWS = {"REFER": Ringing, "INVITE": Ringing}


def req(agent=USER1, calling="user1@sipx.test", called="user2@sipx.test", **kw):
    return CallRequest(agent, calling, called, **kw)
