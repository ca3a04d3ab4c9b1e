"""
What the SIP layer reports to whoever counts its messages (metrics): a sink with four
cheap calls, injected with L{sipxcc.sip.useragent.UserAgent.set_stats}. The SIP layer
knows nothing of what the sink does with them; the default, L{NO_STATS}, does nothing.
"""

from __future__ import annotations

from typing import Protocol


class SipStats(Protocol):
    """Called on the path of every SIP message: each must be cheap and must not raise."""

    def sent(self, data: bytes) -> None:
        """A message (request or response, first copy or retransmission) went out."""

    def received(self, message: object) -> None:
        """A parsed request or response arrived (before any transaction sees it)."""

    def retransmitted(self) -> None:
        """A request or response was sent again because no answer or ACK came (§17)."""

    def timed_out(self, method: str) -> None:
        """A client transaction got no final response in time (Timer B/F)."""


class NoStats:
    """The sink that counts nothing."""

    def sent(self, data: bytes) -> None:
        pass

    def received(self, message: object) -> None:
        pass

    def retransmitted(self) -> None:
        pass

    def timed_out(self, method: str) -> None:
        pass


NO_STATS: SipStats = NoStats()
